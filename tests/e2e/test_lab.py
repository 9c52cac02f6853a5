#!/usr/bin/env python3
"""test_lab - natscope against the real kernel, every figure checked.

Builds the NAT lab of nslab.build_nat_lab() (two clients, a gateway with
masquerade and SNAT to a second public IP, IPv4 and IPv6, a server), makes
real TCP/UDP/ICMP traffic through it, partly before natscope starts (read by
its start-up dump) and partly while it runs (read from events: NEW, UPDATE
as connections close, DESTROY from `conntrack -D`), then compares every
figure of /api/v1/gateways, /hosts and /destinations with the ground truth
computed from `conntrack -L` by truth.py.  Also checks the envelope, the
status, the bad requests, /metrics, /healthz and a clean SIGTERM.

Exit 0 pass, 1 fail, 77 skip (not root, or tools missing).
  --truth-only   build the lab and make the traffic, print the ground truth
                 and stop (no natscope): for checking the lab by hand.
  --keep         keep the temporary directory (database, log) on success.
"""

import collections
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
import truth  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
S6 = "2001:db8:2::2"
GW1 = "203.0.113.1"
GW9 = "203.0.113.9"
GW6 = "2001:db8:2::1"
INTERVAL = 1


# --------------------------------------------------------------- traffic

def phase1(a):
    """Before natscope starts: read by its start-up dump."""
    c1, c2, gw, srv = a["c1"], a["c2"], a["gw"], a["srv"]
    c1("tcp_short", dst=S4, port=443, n=60)
    c1("tcp_hold", dst=S4, port=5432, n=8, tag="h")
    c1("tcp_close_wait", dst=S4, port=443, n=5, tag="cw")
    c1("tcp_hold", dst=S4, port=443, n=6, tag="toclose")
    c1("same_port", dst=S4, dports=[443, 5432], sports=[35001, 35002],
       tag="sp")
    c1("udp", dst=S4, port=53, n=20)
    c1("ping", dst=S4, ids=[1000, 1001, 1002])
    c1("tcp_short", dst=S6, port=443, n=15)
    c1("tcp_hold", dst=S6, port=443, n=3, tag="h6")
    c2("tcp_short", dst=S4, port=443, n=40)
    c2("tcp_hold", dst=S4, port=443, n=4, tag="h")
    c2udp = c2("udp", dst=S4, port=53, n=15)["ports"]
    c2("udp", dst=S4, port=123, n=0, sports=[123, 124])
    gw("tcp_short", dst=S4, port=443, n=10, src=GW1)
    gw("tcp_hold", dst=S4, port=443, n=3, tag="h", src=GW1)
    # "other": inbound to the gateway, and routed without NAT
    srv("tcp_hold", dst=GW1, port=7000, n=2, tag="in")
    c1("tcp_hold", dst="198.18.1.2", port=7000, n=2, tag="routed")
    return c2udp


def phase2(lab, a, c2udp):
    """While natscope runs: read from events."""
    c1, c2, gw, srv = a["c1"], a["c2"], a["gw"], a["srv"]
    c1("tcp_short", dst=S4, port=443, n=60)
    c1("tcp_short", dst=S4, port=5432, n=60)
    c1("tcp_hold", dst=S4, port=443, n=10, tag="h")
    c1("tcp_hold", dst=S4, port=5432, n=7, tag="h")
    c1("close_tag", tag="toclose", n=6)         # ESTABLISHED -> TIME_WAIT
    c1("tcp_syn", dst=S4, port=9, n=4, tag="syn")
    c1("same_port", dst=S4, dports=[443, 5432], sports=[35003], tag="sp")
    c1("udp", dst=S4, port=53, n=20)
    c1("udp", dst=S4, port=123, n=0, sports=[600, 601, 602])
    c1("ping", dst=S4, ids=[1003, 1004])
    c1("tcp_short", dst=S6, port=443, n=15)
    c1("tcp_hold", dst=S6, port=443, n=3, tag="h6")
    c1("ping", dst=S6, ids=[2000, 2001, 2002])
    c1("udp", dst=S6, port=53, n=5)
    c2("tcp_short", dst=S4, port=443, n=30)
    c2("tcp_short", dst=S4, port=5432, n=25)
    c2("tcp_hold", dst=S4, port=5432, n=4, tag="h")
    c2udp2 = c2("udp", dst=S4, port=53, n=15)["ports"]
    c2("ping", dst=S4, ids=[3000, 3001])
    gw("tcp_short", dst=S4, port=443, n=10, src=GW1)
    gw("tcp_hold", dst=S4, port=443, n=2, tag="h", src=GW1)
    gw("udp", dst=S4, port=53, n=10, src=GW1)
    gw("tcp_hold", dst=S6, port=5432, n=10, tag="h6", src=GW6)
    gw("tcp_short", dst=S6, port=443, n=5, src=GW6)
    srv("tcp_hold", dst=GW1, port=7000, n=2, tag="in")
    c1("tcp_hold", dst="198.18.1.2", port=7000, n=1, tag="routed")
    # Removed by hand: four entries made now (DESTROY events) and five
    # made before natscope started (no events: only a dump shows them gone)
    for port in c2udp2[:4] + c2udp[:5]:
        lab.run("gw", "conntrack", "-D", "-p", "udp", "--orig-src",
                "198.18.1.2", "--orig-port-src", str(port),
                "--orig-port-dst", "53")


