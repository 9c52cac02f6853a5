#!/usr/bin/env python3
"""test_postmortem - the README's postmortem walk-through, checked (issue 7).

natscope runs with --interval 1 in a throw-away namespace.  Steady TCP
traffic holds STATIC mappings on 203.0.113.1; then one internal host
opens BURST UDP flows toward one destination (198.51.100.1:443, QUIC)
through the same public IP - 93% of that bucket's 64,512 ports - holds
them a few seconds, and they end.  `conntrack -L` is taken while they are
held (the moment M).  Afterwards, as someone paged at 3 a.m. would:

  1. GET /api/v1/incidents: a critical incident for that bucket (and its
     gateway), opened and closed, whose peak is the burst;
  2. GET /api/v1/incidents/{id}: the top host at the peak is the burst's
     host, with its rate of new flows;
  3. GET /api/v1/series over the burst: the peak is exactly BURST ports;
  4. GET /api/v1/gateways/203.0.113.1/hosts?proto=udp&at=M: the host;
     GET /api/v1/hosts/{host}: its destination, BURST ports at its peak
     (as many as `conntrack -L` showed it holding at M);
  5. natscope lookup 203.0.113.1:40123 --proto udp --at M: who held that
     port then equals what `conntrack -L` showed at M.

With --walkthrough FILE it writes the commands and their real output as
Markdown (README.md's walk-through is that file, trimmed).

Exit 0 pass, 1 fail, 77 skip.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
import truth  # noqa: E402
from nslab import log  # noqa: E402

A = "203.0.113.1"
STATIC, BURST = 20000, 60000
DEST = ("198.51.100.1", 443)
PORT = 40123
WALK = []  # (command, output) for --walkthrough


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
        ".%03dZ" % int((t % 1) * 1000)


def api(ns, path, show=None):
    """GET path; records `curl -s 'http://127.0.0.1:9628path'` and its
    answer (show: a function trimming it for the walk-through)."""
    doc = ns.get_json(path)
    out = show(doc) if show else doc
    WALK.append(("curl -s 'http://127.0.0.1:9628%s'" % path,
                 json.dumps(out, indent=1)))
    return doc


def holders_in_listing(text, port):
    """(internal ip:port, destination ip:port) of the UDP entries whose
    public side is A:port in `conntrack -L -o extended` text."""
    out = []
    for e in truth.parse(text):
        if e.proto != "udp":
            continue
        o, r = e.orig, e.reply
        if r["dst"] != A or int(r["dport"]) != port:
            continue
        out.append(("%s:%d" % (o["src"], o["sport"]),
                    "%s:%d" % (o["dst"], o["dport"])))
    return sorted(out)


def run(lab, work, fail):
    checks.require_ctgen()
    lab.add_ns("gw")
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    checks.ctgen(lab, "gw", "--count", STATIC, "--public-ips", 1,
                 "--hosts", 300, "--seed", 81)
    time.sleep(2.5)
    t0 = time.time()
    r = checks.ctgen(lab, "gw", "--count", BURST, "--proto", "udp",
                     "--public-ips", 1, "--dests", 1, "--hosts", 1,
                     "--host-base", 4000, "--seed", 82)
    log("burst: created %s in %.2f s" % (r.get("created"), r.get("seconds")))
    time.sleep(2.0)
    text, t_m = nslab.conntrack_list(lab, "gw")
    want = holders_in_listing(text, PORT)
    log("moment M %s: conntrack -L shows %s holding %s:%d/udp"
        % (iso(t_m), want, A, PORT))
    fail.check(len(want) == 1, "conntrack -L at M: %d holders of %s:%d"
               % (len(want), A, PORT))
    time.sleep(2.0)
    lab.run("gw", "conntrack", "-D", "-p", "udp", check=False)
    t1 = time.time()
    time.sleep(3.0)  # the incident closes with the next period
    # hosts are kept per minute: wait until M's minute is over (a
    # postmortem comes later anyway)
    time.sleep(max(0.0, (int(t_m / 60) + 1) * 60 + 2.5 - time.time()))

    # 1. what happened?
    inc = api(ns, "/api/v1/incidents?from=%s" % iso(t0 - 1),
              lambda d: {"incidents": [
                  {k: i.get(k) for k in ("id", "kind", "severity",
                                         "public_ip", "proto", "destination",
                                         "opened", "closed", "peak_at",
                                         "peak_mappings", "capacity",
                                         "peak_ratio")}
                  for i in d.get("incidents") or []]})
    buckets = [i for i in inc.get("incidents") or []
               if i.get("kind") == "bucket" and i.get("proto") == "udp"]
    fail.check(len(buckets) == 1, "incidents: %d UDP bucket incidents: %s"
               % (len(buckets), inc.get("incidents")))
    if not buckets:
        return
    b = buckets[0]
    dest = b.get("destination") or {}
    fail.check((dest.get("ip"), dest.get("port")) == DEST,
               "the incident's bucket is %s" % dest)
    fail.check(b.get("severity") == "critical" and
               b.get("peak_mappings") == BURST and
               b.get("closed") is not None,
               "the bucket incident: %s" % b)
    gws = [i for i in inc.get("incidents") or []
           if i.get("kind") == "gateway" and i.get("proto") == "udp"]
    fail.check(len(gws) == 1 and gws[0].get("peak_mappings") == BURST,
               "the gateway incident: %s" % gws)

    # 2. who?
    one = api(ns, "/api/v1/incidents/%d" % b["id"],
              lambda d: {"id": d.get("id"), "peak_at": d.get("peak_at"),
                         "peak_detail": {
                             "saturated_buckets": (d.get("peak_detail") or {})
                             .get("saturated_buckets"),
                             "top_hosts": ((d.get("peak_detail") or {})
                                           .get("top_hosts") or [])[:2]}})
    top = ((one.get("peak_detail") or {}).get("top_hosts") or [{}])[0]
    burst_host = want[0][0].split(":")[0] if want else None
    fail.check(top.get("ip") == burst_host and top.get("proto") == "udp",
               "the top host at the peak is %s, the burst's is %s"
               % (top, burst_host))
    fail.check((top.get("new_per_second") or 0) > 0,
               "the top host's rate: %s" % top)

    # 3. how high, when?
    ser = api(ns, "/api/v1/series?public_ip=%s&proto=udp&from=%s&to=%s"
              "&resolution=raw" % (A, iso(t0 - 1), iso(t1 + 2)),
              lambda d: {"resolution": d.get("resolution"),
                         "points": [{k: p.get(k) for k in
                                     ("ts", "ports_in_use", "ports_peak",
                                      "new_per_second", "exact")}
                                    for p in d.get("points") or []
                                    if p.get("ports_peak")]})
    peaks = [p.get("ports_peak") or 0 for p in ser.get("points") or []]
    fail.check(peaks and max(peaks) == BURST, "series peak %s" % peaks)

    # 4. the hosts at M
    hosts = api(ns, "/api/v1/gateways/%s/hosts?proto=udp&at=%s"
                % (A, iso(t_m)),
                lambda d: {k: d.get(k) for k in
                           ("at", "resolution", "exact", "hosts")})
    hl = hosts.get("hosts") or [{}]
    fail.check(hl[0].get("ip") == burst_host and
               hl[0].get("mappings_peak") == BURST,
               "hosts at M: %s" % hl[:2])

    # 4b. where did that host go? (its destinations, from the mapping log)
    held = sum(1 for line in text.splitlines()
               if "src=%s " % burst_host in line and
               "dst=%s " % DEST[0] in line and "dport=%d " % DEST[1] in line)
    hd = api(ns, "/api/v1/hosts/%s?from=%s&to=%s" % (burst_host, iso(t0 - 1),
                                                    iso(t1 + 2)),
             lambda d: {"destinations": d.get("destinations"),
                        "destinations_coverage":
                        d.get("destinations_coverage")})
    dl = hd.get("destinations") or [{}]
    fail.check(len(dl) == 1 and dl[0].get("public_ip") == A and
               (dl[0].get("destination") or {}).get("ip") == DEST[0] and
               dl[0].get("ports_peak") == BURST == held and
               dl[0].get("new_mappings") == BURST,
               "the burst host's destinations: %s (conntrack -L at M: %d)"
               % (dl, held))

    # 5. who held 203.0.113.1:40123 at M?
    argv = [nslab.natscope_bin(), "lookup", "%s:%d" % (A, PORT), "--proto",
            "udp", "--at", iso(t_m), "--db", ns.db]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    WALK.append(("natscope lookup %s:%d --proto udp --at %s --db natscope.db"
                 % (A, PORT, iso(t_m)), r.stdout.strip()))
    log("lookup: %s%s" % (r.stdout.strip(), r.stderr.strip()))
    fail.check(r.returncode == 0, "natscope lookup exited %d: %s"
               % (r.returncode, r.stderr.strip()))
    doc = ns.get_json("/api/v1/lookup?public_ip=%s&port=%d&proto=udp&at=%s"
                      % (A, PORT, iso(t_m)))
    got = sorted(("%s:%s" % (h.get("internal", {}).get("ip"),
                             h.get("internal", {}).get("port")),
                  "%s:%s" % (h.get("destination", {}).get("ip"),
                             h.get("destination", {}).get("port")))
                 for h in doc.get("holders") or [])
    fail.check(got == want, "lookup at M says %s, conntrack -L said %s"
               % (got, want))

    # 6. the whole picture at M, in a terminal
    argv = [nslab.natscope_bin(), "top", "--db", ns.db, "--at", iso(t_m),
            "--top", "1"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    WALK.append(("natscope top --db natscope.db --at %s --top 1" % iso(t_m),
                 r.stdout.rstrip()))
    fail.check(r.returncode == 0 and burst_host and burst_host in r.stdout
               and "%d/65535" % BURST in r.stdout,
               "natscope top --at M (%d): %s%s" % (r.returncode, r.stdout,
                                                   r.stderr))
    checks.finish(fail, lab, ns)


def main():
    out = None
    if "--walkthrough" in sys.argv:
        out = sys.argv[sys.argv.index("--walkthrough") + 1]
    rc = checks.run_test("postmortem", run)
    if out:
        with open(out, "w") as f:
            for cmd, text in WALK:
                f.write("```\n$ %s\n%s\n```\n\n" % (cmd, text))
    return rc


if __name__ == "__main__":
    sys.exit(main())
