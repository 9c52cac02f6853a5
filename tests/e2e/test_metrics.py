#!/usr/bin/env python3
"""test_metrics - /metrics scraped from a real natscope and linted by a
real Prometheus's `promtool check metrics` (issue 9, "Prometheus and the
fleet").

  1. offline: the lab captures in tests/fixtures imported into a database,
     served by `natscope serve` on 127.0.0.1:19900; its /metrics must lint
     clean, and every gateway family must equal /api/v1/gateways (ICMP's
     port space 65536), the kinds of natscope_mappings /api/v1/status, the
     resync histogram's count natscope_resyncs_total; no label is one of
     Prometheus's own; process_* describe the serving process.
  2. live (root): natscope run in a namespace (nsmet-...) following ctgen's
     TCP and UDP entries, its API on 127.0.0.1:19901 there.  Once exact,
     /metrics lints clean, every gateway family equals `conntrack -L`, the
     kinds of natscope_mappings sum to the kernel's table
     (natscope_conntrack_entries), coverage is complete, the resync
     histogram counts every resync.  Then a public IP's entries are
     deleted: its gateway stays in /metrics at 0 (gone, not vanished)
     while the API no longer lists it.
  3. a fleet of one (root): a real Prometheus server (Debian's, in the
     same namespace, 127.0.0.1:19902) scrapes that natscope every second
     with deploy/prometheus/natscope-rules.yml loaded (its `for:` cut to
     2 s); the series its HTTP API returns equal natscope's own API, and
     when ctgen fills one destination bucket to 93 % (60,000 of 64,512)
     NatscopeDestinationBucketCritical fires for that public IP.

Exit 0 pass, 1 fail, 77 skip (no promtool; part 2 also needs root).
"""

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

FIX = os.environ.get("NATSCOPE_FIXTURES",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "..", "fixtures"))
SERVE_PORT = 19900
RUN_PORT = 19901
PROM_PORT = 19902
RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                     "deploy", "prometheus", "natscope-rules.yml")
KINDS = ("nat", "local", "other")
GW_FAMILIES = {            # /metrics family -> /api/v1/gateways field
    "natscope_gateway_used_ports": "ports_in_use",
    "natscope_gateway_capacity_ports": "port_space",
    "natscope_gateway_mappings": "mappings",
    "natscope_gateway_hosts": "hosts",
    "natscope_gateway_destinations": "destinations",
}
TRUTH_FIELDS = ("ports_in_use", "mappings", "hosts", "destinations")
# the loopback (natscope's own API) is not tracked: the table stays quiet
GW_RULESET = """
table inet nsmet {
	chain raw_pre {
		type filter hook prerouting priority raw; policy accept;
		iif "lo" notrack
	}
	chain raw_out {
		type filter hook output priority raw; policy accept;
		oif "lo" notrack
	}
}
"""


def lint(fail, text, what):
    """promtool check metrics: exit 0 and nothing to say."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    fail.check(r.returncode == 0 and not out,
               "%s: promtool check metrics exit %d: %s"
               % (what, r.returncode, out[:2000]))
    if r.returncode == 0 and not out:
        log("%s: promtool check metrics: clean (%d lines)"
            % (what, text.count("\n")))


def labels_used(text):
    """Every label name of every sample."""
    names = set()
    for (_, labels) in checks.parse_metrics(text):
        names.update(k for k, _ in labels)
    return names


def value(m, name, **labels):
    v = checks.metric(m, name, **labels)
    return None if v is checks.MISSING else v


def start_time(pid):
    """A process's start, seconds since the epoch, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f
                     if line.startswith("btime "))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def check_common(fail, text, m, status, gateways, what):
    """What holds for any natscope: the gateway families equal the API's
    answer, the kinds the status', the histogram its count, the labels
    none of Prometheus's own."""
    bad = labels_used(text) & {"instance", "job", "host", "exported_instance"}
    fail.check(not bad, "%s: labels of Prometheus's own: %s" % (what, bad))
    for (name, labels) in m:
        if name.startswith("natscope_host_"):
            fail.check("internal_ip" in dict(labels),
                       "%s: %s without internal_ip" % (what, name))
    for g in gateways:
        lab = {"public_ip": g["public_ip"], "proto": g["proto"]}
        for fam, field in GW_FAMILIES.items():
            fail.check(value(m, fam, **lab) == g[field],
                       "%s: %s%s = %r, API %s %r" % (
                           what, fam, lab, value(m, fam, **lab), field,
                           g[field]))
        want = 65536 if g["proto"] in ("icmp", "icmpv6") else 65535
        fail.check(g["port_space"] == want, "%s: %s port_space %r, not %d"
                   % (what, lab, g["port_space"], want))
        w = g.get("worst_destination")
        if w:
            fail.check(value(m, "natscope_gateway_worst_destination_mappings",
                             **lab) == w["mappings"] and
                       value(m, "natscope_gateway_worst_destination_"
                             "capacity_ports", **lab) == w["capacity"],
                       "%s: %s worst bucket differs from %r" % (what, lab, w))
    n = sum(1 for (name, _), v in m.items()
            if name == "natscope_gateway_mappings" and v > 0)
    fail.check(n == len(gateways), "%s: %d gateways above 0 in /metrics, "
               "%d in the API" % (what, n, len(gateways)))
    for k in KINDS:
        fail.check(value(m, "natscope_mappings", kind=k)
                   == status["mappings"][k],
                   "%s: natscope_mappings{kind=%s} %r, status %r"
                   % (what, k, value(m, "natscope_mappings", kind=k),
                      status["mappings"][k]))
    count = value(m, "natscope_resync_duration_seconds_count")
    fail.check(count is not None and
               count == value(m, "natscope_resyncs_total") and
               count == value(m, "natscope_resync_duration_seconds_bucket",
                              le="+Inf") and count >= 1,
               "%s: resync histogram count %r, resyncs_total %r"
               % (what, count, value(m, "natscope_resyncs_total")))
    buckets = sorted((float(dict(labels)["le"]), v)
                     for (name, labels), v in m.items()
                     if name == "natscope_resync_duration_seconds_bucket")
    fail.check(len(buckets) == 13 and
               all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
               "%s: resync buckets not cumulative: %r" % (what, buckets))
    fds, mx = value(m, "process_open_fds"), value(m, "process_max_fds")
    fail.check(fds is not None and mx is not None and 3 <= fds <= mx,
               "%s: process_open_fds %r, process_max_fds %r"
               % (what, fds, mx))


