#!/usr/bin/env python3
"""test_ports - the port map (GET /api/v1/gateways/{ip}/ports) against
`conntrack -L`.

Builds the NAT lab of nslab.build_nat_lab() (IPv4; namespaces nsport-*)
with natscope (--interval 1, API on 127.0.0.1:19811) in the gateway, and
real traffic through it: held TCP connections from c1 (masqueraded to
203.0.113.1) toward two server ports, some opened before natscope starts
(read by its start-up dump), connections sharing one source port toward
two destinations (one public port, two mappings), UDP exchanges, the
gateway's own connections from 203.0.113.1 (kind local), and c2's
connections SNATed to 203.0.113.9 (which must not show on .1).

  1. Live: once natscope's figures equal `conntrack -L`, the port map of
     203.0.113.1 for tcp and udp holds exactly the reply-direction
     destination ports `conntrack -L` shows for that IP (and every
     mapping's host and destination), says `live`, is not uncertain and is
     as of a write after the listing.
  2. Then the connections toward one server port are closed and their
     entries deleted (`conntrack -D`): the live map loses exactly those
     ports, and the map at= the moment of step 1 still shows every one of
     them, exactly as the listing did then.
  3. At natscope's start, before its start-up dump read the table, the
     map is said uncertain (the connections opened before are missing).
  4. bench/ctgen makes 60,000 entries on 203.0.113.21 (250 hosts, one
     destination): the map equals `conntrack -L` there too, and the time
     GET takes over HTTP is logged.

With --example FILE it writes the live tcp answer for 203.0.113.1 and
the one at= the earlier moment to FILE (README.md's example is that
output, trimmed).

Exit 0 pass, 1 fail, 77 skip.
"""

import json
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
GW1 = "203.0.113.1"
GW9 = "203.0.113.9"
GW_BIG = "203.0.113.21"  # ctgen's public IP 20
BIG = 60000
PORT = 19811
CLOSE_DPORT = 5432
EXAMPLE = []  # (path, answer) for --example


def expand(doc):
    """The answer's runs as a set of (public port, host, dest ip, dest
    port), and the list of problems with its shape."""
    hosts, dests = doc.get("hosts") or [], doc.get("destinations") or []
    got, bad = set(), []
    for run in doc.get("runs") or []:
        if not (isinstance(run, list) and len(run) in (4, 5)):
            bad.append("a run that is not [first, count, host, dest] "
                       "(and a TCP state): %r" % (run,))
            continue
        first, count, h, d = run[:4]
        if not (0 <= h < len(hosts) and 0 <= d < len(dests)):
            bad.append("a run with no such host or destination: %r" % run)
            continue
        for p in range(first, first + count):
            got.add((p, hosts[h]["ip"], dests[d]["ip"], dests[d]["port"]))
    return got, bad


def want_of(T, ip, proto):
    """What `conntrack -L` says is held on ip (proto): the same tuples."""
    return {(m.public_port, m.host, m.dest_ip, m.dest_port)
            for m in T.mappings if m.public_ip == ip and m.proto == proto}


def reply_ports(T, ip, proto):
    """The reply direction's destination ports of every entry whose reply
    goes to ip: the public ports the kernel has taken on it."""
    return {int(e.reply.get("dport", 0)) for e in T.entries
            if e.proto == proto and e.reply.get("dst") == ip}


def check_map(fail, doc, T, ip, proto, what, live):
    got, bad = expand(doc)
    want = want_of(T, ip, proto)
    ports = {p for p, _, _, _ in got}
    fail.check(not bad, "%s: %s" % (what, "; ".join(bad[:5])))
    fail.check(ports == reply_ports(T, ip, proto),
               "%s: ports %s, conntrack -L's reply ports %s (missing %s, "
               "extra %s)" % (what, len(ports), len(reply_ports(T, ip,
                                                                proto)),
                              sorted(reply_ports(T, ip, proto) - ports)[:10],
                              sorted(ports - reply_ports(T, ip, proto))[:10]))
    fail.check(got == want, "%s: mappings differ from conntrack -L: missing "
               "%s, extra %s" % (what, sorted(want - got)[:5],
                                 sorted(got - want)[:5]))
    fail.check(doc.get("ports_in_use") == len(ports) and
               doc.get("mappings") == len(want),
               "%s: ports_in_use %r, mappings %r; want %d, %d"
               % (what, doc.get("ports_in_use"), doc.get("mappings"),
                  len(ports), len(want)))
    per_host = {}
    for p, h, _, _ in want:
        per_host.setdefault(h, set()).add(p)
    got_hosts = {h["ip"]: h["ports"] for h in doc.get("hosts") or []}
    fail.check(got_hosts == {h: len(p) for h, p in per_host.items()},
               "%s: hosts %s, want %s" % (what, got_hosts, {
                   h: len(p) for h, p in per_host.items()}))
    fail.check(doc.get("live") is live and doc.get("uncertain") is False
               and doc.get("reasons") == [],
               "%s: live %r, uncertain %r, reasons %r" % (
                   what, doc.get("live"), doc.get("uncertain"),
                   doc.get("reasons")))
    log("%s: %d ports, %d mappings, %d runs, %d hosts, shared %r, as of %s"
        % (what, len(ports), len(got), len(doc.get("runs") or []),
           len(doc.get("hosts") or []), doc.get("shared_ports"),
           doc.get("as_of")))