def explain_prestart(T0, T1, failed):
    """Logs what changed, after natscope started, among the entries that
    existed before: entries created while no conntrack event listener
    existed get no event cache (nf_conntrack_events=2, the default), so
    they never emit UPDATE or DESTROY; natscope can only learn of these
    changes by dumping again."""
    def key(m):
        return (m.family, m.proto, m.zone, m.public_ip, m.public_port,
                m.dest_ip, m.dest_port)
    before = {key(m): m for m in T0.mappings}
    after = {key(m): m for m in T1.mappings}
    gone = [k for k in before if k not in after]
    moved = [(before[k].state, after[k].state) for k in before
             if k in after and before[k].state != after[k].state]
    if not gone and not moved:
        return
    trans = collections.Counter(moved)
    log("%s%d mappings that existed before natscope started were removed "
        "and %d changed state afterwards (%s); the kernel emits no event "
        "for entries created while no conntrack listener existed, so only "
        "a new dump can show these"
        % ("NOTE: " if failed else "", len(gone), len(moved),
           ", ".join("%s->%s x%d" % (a, b, n)
                     for (a, b), n in sorted(trans.items()))))


def take_truth(lab, local_addrs, local_cap):
    text, when = nslab.conntrack_list(lab, "gw")
    return truth.Truth(truth.parse(text), local_addrs, local_cap), when


# ------------------------------------------------------------ comparison

def check_envelope(fail, doc, what, now_lo, now_hi):
    for k in ("generated_at", "as_of", "coverage"):
        if not fail.check(k in doc, "%s: no %r" % (what, k)):
            return
    try:
        gen = nslab.rfc3339(doc["generated_at"])
        as_of = nslab.rfc3339(doc["as_of"])
    except ValueError as e:
        fail.add("%s: %s" % (what, e))
        return
    fail.check(now_lo - 1 <= gen <= now_hi + 1,
               "%s: generated_at %s is not now" % (what, doc["generated_at"]))
    fail.check(as_of <= gen + 0.001,
               "%s: as_of %s after generated_at %s"
               % (what, doc["as_of"], doc["generated_at"]))
    fail.check(gen - as_of <= 2 * INTERVAL + 1,
               "%s: as_of %s more than two intervals old"
               % (what, doc["as_of"]))
    # phase 1's entries are silent: followed by events and re-dumps
    fail.check(doc["coverage"] == {"complete": True, "gaps": [],
                                   "follow": "events+dumps"},
               "%s: coverage %r (nothing was lost)" % (what, doc["coverage"]))


def check_canonical(fail, what, text):
    """Addresses must be in canonical text (RFC 5952 for IPv6)."""
    try:
        ok = truth.canon(text) == text
    except ValueError:
        ok = False
    fail.check(ok, "%s: %r is not a canonical address" % (what, text))


def check_order(fail, items, what, key):
    """Largest first; ties by the numeric address (then key)."""
    for x, y in zip(items, items[1:]):
        if (-x["mappings"],) + key(x) > (-y["mappings"],) + key(y):
            fail.add("%s: out of order: %r before %r" % (what, x, y))
            return


