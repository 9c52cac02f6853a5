#!/usr/bin/env python3
"""test_pages - every dashboard page (web/ui/pages.js) in a real browser.

The NAT lab (namespaces nspage-*, IPv4) with natscope in the gateway
(--interval 1, API on 127.0.0.1:19720): held TCP connections from c1
(masqueraded to 203.0.113.1) and a few it closed (TIME_WAIT in the
gateway), the gateway's own from 203.0.113.1 (kind
local), c2's SNATed to 203.0.113.9, UDP exchanges, and a ctgen burst of
47,000 UDP entries toward one destination on 203.0.113.21 (72.9 % of its
bucket: a warn incident).  Once the figures equal `conntrack -L` and a
minute of history holding the traffic has closed, tests/e2e/pages.js
(Debian's Chromium, playwright-core) loads, in the gateway namespace:

  overview   and follows its row link to the gateway page;
  gateway    live: its figures equal /api/v1/gateways, its hosts and
             destinations tables the API's, its chart drawn; then the
             time picker set to a past moment: the URL holds at=, the
             figures equal /api/v1/gateways?at=, the port map link keeps
             at=, and "live" drops it; "last 15m" sets from= and to=;
  ports      the port map: every port whose cell is coloured is a public
             port `conntrack -L` shows for 203.0.113.1 (reply direction)
             and every such port is coloured, in the legend colour of
             the host holding it; every run's TCP state is the state
             `conntrack -L` shows for its mappings; the pointer on one
             port shows the lookup's holder (internal ip:port) and its
             state and since when, for an ESTABLISHED port and a
             TIME_WAIT one (both as `conntrack -L` says, exact, as the
             lookup at the map's moment says), and an arrow key moves
             to the next port; one bucket chosen is kept in the URL;
  diagnosis  figures and buckets equal the API's, the tcp_tw_recycle
             warning is shown;
  host       c1's live public IPs equal /api/v1/hosts/{ip}'s;
  incidents  the list equals /api/v1/incidents; the incident's page
             shows its peak and links to the gateway at that moment;
  lookup     typed into its form: the holders equal /api/v1/lookup's.

Everywhere: no console error, no page error, no failed request, no
request that leaves the natscope origin; the port map and host pages fit
a 390 px phone.  Screenshots in $NATSCOPE_ARTIFACTS/pages.

Without Chromium, node or web/ui/node_modules it FAILS naming
tools/deps.sh test; not root: skipped (exit 77).
"""

import json
import os
import secrets
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
import test_dashboard  # noqa: E402
from nslab import log  # noqa: E402
from test_ports import reply_ports  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PAGES_JS = os.path.join(HERE, "pages.js")
SHOTS = os.path.join(os.environ.get("NATSCOPE_ARTIFACTS",
                                    os.path.join(os.getcwd(),
                                                 "e2e-artifacts")), "pages")
PORT = 19720
S4, GW1 = "203.0.113.2", "203.0.113.1"
C1 = "198.18.0.2"
BURST_IP = "203.0.113.21"   # ctgen --public-base 20


def api(ns, path):
    return ns.get_json(path)


def owners(T, ip, proto):
    """public port -> the set of hosts holding it, from `conntrack -L`."""
    out = {}
    for m in T.mappings:
        if m.public_ip == ip and m.proto == proto:
            out.setdefault(m.public_port, set()).add(m.host)
    return out


