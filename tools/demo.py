#!/usr/bin/env python3
"""demo - natscope on a small NAT lab you can open in a browser (make demo).

Needs root.  Builds the end-to-end tests' namespace lab (tests/e2e/nslab.py):

  c1 198.18.0.2 --+                         +-- srv 203.0.113.2
                  +-- gw (SNAT to 203.0.113.1 / .9)
  c2 198.18.1.2 --+         |
                       198.19.254.1 (natscope's API)
                            |  veth natscope-demo
                  this host 198.19.254.2

then runs natscope on the gateway, listening on 198.19.254.1:9628 (in the
benchmarking range 198.18.0.0/15, reachable from this host only through the
veth; the demo refuses to start if this host already uses that /30), and
keeps traffic going through the NAT:

  - steady TCP from both client networks: connections held open, and short
    ones that leave TIME_WAIT behind; UDP request/reply exchanges;
  - every --burst-every seconds one internal host opens 60,000 UDP flows
    toward one destination, 93 % of that destination bucket's ports (the
    conntrack entries such a burst makes, created by bench/ctgen): a
    critical incident opens; the flows end --burst-hold seconds later and
    it closes.

It prints the URL and runs until Ctrl-C (or --seconds), then removes the
namespaces, the veth and its processes.

  tools/demo.py [--seconds N] [--burst-every S] [--burst-hold S] [--db PATH]
"""

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

import nslab  # noqa: E402
from nslab import log  # noqa: E402

LINK = "natscope-demo"          # this host's end of the veth
GW_ADDR, HOST_ADDR, PREFIX = "198.19.254.1", "198.19.254.2", 30
PORT = 9628
SERVER = "203.0.113.2"
BURST = 60000


def ctgen_bin():
    return os.environ.get("NATSCOPE_CTGEN",
                          os.path.join(HERE, "..", "build", "ctgen"))


def link_to_host(lab):
    """The veth between the gateway and this host (the only thing the demo
    adds to this host's namespace; it goes with the gateway's)."""
    if subprocess.run(["ip", "link", "show", LINK],
                      capture_output=True).returncode == 0:
        raise nslab.LabError("a link named %s exists already: is another "
                             "demo running? (ip link del %s)" % (LINK, LINK))
    # the host's own networks may be anywhere, even in documentation or
    # benchmarking ranges: never shadow one
    net = ipaddress.ip_network("%s/%d" % (HOST_ADDR, PREFIX), strict=False)
    for line in subprocess.run(["ip", "-4", "-o", "addr", "show"],
                               capture_output=True, text=True
                               ).stdout.splitlines():
        f = line.split()
        if len(f) > 3 and ipaddress.ip_interface(f[3]).network.overlaps(net):
            raise nslab.LabError("this host uses %s (%s on %s): the demo's "
                                 "link would shadow it" % (net, f[3], f[1]))
    for line in subprocess.run(["ip", "-4", "route", "show"],
                               capture_output=True, text=True
                               ).stdout.splitlines():
        dst = line.split()[0] if line.split() else "default"
        if dst != "default" and ipaddress.ip_network(
                dst if "/" in dst else dst + "/32",
                strict=False).overlaps(net):
            raise nslab.LabError("this host routes %s (%s): the demo's "
                                 "link would shadow it" % (net, line))
    lab.run("gw", "ip", "link", "add", "demo0", "type", "veth", "peer",
            "name", LINK, "netns", "1")
    lab.run("gw", "ip", "addr", "add", "%s/%d" % (GW_ADDR, PREFIX), "dev",
            "demo0")
    lab.run("gw", "ip", "link", "set", "demo0", "up")
    subprocess.run(["ip", "addr", "add", "%s/%d" % (HOST_ADDR, PREFIX),
                    "dev", LINK], check=True)
    subprocess.run(["ip", "link", "set", LINK, "up"], check=True)


def drop_link():
    """The host's end of the veth goes with the gateway's namespace, which
    the kernel destroys a little later: wait for it, else delete it."""
    for _ in range(50):
        if subprocess.run(["ip", "link", "show", LINK],
                          capture_output=True).returncode != 0:
            return
        time.sleep(0.1)
    subprocess.run(["ip", "link", "del", LINK], capture_output=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0,
                    help="stop after this long (default: until Ctrl-C)")
    ap.add_argument("--burst-every", type=float, default=120)
    ap.add_argument("--burst-hold", type=float, default=20)
    ap.add_argument("--db", help="the database (default: a temporary "
                    "directory, removed at the end)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("demo: needs root (network namespaces, conntrack)")
    for tool in (nslab.natscope_bin(), ctgen_bin()):
        if not os.access(tool, os.X_OK):
            sys.exit("demo: %s is not built (make)" % tool)
    nslab.require_lab_tools()
    work = tempfile.mkdtemp(prefix="natscope-demo-")
    with nslab.Lab(tag="demo") as lab:
        nslab.build_nat_lab(lab, with_c2=True, with_v6=False)
        link_to_host(lab)
        srvp = nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53,))
        c1, c2 = nslab.Agent(lab, "c1"), nslab.Agent(lab, "c2")
        db = os.path.abspath(a.db) if a.db else os.path.join(work,
                                                             "natscope.db")
        logf = open(os.path.join(work, "natscope.log"), "w")
        nat = lab.spawn("gw", nslab.natscope_bin(), "run", "--db", db,
                        "--listen", "%s:%d" % (GW_ADDR, PORT),
                        "--interval", "1", stdout=logf,
                        stderr=subprocess.STDOUT)
        time.sleep(1.0)
        if nat.poll() is not None:
            raise nslab.LabError("natscope exited (%d): see %s"
                                 % (nat.returncode, logf.name))
        log("open http://%s:%d/ (natscope's log: %s; Ctrl-C stops the "
            "demo)" % (GW_ADDR, PORT, logf.name))
        t0 = time.monotonic()
        next_burst = t0 + min(a.burst_every, 30)
        burst_end = None
        held = 0
        i = 0
        while not a.seconds or time.monotonic() - t0 < a.seconds:
            i += 1
            c1("tcp_short", dst=SERVER, port=443, n=20)
            c2("tcp_short", dst=SERVER, port=5432, n=8)
            c1("udp", dst=SERVER, port=53, n=5)
            if held < 400:
                c1("tcp_hold", dst=SERVER, port=443, n=10, tag="held")
                c2("tcp_hold", dst=SERVER, port=443, n=5, tag="held")
                held += 15
            now = time.monotonic()
            if burst_end is None and now >= next_burst:
                log("burst: one host opens %d UDP flows toward "
                    "198.51.100.1:443 through 203.0.113.1" % BURST)
                lab.run("gw", ctgen_bin(), "--count", str(BURST), "--proto",
                        "udp", "--public-ips", "1", "--dests", "1",
                        "--hosts", "1", "--host-base", "4000",
                        timeout=120)
                burst_end = now + a.burst_hold
            elif burst_end is not None and now >= burst_end:
                lab.run("gw", "conntrack", "-D", "-p", "udp", "--orig-dst",
                        "198.51.100.1", check=False, timeout=120)
                log("burst over")
                burst_end = None
                next_burst = now + a.burst_every
            if nat.poll() is not None:
                raise nslab.LabError("natscope exited (%d): see %s"
                                     % (nat.returncode, logf.name))
            time.sleep(1.0)
        lab.stop(nat)
        lab.stop(srvp)
    shutil.rmtree(work, ignore_errors=True)
    drop_link()
    log("demo over: namespaces and the %s link removed" % LINK)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except nslab.LabError as e:
        sys.exit("demo: %s" % e)