def compare_list(fail, what, api_items, truth_items, fields, ident):
    """Exact comparison of two lists of dicts on fields, keyed by ident;
    prints what differs."""
    got = {}
    for it in api_items:
        missing = [f for f in fields if f not in it]
        if missing:
            fail.add("%s: item %r lacks %s" % (what, it, missing))
            continue
        k = ident(it)
        if k in got:
            fail.add("%s: %r listed twice" % (what, k))
        got[k] = it
    want = {ident(it): it for it in truth_items}
    for k in sorted(set(want) - set(got), key=repr):
        fail.add("%s: missing %r (truth %s)" % (what, k, want[k]))
    for k in sorted(set(got) - set(want), key=repr):
        fail.add("%s: unexpected %r (natscope %s)" % (what, k, got[k]))
    for k in sorted(set(got) & set(want), key=repr):
        for f in fields:
            if got[k][f] != want[k][f]:
                fail.add("%s %r: %s natscope %r, truth %r"
                         % (what, k, f, got[k][f], want[k][f]))


GW_FIELDS = ("ports_in_use", "port_space", "mappings", "hosts",
             "destinations")
HOST_FIELDS = ("ip", "mappings", "ports_in_use", "kind")
DEST_FIELDS = ("ip", "port", "zone", "mappings", "capacity")


def compare_all(fail, ns, T):
    """Fetches every answer and compares it with T.  Returns the
    gateways document."""
    t0 = time.time()
    doc = ns.get_json("/api/v1/gateways")
    check_envelope(fail, doc, "/api/v1/gateways", t0, time.time())
    api = {}
    for g in doc.get("gateways", []):
        check_canonical(fail, "gateways", g.get("public_ip"))
        if g.get("worst_destination"):
            check_canonical(fail, "worst_destination",
                            g["worst_destination"].get("ip"))
        k = (g.get("public_ip"), g.get("proto"))
        if k in api:
            fail.add("gateways: %r listed twice" % (k,))
        api[k] = g
    order = [(truth.addr_key(g["public_ip"]), g["proto"])
             for g in doc.get("gateways", [])]
    fail.check(order == sorted(order),
               "gateways not ordered by address, proto: %r"
               % list(api))
    for k in sorted(set(T.gateways) - set(api)):
        fail.add("gateways: missing %s %s" % k)
    for k in sorted(set(api) - set(T.gateways)):
        fail.add("gateways: unexpected %s %s: %r" % (k + (api[k],)))
    for k in sorted(set(api) & set(T.gateways)):
        g, t = api[k], T.gateways[k]
        name = "gateway %s %s" % k
        t = dict(t, port_space=checks.port_space(k[1]))
        for f in GW_FIELDS:
            if g.get(f) != t[f]:
                fail.add("%s: %s natscope %r, truth %r"
                         % (name, f, g.get(f), t[f]))
        w = g.get("worst_destination")
        if w not in t["worst_candidates"]:
            fail.add("%s: worst_destination natscope %r, truth %s"
                     % (name, w, " or ".join(map(repr,
                                                 t["worst_candidates"]))))
        if k[1] == "tcp":
            if g.get("states") != t["states"]:
                fail.add("%s: states natscope %r, truth %r"
                         % (name, g.get("states"), t["states"]))
        else:
            fail.check("states" not in g, "%s: states on non-TCP" % name)

    for (ip, proto) in sorted(T.gateways):
        q = "?proto=%s&limit=10000" % proto
        base = "/api/v1/gateways/%s" % ip
        for kind, fields, tl in (
                ("hosts", HOST_FIELDS, T.hosts[(ip, proto)]),
                ("destinations", DEST_FIELDS, T.dests[(ip, proto)])):
            what = "%s %s %s" % (ip, proto, kind)
            t0 = time.time()
            d = ns.get_json(base + "/" + kind + q)
            check_envelope(fail, d, what, t0, time.time())
            fail.check(d.get("public_ip") == ip and d.get("proto") == proto,
                       "%s: echoes %r %r" % (what, d.get("public_ip"),
                                             d.get("proto")))
            fail.check(d.get("total") == len(tl),
                       "%s: total natscope %r, truth %d"
                       % (what, d.get("total"), len(tl)))
            items = d.get(kind, [])
            for it in items:
                check_canonical(fail, what, it.get("ip"))
            if kind == "hosts":
                compare_list(fail, what, items, tl, fields,
                             lambda h: h["ip"])
                check_order(fail, items, what,
                            lambda h: (truth.addr_key(h["ip"]), h["kind"]))
            else:
                compare_list(fail, what, items, tl, fields,
                             lambda x: (x["ip"], x["port"], x["zone"]))
                check_order(fail, items, what,
                            lambda x: (truth.addr_key(x["ip"]), x["port"],
                                       x["zone"]))
            # limit cuts the list, not the total
            if len(tl) > 1:
                d1 = ns.get_json(base + "/" + kind + "?proto=%s&limit=1"
                                 % proto)
                fail.check(len(d1.get(kind, [])) == 1 and
                           d1.get("total") == len(tl) and
                           d1[kind][0] == items[0],
                           "%s limit=1: %r" % (what, d1))
    # proto defaults to tcp
    d = ns.get_json("/api/v1/gateways/%s/hosts" % GW1)
    fail.check(d.get("proto") == "tcp" and
               d.get("total") == len(T.hosts[(GW1, "tcp")]),
               "hosts without proto: %r" % d)
    return doc


