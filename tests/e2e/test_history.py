#!/usr/bin/env python3
"""test_history - the past, asked after the fact (issue 7).

natscope runs with --interval 1 in a throw-away namespace.

  1. bench/ctgen makes STATIC entries on public IP A; natscope shows them
     exactly.  `conntrack -L` is taken (moment 1), then the table is left
     alone for two intervals.
  2. A burst: ctgen creates BURST UDP entries on A toward one destination
     and deletes them all again, in well under two seconds.  Then the table is
     left alone again and `conntrack -L` is taken (moment 2).
  3. Afterwards, from the database natscope wrote (and the API's at=):
     - the history period that contains each moment holds exactly what
       `conntrack -L` showed then (mappings, ports in use, hosts,
       destinations), marked exact;
     - the burst shows as peaks although no snapshot saw it: the highest
       ports_peak / mappings_peak of the periods around it are exactly
       the burst's plus the static entries', the fullest bucket's peak is
       the burst's destination with BURST, and the mappings created add
       up to BURST;
     - every period in between has its kernel row, exact.

Exit 0 pass, 1 fail, 77 skip.
"""

import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

A = "203.0.113.1"
STATIC, BURST = 5000, 20000
FIELDS = ("mappings", "ports_in_use", "hosts", "destinations")


def period_at(db, ms):
    """The raw hist_gateway row of A/tcp whose period holds ms."""
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    c.row_factory = sqlite3.Row
    try:
        return c.execute(
            "SELECT * FROM hist_gateway WHERE public_ip = ? AND proto = "
            "'tcp' AND tier = 0 AND ts_ms <= ? AND ? < ts_ms + span_ms",
            (A, ms, ms)).fetchone()
    finally:
        c.close()


def rows_between(db, table, lo_ms, hi_ms, where=""):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    c.row_factory = sqlite3.Row
    try:
        return c.execute(
            "SELECT * FROM %s WHERE tier = 0 AND ts_ms + span_ms > ? AND "
            "ts_ms < ? %s ORDER BY ts_ms" % (table, where),
            (lo_ms, hi_ms)).fetchall()
    finally:
        c.close()


def check_api_moment(fail, ns, T, when, what):
    """GET /api/v1/gateways?at= answers what conntrack -L showed then."""
    doc = ns.get_json("/api/v1/gateways?at=%.3f" % when)
    got = None
    for g in doc.get("gateways") or []:
        if (g.get("public_ip"), g.get("proto")) == (A, "tcp"):
            got = {f: g.get(f) for f in FIELDS}
    want = {f: T.gateways[(A, "tcp")][f] for f in FIELDS}
    log("%s via the API: %s, exact %s, resolution %s" % (
        what, got, doc.get("exact"), doc.get("resolution")))
    fail.check(got == want, "%s: GET /api/v1/gateways?at= says %s, "
               "conntrack -L said %s" % (what, got, want))
    fail.check(doc.get("exact") is True and
               (doc.get("coverage") or {}).get("complete") is True,
               "%s: the answer at= is not exact: %s" % (
                   what, {k: doc.get(k) for k in ("exact", "coverage")}))


def check_moment(fail, ns, T, when, what):
    check_api_moment(fail, ns, T, when, what)
    row = period_at(ns.db, int(when * 1000))
    if row is None:
        fail.add("%s: no history period holds %.3f" % (what, when))
        return
    want = {f: T.gateways[(A, "tcp")][f] for f in FIELDS}
    got = {f: row[f] for f in FIELDS}
    log("%s: period [%d, +%d ms] exact=%d: %s (conntrack -L: %s)"
        % (what, row["ts_ms"], row["span_ms"], row["exact"], got, want))
    fail.check(got == want, "%s: history says %s, conntrack -L said %s"
               % (what, got, want))
    fail.check(row["exact"] == 1, "%s: the period is not marked exact"
               % what)