# ------------------------------------------------------------ offline

def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=10) as r:
        return r.read().decode()


def offline(fail, work):
    db = os.path.join(work, "offline.db")
    r = subprocess.run([nslab.natscope_bin(), "import", "--db", db, "--at",
                        "2026-11-25T02:00:00Z",
                        os.path.join(FIX, "lab-L.txt"),
                        os.path.join(FIX, "lab-E-timestamp-extended-id.txt")],
                       capture_output=True, text=True, timeout=120)
    if not fail.check(r.returncode == 0, "import exit %d: %s"
                      % (r.returncode, r.stderr)):
        return
    logf = open(os.path.join(work, "serve.log"), "w")
    p = subprocess.Popen([nslab.natscope_bin(), "serve", "--db", db,
                          "--listen", "127.0.0.1:%d" % SERVE_PORT],
                         stdout=logf, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", SERVE_PORT),
                                         1).close()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise nslab.LabError("natscope serve did not listen")
                time.sleep(0.1)
        text = http_get(SERVE_PORT, "/metrics")
        gws = json.loads(http_get(SERVE_PORT, "/api/v1/gateways"))
        status = json.loads(http_get(SERVE_PORT, "/api/v1/status"))
        lint(fail, text, "serve")
        m = checks.parse_metrics(text)
        check_common(fail, text, m, status, gws["gateways"], "serve")
        fail.check(any(g["proto"] == "icmp" for g in gws["gateways"]),
                   "serve: the fixture has no ICMP gateway to check")
        st = value(m, "process_start_time_seconds")
        fail.check(st is not None and abs(st - start_time(p.pid)) < 3,
                   "serve: process_start_time_seconds %r, the process "
                   "started at %.2f" % (st, start_time(p.pid)))
        fail.check(value(m, "natscope_collector_state", state="stopped")
                   == 1, "serve: an import's state is not stopped")
    finally:
        p.terminate()
        p.wait(10)
        logf.close()


# --------------------------------------------------------------- live

def metrics_text(ns):
    st, _, body = ns.request("GET", "/metrics")
    if st != 200:
        raise nslab.LabError("/metrics: status %d" % st)
    return body.decode()


def live(fail, work):
    checks.require_ctgen()
    with nslab.Lab("metrics") as lab:
        lab.prefix = "nsmet-%d-%s" % (os.getpid(), secrets.token_hex(3))
        lab.add_ns("gw")
        lab.nft("gw", GW_RULESET)
        ns = nslab.Natscope(lab, "gw", work, port=RUN_PORT, interval=1)
        try:
            ns.wait_status(lambda s: s.get("state") == "running", 20,
                           "state running")
            checks.ctgen(lab, "gw", "--count", 3000, "--public-ips", 2,
                         "--hosts", 40, "--seed", 91)
            checks.ctgen(lab, "gw", "--proto", "udp", "--count", 500,
                         "--public-ips", 1, "--public-base", 2,
                         "--hosts", 10, "--host-base", 500, "--seed", 92)
            T, t_list = checks.take_truth(lab)
            w = checks.wait_exact(ns, T, t_list, 30)
            checks.report_watch(fail, w, "ctgen's entries", 30)
            live_checks(fail, lab, ns, T)
            if shutil.which("prometheus") is None:
                log("fleet part skipped: no prometheus server")
            else:
                fleet(fail, lab, ns, work)
        finally:
            checks.finish(fail, lab, ns)