def wait_minute(ns, after):
    """Waits until history holds a closed minute that began after
    `after` - 60 (so it saw the traffic); returns a moment in it."""
    start = (int(after) // 60 + 1) * 60   # the next minute boundary
    moment = start - 1.0                  # in the minute before it
    wait = start + 2.5 - time.time()
    if wait > 0:
        log("waiting %.0f s for the minute holding the traffic to close"
            % wait)
        time.sleep(wait)
    deadline = time.monotonic() + 15
    while True:
        st, _, _ = ns.request("GET", "/api/v1/gateways/%s/hosts?proto=tcp"
                              "&at=%.3f" % (GW1, moment))
        if st == 200:
            return moment
        if time.monotonic() > deadline:
            raise nslab.LabError("no minute of hosts history at %.3f"
                                 % moment)
        time.sleep(0.5)


def check_common(fail, rep, base):
    errors = [m for m in rep["console"] if m["type"] in ("error", "assert")]
    fail.check(not errors, "console errors: %s" % errors[:5])
    fail.check(not rep["errors"], "page errors: %s" % rep["errors"][:5])
    fail.check(not rep["failed"], "failed requests: %s" % rep["failed"][:5])
    foreign = [u for u in rep["requests"] if not u.startswith(base + "/")]
    fail.check(not foreign, "requests that left %s: %s" % (base,
                                                           foreign[:5]))
    for name, p in rep["pages"].items():
        fail.check(not p.get("errors"), "%s: the page shows errors %s"
                   % (name, p.get("errors")))


def check_gateway(fail, what, page, g, hosts, dests):
    f = page["facts"]
    d = g.get("worst_destination")
    dm = None if not d else d.get("mappings", d.get("peak"))
    want = {"ports_in_use": str(g["ports_in_use"]),
            "port_space": str(g["port_space"]),
            "mappings": str(g["mappings"]), "hosts": str(g["hosts"]),
            "destinations": str(g["destinations"]),
            "worst": test_dashboard.destination(d) if d else "none",
            "worst_mappings": None if d is None else str(dm)}
    for k, v in want.items():
        fail.check(f.get(k) == v, "%s: %s shown %r, the API %r"
                   % (what, k, f.get(k), v))
    rows = page["tables"].get("hosts") or []
    fail.check([(r["host"], r["ports"], r["mappings"]) for r in rows] ==
               [(h["ip"], str(h["ports_in_use"]), str(h["mappings"]))
                for h in hosts["hosts"]],
               "%s: hosts %s, the API %s" % (what, rows[:5],
                                             hosts["hosts"][:5]))
    rows = page["tables"].get("destinations") or []
    fail.check([(r["destination"], r["mappings"], r["capacity"])
                for r in rows] ==
               [(test_dashboard.destination(x),
                 str(x.get("mappings", x.get("mappings_peak"))),
                 str(x["capacity"])) for x in dests["destinations"]],
               "%s: destinations %s, the API %s"
               % (what, rows[:5], dests["destinations"][:5]))
    fail.check(page["charts"] >= 1, "%s: no chart drawn" % what)


def check_states(fail, T, doc):
    """The live map's runs: each (port, host, destination) in the state
    `conntrack -L` shows it in."""
    names = doc.get("tcp_states") or []
    hosts, dests = doc["hosts"], doc["destinations"]
    got, bad = {}, []
    for run in doc["runs"]:
        if len(run) != 5 or not (run[4] is None or
                                 0 <= run[4] < len(names)):
            bad.append(run)
            continue
        for p in range(run[0], run[0] + run[1]):
            got[(p, hosts[run[2]]["ip"], dests[run[3]]["ip"],
                 dests[run[3]]["port"])] = (None if run[4] is None
                                            else names[run[4]])
    want = {(m.public_port, m.host, m.dest_ip, m.dest_port): m.state
            for m in T.mappings if m.public_ip == GW1 and m.proto == "tcp"}
    fail.check(not bad, "runs without a TCP state: %s" % bad[:5])
    wrong = sorted((k, got.get(k), v) for k, v in want.items()
                   if got.get(k) != v)
    fail.check(not wrong and set(got) == set(want),
               "port map states (mapping, shown, conntrack -L): %s"
               % wrong[:8])
    counts = {}
    for v in want.values():
        counts[v] = counts.get(v, 0) + 1
    fail.check(doc.get("states") == counts and doc.get("state_unknown") == 0,
               "port map: states %r (%r unknown), conntrack -L %r"
               % (doc.get("states"), doc.get("state_unknown"), counts))
    log("port map: %d mappings on %s in the states conntrack -L shows: %s"
        % (len(want), GW1, counts))


def check_state_lookup(fail, what, T, look, port, at):
    """A lookup at the map's moment of a port c1 holds: its holder's
    state is conntrack -L's, exact, since a moment at or before it."""
    want = [m.state for m in T.mappings if m.public_ip == GW1 and
            m.proto == "tcp" and m.public_port == port]
    h = look["holders"][0] if len(look["holders"]) == 1 else {}
    fail.check(len(want) == 1 and h.get("state") == want[0] and
               h.get("state_exact") is True and h.get("state_note") is None
               and h.get("state_since") and h["state_since"] <= at,
               "%s: lookup of port %d at %s: state %r since %r exact %r "
               "(%r); conntrack -L %r" % (what, port, at, h.get("state"),
                                          h.get("state_since"),
                                          h.get("state_exact"),
                                          h.get("state_note"), want))


def check_state_hover(fail, what, hover, look, port):
    """The hover of port: the map's line names the state, the holders
    table says "state since" as the lookup does."""
    h = look["holders"][0] if look["holders"] else {}
    want = "%s since %s" % (h.get("state"), h.get("state_since"))
    rows = hover.get("rows") or []
    fail.check(hover.get("head", "").startswith("port %d %s" % (port, C1))
               and hover.get("head", "").endswith("(%s)" % h.get("state"))
               and len(rows) == 1 and rows[0][3] == want,
               "%s: hover on port %d: %r %r, want the state %r"
               % (what, port, hover.get("head"), rows, want))


def check_ports(fail, page, T, doc):
    want = owners(T, GW1, "tcp")
    fail.check(set(want) == reply_ports(T, GW1, "tcp"),
               "conntrack -L: mappings and reply ports disagree")
    colour = {x["ip"]: x["colour"] for x in page["map"]["legend"]
              if x["ip"]}
    held = {int(p): c for p, c in page["map"]["held"].items()}
    fail.check(set(held) == set(want),
               "port map: %d cells coloured, conntrack -L has %d ports "
               "on %s (missing %s, extra %s)"
               % (len(held), len(want), GW1,
                  sorted(set(want) - set(held))[:8],
                  sorted(set(held) - set(want))[:8]))
    wrong = [(p, held.get(p), hs) for p, hs in sorted(want.items())
             if len(hs) == 1 and held.get(p) != colour.get(next(iter(hs)))]
    fail.check(not wrong, "port map: cells not in their holder's colour "
               "(port, colour, holder): %s; legend %s" % (wrong[:5], colour))
    fail.check(page["facts"].get("ports_in_use") == str(len(want)) and
               page["facts"].get("ports_in_use") ==
               str(doc["ports_in_use"]),
               "port map: ports_in_use shown %r, conntrack -L %d, API %r"
               % (page["facts"].get("ports_in_use"), len(want),
                  doc["ports_in_use"]))
    log("port map: %d cells coloured = conntrack -L's ports on %s, by %d "
        "hosts" % (len(held), GW1, len(colour)))


def run(lab, work, fail):
    lab.prefix = "nspage-%d-%s" % (os.getpid(), secrets.token_hex(3))
    checks.require_ctgen()
    os.makedirs(SHOTS, exist_ok=True)
    nslab.build_nat_lab(lab, with_c2=True, with_v6=False)
    nslab.start_servers(lab, "srv", tcp=(443, 8443), udp=(53,))
    c1, c2, gw = (nslab.Agent(lab, s) for s in ("c1", "c2", "gw"))
    ns = nslab.Natscope(lab, "gw", work, port=PORT, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    t_traffic = time.time()
    c1("tcp_hold", dst=S4, port=443, n=40, tag="a")
    c1("tcp_hold", dst=S4, port=8443, n=12, tag="b")
    c1("tcp_short", dst=S4, port=443, n=4)   # TIME_WAIT in the gateway
    c1("udp", dst=S4, port=53, n=8)
    gw("tcp_hold", dst=S4, port=443, n=3, tag="local", src=GW1)
    c2("tcp_hold", dst=S4, port=443, n=6, tag="c2")
    r = checks.ctgen(lab, "gw", "--count", 47000, "--proto", "udp",
                     "--public-ips", 1, "--dests", 1, "--hosts", 1,
                     "--public-base", 20, "--host-base", 6000,
                     "--seed", 77)
    log("ctgen: %s entries in %.2f s" % (r.get("created"),
                                         r.get("seconds") or 0))
    T, t1 = checks.take_truth(lab)
    w = checks.wait_exact(ns, T, t1, 20)
    checks.report_watch(fail, w, "the traffic", 20)
    at = wait_minute(ns, t_traffic)
    at_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + "Z"

    # the API's answers, read before the browser (they must not move)
    gws = api(ns, "/api/v1/gateways")
    g = [x for x in gws["gateways"]
         if x["public_ip"] == GW1 and x["proto"] == "tcp"][0]
    hosts = api(ns, "/api/v1/gateways/%s/hosts?proto=tcp&limit=50" % GW1)
    dests = api(ns, "/api/v1/gateways/%s/destinations?proto=tcp&limit=50"
                % GW1)
    q_at = urllib.parse.quote(at_text)
    gws_at = api(ns, "/api/v1/gateways?at=" + q_at)
    g_at = [x for x in gws_at["gateways"]
            if x["public_ip"] == GW1 and x["proto"] == "tcp"][0]
    hosts_at = api(ns, "/api/v1/gateways/%s/hosts?proto=tcp&limit=50&at=%s"
                   % (GW1, q_at))
    dests_at = api(ns, "/api/v1/gateways/%s/destinations?proto=tcp&limit=50"
                   "&at=%s" % (GW1, q_at))
    ports = api(ns, "/api/v1/gateways/%s/ports?proto=tcp" % GW1)
    diag = api(ns, "/api/v1/gateways/%s/diagnosis?proto=tcp" % GW1)
    incs = api(ns, "/api/v1/incidents?limit=1000")
    host = api(ns, "/api/v1/hosts/%s" % C1)
    c1_state = {m.public_port: m.state for m in T.mappings
                if m.public_ip == GW1 and m.proto == "tcp" and m.host == C1}
    c1_ports = sorted(p for p, hs in owners(T, GW1, "tcp").items()
                      if hs == {C1} and c1_state[p] == "established")
    probe = c1_ports[len(c1_ports) // 2]
    tw_ports = sorted(p for p, hs in owners(T, GW1, "tcp").items()
                      if hs == {C1} and c1_state[p] == "time_wait")
    fail.check(tw_ports, "conntrack -L shows no TIME_WAIT of c1 on %s: %s"
               % (GW1, sorted(set(c1_state.values()))))
    probe_tw = tw_ports[0] if tw_ports else probe
    # the hover asks the lookup at the map's moment (its last write)
    q_map = urllib.parse.quote(ports["at"])
    look = api(ns, "/api/v1/lookup?public_ip=%s&port=%d&proto=tcp&at=%s"
               % (GW1, probe, q_map))
    look_tw = api(ns, "/api/v1/lookup?public_ip=%s&port=%d&proto=tcp&at=%s"
                  % (GW1, probe_tw, q_map))
    burst = [i for i in incs["incidents"] if i["public_ip"] == BURST_IP]
    fail.check(burst, "no incident for the burst on %s: %s"
               % (BURST_IP, incs["incidents"]))
    inc = burst[0] if burst else (incs["incidents"] or [None])[0]

    base = "http://127.0.0.1:%d" % PORT
    cfg = {"base": base, "shots": SHOTS,
           "chromium": test_dashboard.CHROMIUM, "gateway": GW1,
           "proto": "tcp", "host": C1, "at": at_text, "port": probe,
           "port_tw": probe_tw,
           "incident": inc["id"] if inc else None, "dst": True,
           "lookup": {"ip": GW1, "port": probe, "proto": "tcp"}}
    t0 = time.monotonic()
    r = lab.run("gw", "node", PAGES_JS, json.dumps(cfg), check=False,
                timeout=240)
    if r.returncode != 0:
        raise nslab.LabError("pages.js: exit %d\n%s"
                             % (r.returncode, r.stderr[-4000:]))
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    log("browsed every page in %.1f s (load to drawn, ms: %s); "
        "screenshots in %s" % (time.monotonic() - t0, rep["timings"],
                               SHOTS))
    T2, _ = checks.take_truth(lab)
    fail.check(owners(T2, GW1, "tcp") == owners(T, GW1, "tcp"),
               "the mappings on %s moved while the browser read them" % GW1)
    P = rep["pages"]
    check_common(fail, rep, base)

    # overview -> gateway
    fail.check(P["overview"].get("followed") ==
               "/gateway/%s?proto=tcp" % GW1,
               "the overview's row link led to %r"
               % P["overview"].get("followed"))
    check_gateway(fail, "gateway (live)", P["gateway"], g, hosts, dests)

    # the time picker
    ga = P["gateway_at"]
    fail.check("at=" + q_at in ga["url"] or "at=" + at_text in ga["url"],
               "the picker's URL %r holds no at=%s" % (ga["url"], at_text))
    check_gateway(fail, "gateway (at %s)" % at_text, ga, g_at, hosts_at,
                  dests_at)
    fail.check(ga.get("followed", "").startswith("/gateway/%s/ports?" % GW1)
               and "at=" in ga.get("followed", ""),
               "the port map link from the past led to %r"
               % ga.get("followed"))
    fail.check("at=" not in ga.get("back", "at="),
               "back to live: %r" % ga.get("back"))
    gr = P["gateway_range"]
    fail.check("from=" in gr["url"] and "to=" in gr["url"] and
               (gr["live"] or "").startswith("the range ") and
               gr["charts"] >= 1 and gr["tables"].get("range-hosts"),
               "the last 15 minutes: %r, %r, %d charts, range hosts %r"
               % (gr["url"], gr["live"], gr["charts"],
                  gr["tables"].get("range-hosts")))

    # the port map
    pm = P["ports"]
    check_ports(fail, pm, T, ports)
    check_states(fail, T, ports)
    check_state_lookup(fail, "established", T, look, probe, ports["at"])
    check_state_lookup(fail, "time_wait", T, look_tw, probe_tw, ports["at"])
    check_state_hover(fail, "established", pm["hover"], look, probe)
    check_state_hover(fail, "time_wait", pm.get("hover_tw") or {}, look_tw,
                      probe_tw)
    holders = [(h["internal"]["ip"], h["internal"]["port"])
               for h in look["holders"]]
    shown = [row[0] for row in pm["hover"]["rows"]]
    fail.check(pm["hover"]["head"].startswith("port %d %s" % (probe, C1))
               and shown == ["%s:%d" % h for h in holders] and holders,
               "hover on port %d: %r %r, the lookup %s"
               % (probe, pm["hover"]["head"], shown, holders))
    fail.check(pm["key"].startswith("port %d" % (probe + 1)),
               "ArrowRight after port %d shows %r" % (probe, pm["key"]))
    # the first bucket chosen (the select's option 1; 0 is every one)
    d1 = ports["destinations"][0] if ports["destinations"] else None
    if d1:
        want = {run[0] + k for run in ports["runs"] if run[3] == 0
                for k in range(run[1])}
        held = {int(p) for p in pm["dst"]["held"]}
        fail.check(held == want, "bucket %s: %d cells coloured, the API's "
                   "runs have %d" % (d1, len(held), len(want)))
        fail.check("dst=" in pm["dst_url"], "the bucket is not in the "
                   "URL: %r" % pm["dst_url"])
    for name in ("ports", "host"):
        fail.check(P[name].get("phone_width", 999) <= 400,
                   "%s: %s px wide on a 390 px phone"
                   % (name, P[name].get("phone_width")))

    # diagnosis
    dg = P["diagnosis"]
    fail.check(dg["facts"].get("mappings") == str(diag["gateway"]["mappings"])
               and dg["facts"].get("ports_in_use") ==
               str(diag["gateway"]["ports_in_use"]),
               "diagnosis: %s, the API %s" % (dg["facts"], diag["gateway"]))
    fail.check([(b["destination"], b["mappings"], b["capacity"])
                for b in dg["tables"].get("buckets", [])] ==
               [(test_dashboard.destination(b["destination"]),
                 str(b["mappings"]), str(b["capacity"]))
                for b in diag["buckets"]],
               "diagnosis buckets %s, the API %s"
               % (dg["tables"].get("buckets"), diag["buckets"]))
    fail.check("tcp_tw_recycle" in dg["facts"].get("warning", ""),
               "diagnosis: no tcp_tw_recycle warning")
    fail.check(len(dg["tables"].get("ranges", [])) ==
               1 + len(diag["port_range"]["os_defaults"]),
               "diagnosis: port ranges %s" % dg["tables"].get("ranges"))

    # host
    live = [(x["public_ip"] + " " + x["proto"], str(x["ports_in_use"]),
             str(x["mappings"])) for x in host["live"]["gateways"]]
    shown = [(x["gateway"], x["ports"], x["mappings"])
             for x in P["host"]["tables"].get("host-live", [])]
    fail.check(shown == live and live, "host %s: live %s, the API %s"
               % (C1, shown, live))

    # incidents
    fail.check([x["id"] for x in P["incidents"]["tables"]["incidents"]] ==
               ["#%d" % i["id"] for i in incs["incidents"]],
               "incidents listed %s, the API %s"
               % (P["incidents"]["tables"]["incidents"][:5],
                  [i["id"] for i in incs["incidents"]]))
    if inc:
        pi = P["incident"]
        fail.check(pi["facts"].get("peak_mappings") ==
                   str(inc["peak_mappings"]) and
                   pi["facts"].get("peak_at") == inc["peak_at"],
                   "incident %d: %s, the API %s" % (inc["id"], pi["facts"],
                                                    inc))
        fail.check(pi.get("followed", "").startswith(
            "/gateway/%s?" % inc["public_ip"]) and "at=" in
            pi.get("followed", ""), "the incident's gateway link led to %r"
            % pi.get("followed"))

    # lookup
    rows = P["lookup"]["tables"].get("holders", [])
    fail.check([(x["internal"], x["destination"]) for x in rows] ==
               [("%s:%d" % (h["internal"]["ip"], h["internal"]["port"]),
                 "%s:%d" % (h["destination"]["ip"], h["destination"]["port"]))
                for h in look["holders"]] and rows,
               "lookup of %s:%d shows %s, the API %s"
               % (GW1, probe, rows, look["holders"]))
    fail.check("public_ip=%s" % GW1 in P["lookup"]["url"] and
               "port=%d" % probe in P["lookup"]["url"],
               "the lookup's URL %r" % P["lookup"]["url"])
    checks.finish(fail, lab, ns)


def main():
    test_dashboard.require_browser()
    return checks.run_test("nspage", run)


if __name__ == "__main__":
    sys.exit(main())