def run(lab, work, fail):
    checks.require_ctgen()
    lab.add_ns("gw")
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    checks.ctgen(lab, "gw", "--count", STATIC, "--public-ips", 1,
                 "--hosts", 200, "--seed", 71)
    T1, t1 = checks.take_truth(lab)
    w = checks.wait_exact(ns, T1, t1, 20)
    checks.report_watch(fail, w, "static entries", 20)
    time.sleep(2.0)

    t_burst = time.time()
    r = checks.ctgen(lab, "gw", "--count", BURST, "--public-ips", 1,
                     "--proto", "udp", "--dests", 1, "--hosts", 50,
                     "--host-base", 3000, "--seed", 72,
                     "--delete-fraction", 1)
    t_burst_end = time.time()
    log("burst: %s in %.2f s" % (r, t_burst_end - t_burst))
    time.sleep(2.0)
    T2, t2 = checks.take_truth(lab)
    fail.check(T2.gateways[(A, "tcp")]["mappings"] == STATIC,
               "the burst left entries behind: %s" % T2.gateways[(A, "tcp")])
    time.sleep(2.5)  # the period holding t2 is written

    check_moment(fail, ns, T1, t1, "moment 1 (before the burst)")
    check_moment(fail, ns, T2, t2, "moment 2 (after the burst)")

    lo, hi = int((t_burst - 1) * 1000), int((t_burst_end + 1) * 1000)
    rows = rows_between(ns.db, "hist_gateway", lo, hi,
                        "AND public_ip = '%s' AND proto = 'udp'" % A)
    fail.check(rows, "no history periods around the burst")
    if rows:
        ports_peak = max(x["ports_peak"] for x in rows)
        map_peak = max(x["mappings_peak"] for x in rows)
        created = sum(x["new_mappings"] for x in rows)
        worst = max(rows, key=lambda x: x["worst_peak"])
        log("around the burst: %d periods, ports_peak %d, mappings_peak %d,"
            " new %d, worst %s:%s peak %d of %s; ends %s"
            % (len(rows), ports_peak, map_peak, created, worst["worst_ip"],
               worst["worst_port"], worst["worst_peak"],
               worst["worst_capacity"], [x["mappings"] for x in rows]))
        fail.check(ports_peak == BURST, "ports_peak %d, expected %d"
                   % (ports_peak, BURST))
        fail.check(map_peak == BURST, "mappings_peak %d, expected %d"
                   % (map_peak, BURST))
        fail.check(created == BURST, "new mappings %d, expected %d"
                   % (created, BURST))
        fail.check(worst["worst_peak"] == BURST and
                   worst["worst_capacity"] == 64512,
                   "the fullest bucket's peak: %d of %s"
                   % (worst["worst_peak"], worst["worst_capacity"]))
        fail.check(rows[-1]["mappings"] == 0 and rows[-1]["ports_in_use"]
                   == 0, "the burst's gateway does not end empty: %s"
                   % dict(rows[-1]))
    # the same burst through the API: a series over it
    doc = ns.get_json("/api/v1/series?public_ip=%s&proto=udp&from=%.3f&to=%.3f"
                      "&resolution=raw" % (A, t_burst - 1, t_burst_end + 1))
    peaks = [p.get("ports_peak") or 0 for p in doc.get("points") or []]
    log("series over the burst: ports_peak %s" % peaks)
    fail.check(peaks and max(peaks) == BURST, "GET /api/v1/series: the "
               "burst's peak %s, expected %d" % (peaks, BURST))
    kern = rows_between(ns.db, "hist_kernel", int(t1 * 1000),
                        int(t2 * 1000))
    spans = sum(x["span_ms"] for x in kern)
    fail.check(kern and all(x["exact"] == 1 and x["state"] == "running"
                            for x in kern),
               "kernel periods not all exact: %s"
               % [(x["ts_ms"], x["exact"], x["state"]) for x in kern])
    # periods are contiguous: they cover the whole stretch
    fail.check(spans >= (t2 - t1) * 1000 - 1500,
               "the periods cover %d ms of the %d between the moments"
               % (spans, (t2 - t1) * 1000))
    checks.finish(fail, lab, ns)


if __name__ == "__main__":
    sys.exit(checks.run_test("history", run))