def check_status(fail, ns, T, lab):
    st = ns.get_json("/api/v1/status")
    check_envelope(fail, st, "/api/v1/status", time.time() - 5, time.time())
    fail.check(st.get("state") == "running", "status state %r"
               % st.get("state"))
    m = st.get("mappings", {})
    want = {"live": len(T.mappings), "nat": T.count("nat"),
            "local": T.count("local"), "other": len(T.other)}
    for k, v in want.items():
        fail.check(m.get(k) == v, "status mappings.%s natscope %r, truth %d"
                   % (k, m.get(k), v))
    fail.check(st.get("gateways") == len(T.gateways),
               "status gateways %r, truth %d"
               % (st.get("gateways"), len(T.gateways)))
    rng = st.get("sysctl", {}).get("ip_local_port_range")
    fail.check(rng == list(nslab.GW_LOCAL_PORT_RANGE),
               "status ip_local_port_range %r (the gateway's is %r)"
               % (rng, nslab.GW_LOCAL_PORT_RANGE))
    tw = st.get("sysctl", {}).get("nf_conntrack_tcp_timeout_time_wait")
    fail.check(tw == 600, "status nf_conntrack_tcp_timeout_time_wait %r, "
               "set to 600 in the lab" % tw)
    ct = st.get("conntrack", {}).get("count")
    fail.check(ct == len(T.entries), "status conntrack.count %r, truth %d"
               % (ct, len(T.entries)))
    ev = st.get("events", {})
    fail.check(ev.get("lost") == 0 and ev.get("enobufs") == 0,
               "status events %r: something was lost" % ev)
    fail.check((ev.get("new") or 0) > 0 and (ev.get("update") or 0) > 0 and
               (ev.get("destroy") or 0) >= 4 and (ev.get("dumped") or 0) > 0,
               "status events %r: phase 2 should have produced NEW, UPDATE "
               "and DESTROY events, phase 1 dumped entries" % ev)
    return st


def check_errors(fail, ns):
    bad = [
        ("GET", "/api/v1/gateways/300.1.1.1/hosts", 400),
        ("GET", "/api/v1/gateways/not-an-ip/destinations", 400),
        ("GET", "/api/v1/gateways/%s/hosts?proto=foo" % GW1, 400),
        ("GET", "/api/v1/gateways/%s/hosts?limit=0" % GW1, 400),
        ("GET", "/api/v1/gateways/%s/hosts?limit=10001" % GW1, 400),
        ("GET", "/api/v1/gateways/%s/destinations?limit=abc" % GW1, 400),
        ("GET", "/api/v1/gateways/%s/hosts/" % GW1 + "x" * 600, 400),
        ("GET", "/api/v1/" + "a" * 600, 400),
        ("GET", "/api/v1/nope", 404),
        ("GET", "/nope", 404),
        ("GET", "/api/v1/gateways/192.0.2.1/hosts", 404),
        ("GET", "/api/v1/gateways/%s/destinations?proto=sctp" % GW9, 404),
        ("POST", "/api/v1/gateways", 405),
        ("DELETE", "/api/v1/status", 405),
    ]
    for method, path, want in bad:
        short = path if len(path) < 80 else path[:60] + "...(%d bytes)" \
            % len(path)
        try:
            status, ctype, body = ns.request(method, path)
        except Exception as e:
            fail.add("%s %s: %r" % (method, short, e))
            continue
        if not fail.check(status == want, "%s %s: status %d, wanted %d: %r"
                          % (method, short, status, want, body[:200])):
            continue
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        fail.check(isinstance(doc, dict) and list(doc) == ["error"] and
                   isinstance(doc["error"], str) and doc["error"],
                   "%s %s: body %r is not {\"error\": ...}"
                   % (method, short, body[:200]))
        fail.check((ctype or "").startswith("application/json"),
                   "%s %s: Content-Type %r" % (method, short, ctype))
    status, ctype, body = ns.request("HEAD", "/api/v1/gateways")
    fail.check(status == 200 and body == b"",
               "HEAD /api/v1/gateways: %d %r" % (status, body[:100]))
    # and it still answers
    status, ctype, body = ns.request("GET", "/api/v1/gateways")
    fail.check(status == 200 and b'"gateways"' in body,
               "after the bad requests: %d %r" % (status, body[:200]))


