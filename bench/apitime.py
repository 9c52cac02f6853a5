#!/usr/bin/env python3
"""bench/apitime.py - the history API's answer times over HTTP, on a big
database served by `natscope serve --db FILE` (the one build/histgen
makes): every endpoint issue 7 lists, each asked RUNS times over one
keep-alive connection, with the p50, p99 and maximum in ms and the
answer's size.

  bench/apitime.py [--base http://127.0.0.1:19748] [--runs 100]
                   [--at TIME] [--json]

It picks the moment (2 minutes before the status' as_of), the gateway
with the most ports then, its top host and the newest incident, as
bench/pageload.js does.  Exit 1 when an answer is not 200 (a 404 for the
lookup of a database without a mapping log is reported as such).
"""

import argparse
import datetime
import http.client
import json
import sys
import time
import urllib.parse


def iso(ms):
    return datetime.datetime.fromtimestamp(
        ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(t):
    return datetime.datetime.strptime(
        t.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000


class Client:
    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def get(self, path):
        t0 = time.perf_counter()
        self.c.request("GET", path, headers={"Accept": "application/json"})
        r = self.c.getresponse()
        body = r.read()
        return r.status, (time.perf_counter() - t0) * 1000, body


def q(path, **kw):
    return path + "?" + urllib.parse.urlencode(kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:19748")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--at", help="the moment (default: 2 minutes before "
                    "the status' as_of); ranges end 2 minutes after it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    c = Client(a.base)
    if a.at:
        now = parse(a.at.replace("Z", ".000Z") if "." not in a.at
                    else a.at) + 120000
    else:
        now = parse(json.loads(c.get("/api/v1/status")[2])["as_of"])
    at = iso(now - 120000)
    gws = json.loads(c.get(q("/api/v1/gateways", at=at))[2])["gateways"]
    g = max(gws, key=lambda x: x.get("ports_in_use", 0))
    ip, proto = g["public_ip"], g["proto"]
    hosts = json.loads(c.get(q("/api/v1/gateways/%s/hosts" % ip,
                               proto=proto, at=at, limit=1))[2])
    host = hosts["hosts"][0]["ip"]
    inc = json.loads(c.get(q("/api/v1/incidents", **{
        "from": iso(now - 30 * 86400000), "to": iso(now), "limit": 1}))[2])
    inc_id = inc["incidents"][0]["id"] if inc.get("incidents") else None

    def span(days=0, hours=0):
        return {"from": iso(now - (days * 24 + hours) * 3600000),
                "to": iso(now)}
    gw = "/api/v1/gateways/%s" % ip
    cases = [
        ("gateways at= (raw period)", q("/api/v1/gateways", at=at)),
        ("gateways at= (minute period, 3 days ago)",
         q("/api/v1/gateways", at=iso(now - 3 * 86400000))),
        ("gateways at= (hour period, 20 days ago)",
         q("/api/v1/gateways", at=iso(now - 20 * 86400000))),
        ("gateways/{ip}/hosts at= (limit 50)",
         q(gw + "/hosts", proto=proto, at=at)),
        ("gateways/{ip}/destinations at= (limit 50)",
         q(gw + "/destinations", proto=proto, at=at)),
        ("gateways from/to, 1 h", q("/api/v1/gateways", **span(hours=1))),
        ("gateways from/to, 1 day", q("/api/v1/gateways", **span(days=1))),
        ("gateways from/to, 30 days",
         q("/api/v1/gateways", **span(days=30))),
        ("series 1 h", q("/api/v1/series", public_ip=ip, proto=proto,
                         **span(hours=1))),
        ("series 1 day", q("/api/v1/series", public_ip=ip, proto=proto,
                           **span(days=1))),
        ("series 7 days", q("/api/v1/series", public_ip=ip, proto=proto,
                            **span(days=7))),
        ("series 30 days", q("/api/v1/series", public_ip=ip, proto=proto,
                             **span(days=30))),
        ("series 30 days as CSV", q("/api/v1/series", public_ip=ip,
                                    proto=proto, format="csv",
                                    **span(days=30))),
        ("hosts/{ip} 1 h", q("/api/v1/hosts/%s" % host, **span(hours=1))),
        ("hosts/{ip} 1 day", q("/api/v1/hosts/%s" % host, **span(days=1))),
        ("hosts/{ip} 30 days", q("/api/v1/hosts/%s" % host,
                                 **span(days=30))),
        ("incidents 30 days (limit 100)",
         q("/api/v1/incidents", **span(days=30))),
        ("lookup (no mapping log here: 200 with no holder)",
         q("/api/v1/lookup", public_ip=ip, port=40000, proto=proto, at=at)),
    ]
    if inc_id is not None:
        cases.append(("incidents/{id}", "/api/v1/incidents/%d" % inc_id))
    out, bad = [], 0
    for name, path in cases:
        times, size, status = [], 0, None
        for _ in range(a.runs):
            status, ms, body = c.get(path)
            times.append(ms)
            size = len(body)
        times.sort()
        row = {"query": name, "path": path, "status": status,
               "p50": times[len(times) // 2],
               "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
               "max": times[-1], "bytes": size}
        bad += status != 200
        out.append(row)
    if a.json:
        print(json.dumps({"base": a.base, "at": at, "gateway": ip + " " +
                          proto, "host": host, "runs": a.runs,
                          "answers": out}))
    else:
        print("at %s, gateway %s %s, host %s, %d runs each" % (
            at, ip, proto, host, a.runs))
        print("| query | p50 ms | p99 ms | max ms | bytes | status |")
        print("|---|---|---|---|---|---|")
        for r in out:
            print("| %s | %.1f | %.1f | %.1f | %s | %d |" % (
                r["query"], r["p50"], r["p99"], r["max"],
                format(r["bytes"], ","), r["status"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