def live_checks(fail, lab, ns, T):
    # the kinds sum to the kernel's table (its count is read every
    # interval: wait for one after the last change)
    deadline = time.monotonic() + 10
    while True:
        text = metrics_text(ns)
        m = checks.parse_metrics(text)
        kinds = sum(value(m, "natscope_mappings", kind=k) or 0
                    for k in KINDS)
        entries = value(m, "natscope_conntrack_entries")
        if kinds == entries or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    fail.check(kinds == entries, "live: natscope_mappings sum to %r, natscope_conntrack_"
               "entries %r" % (kinds, entries))
    log("live: natscope_mappings sum to %r = natscope_conntrack_entries"
        % kinds)
    lint(fail, text, "live")
    status = ns.get_json("/api/v1/status")
    gws = ns.get_json("/api/v1/gateways")["gateways"]
    check_common(fail, text, m, status, gws, "live")
    for (ip, proto), t in sorted(T.gateways.items()):
        for fam, field in GW_FAMILIES.items():
            if field in TRUTH_FIELDS:
                got = value(m, fam, public_ip=ip, proto=proto)
                fail.check(got == t[field], "live: %s{%s %s} %r, conntrack "
                           "-L %r" % (fam, ip, proto, got, t[field]))
    fail.check(value(m, "natscope_coverage_complete") == 1 and
               value(m, "natscope_gap_open") == 0,
               "live: coverage_complete %r, gap_open %r"
               % (value(m, "natscope_coverage_complete"),
                  value(m, "natscope_gap_open")))
    st = value(m, "process_start_time_seconds")
    fail.check(st is not None and abs(st - start_time(ns.pid)) < 3,
               "live: process_start_time_seconds %r, natscope started at "
               "%.2f" % (st, start_time(ns.pid)))
    fail.check(value(m, "natscope_collector_start_time_seconds") is not None
               and abs(value(m, "natscope_collector_start_time_seconds")
                       - start_time(ns.pid)) < 3,
               "live: natscope_collector_start_time_seconds %r"
               % value(m, "natscope_collector_start_time_seconds"))

    # a public IP emptied: gone from the API, at 0 in /metrics
    gone = ("203.0.113.3", "udp")
    if not fail.check(gone in T.gateways, "live: no %s %s in the truth"
                      % gone):
        return
    lab.run("gw", "conntrack", "-D", "-p", "udp", "--reply-dst", gone[0],
            check=False)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        doc = ns.get_json("/api/v1/gateways")
        if not any((g["public_ip"], g["proto"]) == gone
                   for g in doc["gateways"]):
            break
        time.sleep(0.3)
    else:
        fail.add("live: %s %s still listed after its entries were deleted"
                 % gone)
        return
    time.sleep(2.5)   # a write or two later: history has its last period
    text = metrics_text(ns)
    m = checks.parse_metrics(text)
    lab_ = {"public_ip": gone[0], "proto": gone[1]}
    got = {f: value(m, f, **lab_) for f in GW_FAMILIES}
    fail.check(got == {"natscope_gateway_used_ports": 0,
                       "natscope_gateway_capacity_ports": 65535,
                       "natscope_gateway_mappings": 0,
                       "natscope_gateway_hosts": 0,
                       "natscope_gateway_destinations": 0},
               "live: the emptied gateway in /metrics: %r" % got)
    log("live: %s %s emptied: in /metrics at 0 (%r)" % (gone + (got,)))
    lint(fail, text, "live, a gateway gone")


# -------------------------------------------------------------- fleet

def prom_query(ns, path):
    """GET path from the Prometheus server in natscope's namespace."""
    with ns.netns():
        c = http.client.HTTPConnection("127.0.0.1", PROM_PORT, timeout=10)
        c.connect()
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    doc = json.loads(body)
    if r.status != 200 or doc.get("status") != "success":
        raise nslab.LabError("prometheus %s: %d %r" % (path, r.status,
                                                       body[:300]))
    return doc["data"]


def prom_wait(ns, what, pred, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, nslab.LabError,
                http.client.HTTPException) as e:
            last = repr(e)
        time.sleep(0.5)
    raise nslab.LabError("prometheus: timed out waiting for %s (last: %r)"
                         % (what, last))