def check_metrics(fail, ns, T):
    status, ctype, body = ns.request("GET", "/metrics")
    if not fail.check(status == 200, "/metrics: status %d" % status):
        return
    m = checks.parse_metrics(body.decode())
    for (ip, proto), g in sorted(T.gateways.items()):
        k = ("natscope_gateway_used_ports",
             frozenset({"public_ip": ip, "proto": proto}.items()))
        fail.check(m.get(k) == g["ports_in_use"],
                   "/metrics natscope_gateway_used_ports{%s %s} = %r, "
                   "truth %d" % (ip, proto, m.get(k), g["ports_in_use"]))
    # gateways that emptied within 10 minutes stay, at 0
    n = sum(1 for (name, _), v in m.items()
            if name == "natscope_gateway_used_ports" and v > 0)
    fail.check(n == len(T.gateways),
               "/metrics: %d natscope_gateway_used_ports series above 0, "
               "%d gateways" % (n, len(T.gateways)))


def db_state(path):
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return c.execute("SELECT state FROM status WHERE id = 1").fetchone()
    finally:
        c.close()


# ------------------------------------------------------------------ main

def main(argv):
    fails = truth.selfcheck()
    if fails:
        for f in fails:
            log("truth.py self-check: " + f)
        return 1
    nslab.require_lab_tools()
    truth_only = "--truth-only" in argv
    work = tempfile.mkdtemp(prefix="natscope-e2e-")
    fail = nslab.Failures()
    ok = False
    with nslab.Lab() as lab:
        try:
            ok = run(lab, work, fail, truth_only)
        except nslab.LabError as e:
            fail.add(str(e))
        finally:
            lab.teardown()
    if fail.items or not ok:
        log("%d failure(s); natscope's database and log kept in %s"
            % (len(fail.items), work))
        return 1
    if "--keep" in argv:
        log("kept %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    log("PASS")
    return 0


def run(lab, work, fail, truth_only):
    t_start = time.monotonic()
    nslab.build_nat_lab(lab)
    nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53, 123))
    nslab.start_servers(lab, "c2", tcp=(7000,))
    nslab.start_servers(lab, "gw", tcp=(7000,))
    agents = {s: nslab.Agent(lab, s) for s in ("c1", "c2", "gw", "srv")}
    local_addrs = truth.local_addresses(lab.addresses("gw"))
    lo, hi = map(int, lab.read_sysctl(
        "gw", "net.ipv4.ip_local_port_range").split())
    local_cap = hi - lo + 1
    log("lab up in %s; gateway addresses %s, local range %d-%d"
        % (lab.prefix, sorted(local_addrs), lo, hi))

    # Phase 1 stands for what a gateway holds before natscope starts.
    # With nf_conntrack_events=2 (auto), entries created while nobody
    # listens get no event cache and never emit events; but "nobody" is
    # host-wide (nf_ctnetlink_has_listener is global), so any conntrack
    # listener in another namespace would change that.  Events off while
    # phase 1 runs makes it so whatever else runs on the host.
    lab.sysctl("gw", "net.netfilter.nf_conntrack_events", 0)
    c2udp = phase1(agents)
    T0, _ = take_truth(lab, local_addrs, local_cap)
    lab.sysctl("gw", "net.netfilter.nf_conntrack_events", 2)
    log("phase 1 traffic done")
    if truth_only:
        phase2(lab, agents, c2udp)
        T, _ = take_truth(lab, local_addrs, local_cap)
        print(T.report())
        return True

    ns = nslab.Natscope(lab, "gw", work, interval=INTERVAL)
    time.sleep(0.3)
    if ns.p.poll() is not None:
        out = ns.log_text()
        if "not built yet" in out:
            fail.add("natscope is not built yet (%s)" % nslab.natscope_bin())
        else:
            fail.add("natscope exited with %d at once:\n%s"
                     % (ns.p.returncode, out))
        return False
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    log("natscope running (%s)" % " ".join(ns.argv))

    phase2(lab, agents, c2udp)
    traffic_end = time.time()
    log("phase 2 traffic done")

    def as_of_after(t):
        def pred(s):
            try:
                return (s.get("state") == "running" and
                        nslab.rfc3339(s.get("as_of")) > t)
            except ValueError:
                return False
        return pred

    # Mappings natscope knows only from a dump (entries from phase 1: the
    # kernel sends no events for them) are followed by re-dumping; their
    # figures are exact once a re-dump that started after the last change
    # has completed.
    def exact_after(t):
        snap = as_of_after(t)

        def pred(s):
            if not snap(s):
                return False
            if not s["mappings"].get("silent"):
                return True
            rs = s["resync"]
            try:
                return (not rs["active"] and
                        nslab.rfc3339(rs["last_started_at"]) > t)
            except (TypeError, ValueError):
                return False
        return pred

    ns.wait_status(exact_after(traffic_end), 30,
                   "a snapshot (and re-dump) after the traffic")
    T1, t1 = take_truth(lab, local_addrs, local_cap)
    st1 = ns.wait_status(exact_after(t1), 30,
                         "a snapshot (and re-dump) after conntrack -L")
    silent = st1["mappings"].get("silent")
    fail.check(isinstance(silent, int) and
               0 < silent <= st1["mappings"]["live"],
               "status mappings.silent = %r: phase 1 entries were made "
               "with events off, so some must be silent" % (silent,))
    compare_all(fail, ns, T1)
    st = check_status(fail, ns, T1, lab)
    T2, _ = take_truth(lab, local_addrs, local_cap)
    if T1.signature() != T2.signature():
        fail.add("the conntrack table changed while comparing; the "
                 "comparison is void.\nbefore:\n%s\nafter:\n%s"
                 % (T1.report(), T2.report()))
    log("ground truth:\n" + T1.report())
    explain_prestart(T0, T1, bool(fail.items))
    n_gw = len(T1.gateways)
    log("compared %d gateways, %d mappings (nat %d, local %d), %d other; "
        "events %s" % (n_gw, len(T1.mappings), T1.count("nat"),
                       T1.count("local"), len(T1.other), st.get("events")))
    fail.check(len(T1.mappings) >= 300 and n_gw >= 8,
               "the lab made too little: %d mappings, %d gateways"
               % (len(T1.mappings), n_gw))
    fail.check(any(g["ports_in_use"] < g["mappings"]
                   for g in T1.gateways.values()),
               "no public port serves two destinations in the lab")

    # The self-audit ran on this real table without a false alarm: every
    # mapping (TCP, UDP, ICMP echo, IPv6, local) was verified by a GET at
    # least once and found, and the counts agreed with the kernel's.
    live = st1["mappings"]["live"]
    sa = ns.wait_status(lambda s: s.get("audit", {}).get("sampled", 0) >=
                        2 * live and s["audit"].get("checks", 0) >= 2, 30,
                        "the self-audit to verify every mapping twice")
    a = sa.get("audit", {})
    for k in ("mismatches", "sample_ghosts", "dump_ghosts"):
        fail.check(a.get(k) == 0, "audit.%s = %r on a table natscope "
                   "follows exactly" % (k, a.get(k)))
    fail.check(sa.get("coverage", {}).get("complete") is True and
               sa.get("state") == "running",
               "after the audit: state %r, coverage %r"
               % (sa.get("state"), sa.get("coverage")))
    log("audit: %s" % a)

    check_errors(fail, ns)
    check_metrics(fail, ns, T1)
    status, _, body = ns.request("GET", "/healthz")
    fail.check(status == 200 and b'"ok"' in body,
               "/healthz: %d %r" % (status, body[:200]))

    t0 = time.monotonic()
    rc = lab.stop(ns.p, signal.SIGTERM, timeout=5)
    took = time.monotonic() - t0
    if fail.check(rc is not None, "natscope still running 5 s after "
                  "SIGTERM"):
        fail.check(rc == 0, "natscope exited with %r after SIGTERM" % rc)
        log("natscope stopped in %.2f s (status %r)" % (took, rc))
    state = db_state(ns.db)
    fail.check(state == ("stopped",), "database state after SIGTERM: %r"
               % (state,))
    if fail.items:
        log("natscope's log:\n" + ns.log_text())
    log("test body took %.1f s" % (time.monotonic() - t_start))
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