def ports_path(ip, proto, at=None):
    return "/api/v1/gateways/%s/ports?proto=%s%s" % (
        ip, proto, "" if at is None else "&at=%.3f" % at)


def wait_live(ns, after, timeout=15):
    """The live tcp map of GW1 once it is as of a write after `after`."""
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = ns.get_json(ports_path(GW1, "tcp"))
        if (checks.as_of(doc) or 0) > after:
            return doc
        time.sleep(0.2)
    raise nslab.LabError("the port map stayed as of %r (wanted after %.3f)"
                         % (doc and doc.get("as_of"), after))


def run(lab, work, fail):
    # this test's own namespace names
    lab.prefix = "nsport-%d-%s" % (os.getpid(), secrets.token_hex(3))
    nslab.build_nat_lab(lab, with_c2=True, with_v6=False)
    nslab.start_servers(lab, "srv", tcp=(443, CLOSE_DPORT, 8443),
                        udp=(53,))
    c1, c2, gw = (nslab.Agent(lab, s) for s in ("c1", "c2", "gw"))
    c1("tcp_hold", dst=S4, port=443, n=5, tag="pre")  # before natscope
    ns = nslab.Natscope(lab, "gw", work, port=PORT, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    c1("tcp_hold", dst=S4, port=443, n=40, tag="keep")
    c1("tcp_hold", dst=S4, port=CLOSE_DPORT, n=25, tag="close")
    c1("same_port", dst=S4, dports=[443, 8443], sports=[35001, 35002],
       tag="same")
    c1("udp", dst=S4, port=53, n=10)
    gw("tcp_hold", dst=S4, port=443, n=3, tag="local", src=GW1)
    c2("tcp_hold", dst=S4, port=443, n=6, tag="other")

    T1, t1 = checks.take_truth(lab)
    w = checks.wait_exact(ns, T1, t1, 20)
    checks.report_watch(fail, w, "the traffic", 20)
    doc = wait_live(ns, t1)
    t_mid = checks.as_of(doc)
    EXAMPLE.append((ports_path(GW1, "tcp"), doc))
    check_map(fail, doc, T1, GW1, "tcp", "live tcp map of %s" % GW1, True)
    # 35001 and 35002 toward two destinations, and any port c1's kernel
    # chose for connections to two destinations (connect() may reuse a
    # local port toward another destination; masquerade keeps it)
    per_port = {}
    for e in T1.entries:
        if e.proto == "tcp" and e.reply.get("dst") == GW1:
            p = int(e.reply.get("dport", 0))
            per_port[p] = per_port.get(p, 0) + 1
    shared = sorted(p for p, k in per_port.items() if k > 1)
    fail.check(doc.get("shared_ports") == len(shared) and
               {35001, 35002} <= set(shared),
               "shared_ports %r, conntrack -L shows %d ports with two "
               "mappings or more (%s), 35001 and 35002 among them"
               % (doc.get("shared_ports"), len(shared), shared[:8]))
    fail.check((doc.get("age_seconds") or 99) < 3.5,
               "age_seconds %r" % doc.get("age_seconds"))
    check_map(fail, ns.get_json(ports_path(GW1, "udp")), T1, GW1, "udp",
              "live udp map of %s" % GW1, True)
    check_map(fail, ns.get_json(ports_path(GW9, "tcp")), T1, GW9, "tcp",
              "live tcp map of %s" % GW9, True)
    status, ctype, body = ns.request("GET", ports_path(GW1, "tcp") +
                                     "&format=csv")
    fail.check(status == 200 and ctype.startswith("text/csv") and
               body.startswith(b"as_of,coverage_complete,ip,kind,ports,"
                               b"mappings\r\n"),
               "CSV: %d %s %r" % (status, ctype, body[:120]))

    # some connections end: closed, and their entries deleted
    closed = c1("close_tag", tag="close", n=25)["ports"]
    lab.run("gw", "conntrack", "-D", "-p", "tcp", "--orig-port-dst",
            str(CLOSE_DPORT), check=False)
    T2, t2 = checks.take_truth(lab)
    fail.check(not any(m.dest_port == CLOSE_DPORT for m in T2.mappings),
               "entries toward port %d are left" % CLOSE_DPORT)
    w = checks.wait_exact(ns, T2, t2, 20)
    checks.report_watch(fail, w, "after the close", 20)
    doc = wait_live(ns, t2)
    check_map(fail, doc, T2, GW1, "tcp", "live tcp map after the close",
              True)
    gone = want_of(T1, GW1, "tcp") - want_of(T2, GW1, "tcp")
    fail.check(len(gone) == len(closed) == 25,
               "%d mappings ended, %d connections closed, want 25"
               % (len(gone), len(closed)))
    # the past: the moment of step 1 still shows them
    doc = ns.get_json(ports_path(GW1, "tcp", t_mid))
    EXAMPLE.append((ports_path(GW1, "tcp", t_mid), doc))
    check_map(fail, doc, T1, GW1, "tcp", "tcp map at %s (before the close)"
              % doc.get("at"), False)
    got, _ = expand(doc)
    fail.check(gone <= got, "the map at= before the close lacks %s"
               % sorted(gone - got)[:5])
    # natscope's start, before its first dump read the table: the
    # connections opened before it are not in the log yet, and it says so
    st = ns.get_json("/api/v1/status")
    t_start = nslab.rfc3339(st["started_at"]) + 0.001
    doc = ns.get_json(ports_path(GW1, "tcp", t_start))
    log("at natscope's start (%s): %d runs, uncertain %r, reasons %r"
        % (doc.get("at"), len(doc.get("runs") or []), doc.get("uncertain"),
           doc.get("reasons")))
    fail.check(doc.get("uncertain") is True and any(
        "natscope was starting" in r for r in doc.get("reasons") or []),
        "at natscope's start: uncertain %r, reasons %r"
        % (doc.get("uncertain"), doc.get("reasons")))
    ns.get_json(ports_path(GW1, "tcp", t_mid) + "&bogus=1", want=400)
    big(lab, ns, fail)
    checks.finish(fail, lab, ns)


def big(lab, ns, fail):
    """BIG ctgen entries on GW_BIG, one destination, 250 hosts: BIG
    occupied ports (runs mostly of one port).  The map equals conntrack
    -L, and how long GET takes is logged (not asserted)."""
    checks.require_ctgen()
    r = checks.ctgen(lab, "gw", "--count", BIG, "--public-ips", 1,
                     "--public-base", 20, "--dests", 1, "--hosts", 250,
                     "--host-base", 5000, "--seed", 81)
    log("ctgen: %s" % r)
    T, t = checks.take_truth(lab)
    w = checks.wait_exact(ns, T, t, 60)
    checks.report_watch(fail, w, "%d ctgen entries" % BIG, 60)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, _, body = ns.request("GET", ports_path(GW_BIG, "tcp"))
        doc = json.loads(body) if status == 200 else {}
        if (checks.as_of(doc) or 0) > t:
            break
        time.sleep(0.2)
    check_map(fail, doc, T, GW_BIG, "tcp", "live map of %d ctgen ports"
              % BIG, True)
    for what, path in (("live", ports_path(GW_BIG, "tcp")),
                       ("at=", ports_path(GW_BIG, "tcp",
                                          checks.as_of(doc)))):
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            status, _, body = ns.request("GET", path)
            times.append(time.monotonic() - t0)
        fail.check(status == 200, "GET %s: %d" % (path, status))
        log("GET the %s map of %d ports over HTTP: %.1f ms median of 5 "
            "(%s); %d bytes, %d runs" % (
                what, BIG, 1e3 * sorted(times)[2],
                ", ".join("%.1f" % (1e3 * x) for x in times), len(body),
                len(doc.get("runs") or [])))


def write_example(path):
    with open(path, "w") as f:
        for p, doc in EXAMPLE:
            f.write("$ curl -s 'http://127.0.0.1:9628%s'\n%s\n\n"
                    % (p, json.dumps(doc)))


if __name__ == "__main__":
    rc = checks.run_test("ports", run)
    if "--example" in sys.argv:
        write_example(sys.argv[sys.argv.index("--example") + 1])
    sys.exit(rc)