def fleet(fail, lab, ns, work):
    pdir = os.path.join(work, "prometheus")
    os.makedirs(os.path.join(pdir, "data"))
    with open(RULES) as f:
        rules = re.sub(r"(\n\s+for: )\S+", r"\g<1>2s", f.read())
    with open(os.path.join(pdir, "natscope-rules.yml"), "w") as f:
        f.write(rules)
    with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n"
                "  evaluation_interval: 1s\n"
                "rule_files: [natscope-rules.yml]\n"
                "scrape_configs:\n  - job_name: natscope\n"
                "    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % RUN_PORT)
    logf = open(os.path.join(pdir, "prometheus.log"), "w")
    p = lab.spawn("gw", "prometheus",
                  "--config.file=" + os.path.join(pdir, "prometheus.yml"),
                  "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                  "--web.listen-address=127.0.0.1:%d" % PROM_PORT,
                  stdout=logf, stderr=subprocess.STDOUT)
    try:
        prom_wait(ns, "a scrape of natscope", lambda: any(
            r["value"][1] == "1" for r in prom_query(
                ns, "/api/v1/query?query=up%7Bjob%3D%22natscope%22%7D")
            ["result"]), 30)
        # the series Prometheus holds equal natscope's own API
        api = {(g["public_ip"], g["proto"]): g
               for g in ns.get_json("/api/v1/gateways")["gateways"]}
        got = {}
        for fam in ("natscope_gateway_used_ports", "natscope_gateway_mappings"):
            for r in prom_query(ns, "/api/v1/query?query=" + fam)["result"]:
                k = (r["metric"]["public_ip"], r["metric"]["proto"])
                got[(fam, k)] = float(r["value"][1])
                fail.check(r["metric"].get("job") == "natscope" and
                           r["metric"].get("instance")
                           == "127.0.0.1:%d" % RUN_PORT,
                           "prometheus: %s%r labels %r" % (fam, k,
                                                           r["metric"]))
        for k, g in api.items():
            for fam, field in (("natscope_gateway_used_ports",
                                "ports_in_use"),
                               ("natscope_gateway_mappings", "mappings")):
                fail.check(got.get((fam, k)) == g[field],
                           "prometheus: %s%r = %r, natscope's API %s %r"
                           % (fam, k, got.get((fam, k)), field, g[field]))
        log("prometheus: %d series equal natscope's API (%d gateways live)"
            % (len(got), len(api)))

        # a destination bucket filled to 93 %: the critical alert fires
        bucket_ip = "203.0.113.10"
        checks.ctgen(lab, "gw", "--count", 60000, "--public-ips", 1,
                     "--public-base", 9, "--dests", 1, "--hosts", 5,
                     "--host-base", 900, "--seed", 93)

        def firing():
            return [a for a in prom_query(ns, "/api/v1/alerts")["alerts"]
                    if a["labels"].get("alertname")
                    == "NatscopeDestinationBucketCritical" and
                    a["state"] == "firing" and
                    a["labels"].get("public_ip") == bucket_ip]
        alerts = prom_wait(ns, "NatscopeDestinationBucketCritical", firing,
                           60)
        a = alerts[0]
        fail.check(a["labels"].get("severity") == "critical" and
                   a["labels"].get("proto") == "tcp" and
                   a["annotations"].get("summary") == "%s (tcp): a "
                   "destination bucket is 93.01%% full" % bucket_ip,
                   "prometheus: the alert %r" % a)
        log("prometheus: NatscopeDestinationBucketCritical fired: %s"
            % a["annotations"].get("summary"))
    finally:
        lab.stop(p)
        logf.close()


def main():
    if shutil.which("promtool") is None:
        nslab.skip("no promtool (tools/deps.sh test installs prometheus)")
    fail = nslab.Failures()
    work = tempfile.mkdtemp(prefix="natscope-metrics-")
    t0 = time.monotonic()
    try:
        offline(fail, work)
    except (nslab.LabError, OSError, ValueError, KeyError,
            subprocess.SubprocessError) as e:
        fail.add("offline: %s: %s" % (type(e).__name__, e))
    root = os.geteuid() == 0
    if root:
        nslab.require_lab_tools()
        try:
            live(fail, work)
        except (nslab.LabError, OSError, ValueError, KeyError,
                subprocess.SubprocessError) as e:
            fail.add("live: %s: %s" % (type(e).__name__, e))
    else:
        log("live part skipped: needs root")
    if fail.items:
        log("FAIL (%d failures) in %.0f s; files kept in %s"
            % (len(fail.items), time.monotonic() - t0, work))
        for f in fail.items:
            sys.stderr.write("  - %s\n" % f.splitlines()[0][:300])
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASS in %.0f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
