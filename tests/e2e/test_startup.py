#!/usr/bin/env python3
"""test_startup - how natscope starts, and refuses to.

  1. without CAP_NET_ADMIN it exits 1 within two seconds, saying so, with
     no netlink library noise;
  2. bad flags exit 2 with a message naming the problem;
  3. --help and --version exit 0;
  4. entries that exist before natscope starts (held TCP connections,
     TIME_WAIT, UDP) are in its first answer: the start-up dump;
  5. an address added while it runs is followed: the gateway's own
     connections from it count as local.

Every natscope here runs inside a namespace of this run, never in the
host's.  Exit 0 pass, 1 fail, 77 skip.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nslab  # noqa: E402
import truth  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
NOISE = re.compile(r"mnl_|nfct_|nfnl|libnetfilter|Operation not permitted"
                   r"|EPERM", re.I)


def project_version():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "..", "CMakeLists.txt")
    with open(top) as f:
        m = re.search(r"project\(natscope\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1) if m else None


def run_timed(lab, short, argv, timeout):
    """Runs argv in namespace short; returns (status or None if it had to
    be killed, output, seconds)."""
    t0 = time.monotonic()
    p = lab.spawn(short, *argv, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        lab.stop(p, timeout=2)
        out, _ = p.communicate()
        rc = None
    return rc, out.decode(errors="replace"), time.monotonic() - t0


def test_no_cap(lab, fail, work, nsbin):
    cmd = nsbin + ["run", "--db", os.path.join(work, "nocap.db"),
                   "--listen", "127.0.0.1:9629", "--interval", "1"]
    if shutil.which("setpriv"):
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-all",
                "--"] + cmd
    elif shutil.which("capsh"):
        argv = ["capsh", "--drop=cap_net_admin", "--", "-c",
                shlex.join(cmd)]
    else:
        fail.add("neither setpriv nor capsh: cannot drop CAP_NET_ADMIN")
        return
    rc, out, took = run_timed(lab, "gw", argv, timeout=5)
    log("without CAP_NET_ADMIN: status %r in %.2f s: %s"
        % (rc, took, out.strip()))
    fail.check(rc is not None and took <= 2.5,
               "without CAP_NET_ADMIN: still running after %.1f s" % took)
    fail.check(rc == 1, "without CAP_NET_ADMIN: status %r, wanted 1" % rc)
    fail.check("CAP_NET_ADMIN" in out,
               "without CAP_NET_ADMIN: message does not say so: %r" % out)
    lines = [x for x in out.splitlines() if x.strip()]
    fail.check(len(lines) <= 3 and not NOISE.search(out),
               "without CAP_NET_ADMIN: noisy output (%d lines): %r"
               % (len(lines), out))


def test_bad_flags(lab, fail, work, nsbin):
    db = ["--db", os.path.join(work, "flags.db")]
    cases = [
        (["run", "--interval", "0"] + db, "interval"),
        (["run", "--interval", "abc"] + db, "interval"),
        (["run", "--interval", "-1"] + db, "interval"),
        (["run", "--listen", "nonsense"] + db, "listen"),
        (["run", "--listen", "127.0.0.1:99999"] + db, "listen"),
        (["run", "--event-buffer", "12Q"] + db, "event-buffer"),
        (["run", "--history-raw", "3x"] + db, "history-raw"),
        (["run", "--history-hour", "-1d"] + db, "history-hour"),
        (["run", "--history-max-size", "10K"] + db, "history-max-size"),
        (["run", "--history-top", "0"] + db, "history-top"),
        (["run", "--warn", "101"] + db, "warn"),
        (["run", "--warn", "95", "--critical", "90"] + db, "critical"),
        (["run", "--bogus"] + db, "bogus"),
        (["run", "--db"], "db"),
        (["frobnicate"], "frobnicate"),
    ]
    for args, word in cases:
        rc, out, took = run_timed(lab, "gw", nsbin + args, timeout=5)
        what = "natscope %s" % " ".join(args)
        fail.check(rc == 2, "%s: status %r, wanted 2 (%r)" % (what, rc, out))
        fail.check(word in out and len(out.strip()) > len(word),
                   "%s: message does not name %r: %r" % (what, word, out))


def test_help_version(lab, fail, nsbin):
    rc, out, _ = run_timed(lab, "gw", nsbin + ["--help"], timeout=5)
    fail.check(rc == 0, "--help: status %r" % rc)
    fail.check("run" in out, "--help does not mention run: %r" % out)
    rc, out, _ = run_timed(lab, "gw", nsbin + ["run", "--help"], timeout=5)
    fail.check(rc == 0, "run --help: status %r" % rc)
    for word in ("--db", "--listen", "--interval", "--event-buffer",
                 "--history-raw", "--history-max-size", "--warn",
                 "--verbose"):
        fail.check(word in out, "run --help does not mention %s: %r"
                   % (word, out))
    rc, out, _ = run_timed(lab, "gw", nsbin + ["--version"], timeout=5)
    fail.check(rc == 0, "--version: status %r" % rc)
    v = project_version()
    fail.check(v is not None and v in out,
               "--version says %r, project version is %r" % (out, v))


def test_startup_dump(lab, fail, work):
    srvp = nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53,))
    c1 = nslab.Agent(lab, "c1")
    c1("tcp_hold", dst=S4, port=443, n=7, tag="h")
    c1("tcp_hold", dst=S4, port=5432, n=3, tag="h")
    c1("tcp_short", dst=S4, port=443, n=12)
    c1("udp", dst=S4, port=53, n=4)
    local_addrs = truth.local_addresses(lab.addresses("gw"))
    lo, hi = map(int, lab.read_sysctl(
        "gw", "net.ipv4.ip_local_port_range").split())
    text, _ = nslab.conntrack_list(lab, "gw")
    T = truth.Truth(truth.parse(text), local_addrs, hi - lo + 1)
    log("before natscope:\n" + T.report())

    # systemd's Type=notify: READY=1 once the first dump's figures are
    # written (the socket is in the root namespace's file system, which
    # `ip netns exec` shares)
    notify_path = os.path.join(work, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.environ["NOTIFY_SOCKET"] = notify_path
    try:
        ns = nslab.Natscope(lab, "gw", work)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    st = ns.wait_status(lambda s: s.get("state") == "running", 20,
                        "state running")
    notify.settimeout(5)
    try:
        said = notify.recv(4096).decode()
    except socket.timeout:
        said = ""
    fail.check("READY=1" in said.split("\n"),
               "sd_notify: READY=1 once running, got %r" % said)
    # natscope health: exit 0 and /healthz's answer while it runs
    h = lab.run("gw", nslab.natscope_bin(), "health", "--url",
                "http://127.0.0.1:9628", check=False)
    fail.check(h.returncode == 0 and '"status": "ok"' in h.stdout,
               "natscope health while running: exit %d, %r %r"
               % (h.returncode, h.stdout, h.stderr))
    doc = ns.get_json("/api/v1/gateways")
    got = {(g["public_ip"], g["proto"]): g for g in doc.get("gateways", [])}
    fail.check(sorted(got) == sorted(T.gateways),
               "first answer: gateways %r, truth %r"
               % (sorted(got), sorted(T.gateways)))
    for k, t in T.gateways.items():
        g = got.get(k)
        if g is None:
            continue
        for f in ("ports_in_use", "mappings", "hosts", "destinations"):
            fail.check(g.get(f) == t[f], "first answer %s %s: %s natscope "
                       "%r, truth %r" % (k + (f, g.get(f), t[f])))
        if "states" in t:
            fail.check(g.get("states") == t["states"],
                       "first answer %s %s: states %r, truth %r"
                       % (k + (g.get("states"), t["states"])))
        fail.check(g.get("worst_destination") in t["worst_candidates"],
                   "first answer %s %s: worst %r, truth %r"
                   % (k + (g.get("worst_destination"),
                           t["worst_candidates"])))
    held = T.gateways.get(("203.0.113.1", "tcp"), {}).get(
        "states", {}).get("established")
    fail.check(held == 10, "the lab should hold 10 connections, has %r"
               % held)
    ev = st.get("events", {})
    fail.check(ev.get("dumped", 0) >= len(T.entries) and
               ev.get("new") == 0,
               "start-up events %r: the %d entries should all come from "
               "the dump" % (ev, len(T.entries)))
    fail.check(st.get("mappings", {}).get("nat") == T.count("nat"),
               "start-up status mappings %r, truth nat %d"
               % (st.get("mappings"), T.count("nat")))
    test_address_change(lab, fail, ns)
    lab.stop(ns.p)
    try:
        said = notify.recv(4096).decode()
    except socket.timeout:
        said = ""
    fail.check("STOPPING=1" in said.split("\n"),
               "sd_notify: STOPPING=1 at SIGTERM, got %r" % said)
    h = lab.run("gw", nslab.natscope_bin(), "health", "--url",
                "http://127.0.0.1:9628", check=False)
    fail.check(h.returncode == 1 and "connect" in h.stderr.lower(),
               "natscope health once stopped: exit %d, %r"
               % (h.returncode, h.stderr))
    notify.close()
    lab.stop(srvp)


def test_address_change(lab, fail, ns):
    """An address added while natscope runs is followed: connections the
    gateway makes from it are local (they occupy its ports), and they get
    no NAT (a rule exempts them)."""
    new = "192.0.2.77"
    lab.run("gw", "ip", "addr", "add", new + "/32", "dev", "out0")
    lab.run("gw", "nft", "insert", "rule", "inet", "natlab", "post",
            "ip", "saddr", new, "return")
    gwa = nslab.Agent(lab, "gw")
    gwa("tcp_hold", dst=S4, port=5432, n=4, tag="new", src=new)
    t_made = time.time()

    def seen(s):
        try:
            return nslab.rfc3339(s.get("as_of")) > t_made
        except (TypeError, ValueError):
            return False
    ns.wait_status(seen, 10, "a snapshot after the new address's traffic")
    status, _, body = ns.request(
        "GET", "/api/v1/gateways/%s/hosts?proto=tcp" % new)
    doc = json.loads(body) if status == 200 else {}
    hosts = doc.get("hosts", [])
    fail.check(status == 200 and len(hosts) == 1 and
               hosts[0].get("ip") == new and
               hosts[0].get("kind") == "local" and
               hosts[0].get("mappings") == 4,
               "connections from an address added at run time: %d %r"
               % (status, doc or body[:200]))
    gwa("close_tag", tag="new", n=4)


def main(argv):
    nslab.require_lab_tools()
    fail = nslab.Failures()
    work = tempfile.mkdtemp(prefix="natscope-e2e-start-")
    nsbin = [nslab.natscope_bin()]
    with nslab.Lab() as lab:
        try:
            nslab.build_nat_lab(lab, with_c2=False, with_v6=False)
            rc, out, _ = run_timed(lab, "gw", nsbin + ["run", "--db",
                                   os.path.join(work, "probe.db"),
                                   "--interval", "abc"], timeout=5)
            if "not built yet" in out:
                fail.add("natscope is not built yet (%s)" % nsbin[0])
            else:
                test_bad_flags(lab, fail, work, nsbin)
                test_help_version(lab, fail, nsbin)
                test_no_cap(lab, fail, work, nsbin)
                test_startup_dump(lab, fail, work)
        except nslab.LabError as e:
            fail.add(str(e))
        finally:
            lab.teardown()
    if fail.items:
        log("%d failure(s); files kept in %s" % (len(fail.items), work))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
