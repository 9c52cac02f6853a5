#!/usr/bin/env python3
"""test_storm - natscope loses events on purpose and must repair the loss.

In a throw-away namespace natscope runs with a tiny event buffer (256K holds
~200 events).  bench/ctgen then creates a storm of SNAT'd entries at full
rate - thousands of internal hosts and hundreds of destinations over three
public IPs, public ports reused across destinations, some IPv6, some
without NAT - deletes half of them at full rate, and adds a UDP burst.
ENOBUFS is certain.  The test asserts that natscope

  * noticed: events.lost equals the kernel's drop counter for its socket
    (read from /proc/net/netlink), ENOBUFS counted, a resync ran, and
    /api/v1/status lists a gap with the events lost and the repair counts;
  * said so: every /api/v1/gateways answer taken from a snapshot in which
    a gap was open is marked incomplete;
  * repaired: every /api/v1/gateways figure, and every row of /hosts and
    /destinations of every gateway, equals the ground truth computed by
    truth.py from `conntrack -L` in the namespace (ctgen's own expect files
    are checked against it as well).

Exit 0 pass, 1 fail, 77 skip (not root, or tools missing).  NATSCOPE_BIN and
NATSCOPE_CTGEN come from ctest.
"""

import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))

import benchlab  # noqa: E402  (the benchmark's /proc readers)
import checks  # noqa: E402
import nslab  # noqa: E402
import truth  # noqa: E402
from nslab import log  # noqa: E402

CTGEN = os.environ.get("NATSCOPE_CTGEN", "/work/main/build/ctgen")
BUFFER = "256K"
INTERVAL = 1
REPAIR_TIMEOUT = 30  # seconds after the storm until every figure is exact

# ctgen runs, one after the other; each owns its gateways (public IP,
# proto) and hosts, so that its expect file can be checked on its own
LOADS = (
    ("tcp", ["--count", 80000, "--hosts", 3000, "--dests", 400,
             "--public-ips", 3, "--ipv6", 0.1, "--no-nat-fraction", 0.05,
             "--delete-fraction", 0.5, "--seed", 7]),
    ("udp", ["--count", 10000, "--proto", "udp", "--hosts", 500,
             "--dests", 20, "--public-ips", 2, "--timeout", 900,
             "--seed", 8]),
    # 4 s of steady overrun, so that snapshots are taken with a gap open
    ("paced", ["--count", 120000, "--rate", 30000, "--hosts", 1000,
               "--host-base", 5000, "--dests", 50, "--public-ips", 2,
               "--public-base", 3, "--seed", 9, "--delete-fraction", 0.3]),
)

GW_FIELDS = ("ports_in_use", "mappings", "hosts", "destinations")


class Watcher(threading.Thread):
    """Polls status and gateways during the storm.  For answers from the
    same snapshot (same as_of): while a gap is open (state resyncing or a
    gap without an end) gateways must say coverage incomplete."""

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns = ns
        self.done = threading.Event()
        self.pairs = self.open_seen = self.incomplete_seen = 0
        self.bad = []
        self.errors = []

    def get(self, path):
        try:
            st, _, body = self.ns.request("GET", path, timeout=5)
            return json.loads(body) if st == 200 else None
        except Exception as e:  # noqa: BLE001 - report, keep polling
            if len(self.errors) < 5:
                self.errors.append("%s: %r" % (path, e))
            return None

    def run(self):
        while not self.done.is_set():
            s = self.get("/api/v1/status")
            g = self.get("/api/v1/gateways")
            if s and g and s.get("as_of") == g.get("as_of"):
                self.pairs += 1
                gaps = s.get("gaps") or []
                opened = s.get("state") == "resyncing" or any(
                    x.get("end") is None for x in gaps)
                complete = (g.get("coverage") or {}).get("complete")
                if complete is False:
                    self.incomplete_seen += 1
                if opened:
                    self.open_seen += 1
                    if complete is not False:
                        self.bad.append((s.get("as_of"), s.get("state"),
                                         g.get("coverage")))
            time.sleep(0.02)


def check_expect(fail, T, path):
    """ctgen's expect file against truth.py's figures from conntrack -L:
    the generator must produce exactly what it claims."""
    with open(path) as f:
        e = json.load(f)
    for g in e["gateways"]:
        k = (g["public_ip"], g["proto"])
        t = T.gateways.get(k)
        if not fail.check(t is not None, "ctgen expects gateway %s %s, "
                          "conntrack -L lacks it" % k):
            continue
        for f in GW_FIELDS:
            fail.check(g[f] == t[f], "ctgen expect %s %s %s: %r, conntrack "
                       "-L %r" % (k + (f, g[f], t[f])))
        hosts = {h["ip"]: (h["mappings"], h["ports_in_use"])
                 for h in T.hosts[k]}
        fail.check({h: (m, p) for h, m, p in e["hosts"]["%s/%s" % k]}
                   == hosts, "ctgen expect %s %s: hosts differ" % k)
        dests = {(x["ip"], x["port"]): x["mappings"] for x in T.dests[k]}
        fail.check({(ip, port): m for ip, port, m in
                    e["destinations"]["%s/%s" % k]} == dests,
                   "ctgen expect %s %s: destinations differ" % k)
    return e


def run(lab, work, fail):
    lab.add_ns("gw")
    ns = nslab.Natscope(lab, "gw", work, interval=INTERVAL,
                        extra=("--event-buffer", BUFFER))
    time.sleep(0.3)
    if ns.p.poll() is not None:
        fail.add("natscope exited with %d at once:\n%s"
                 % (ns.p.returncode, ns.log_text()))
        return
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    log("natscope running (%s)" % " ".join(ns.argv))

    watcher = Watcher(ns)
    watcher.start()
    expects = []
    for name, args in LOADS:
        path = os.path.join(work, name + ".expect.json")
        r = lab.run("gw", CTGEN, *[str(a) for a in args],
                    "--expect-file", path, timeout=300)
        log("ctgen %s: %s" % (name, r.stdout.strip()))
        expects.append(path)
    storm_end = time.time()

    text, t_list = nslab.conntrack_list(lab, "gw")
    T = truth.Truth(truth.parse(text), set(), 28232)
    nat, other = T.count("nat"), len(T.other)
    log("kernel: %d NAT mappings on %d gateways, %d other entries"
        % (nat, len(T.gateways), other))
    want_nat = want_other = 0
    for path in expects:
        e = check_expect(fail, T, path)
        want_nat += e["nat"]
        want_other += e["other"]
    fail.check((nat, other) == (want_nat, want_other),
               "kernel holds %d NAT + %d other entries, ctgen made %d + %d"
               % (nat, other, want_nat, want_other))

    # exact: a snapshot taken after the listing, no resync running, and
    # every answer equal to the truth
    diffs, last = ["no snapshot after the storm"], None
    deadline = time.monotonic() + REPAIR_TIMEOUT
    while time.monotonic() < deadline:
        last = ns.get_json("/api/v1/status")
        if (last.get("state") == "running" and
                nslab.rfc3339(last.get("as_of")) > t_list and
                not last["resync"].get("active") and
                last["mappings"].get("nat") == nat):
            diffs = checks.compare(ns, T)
            if not diffs:
                break
        time.sleep(0.2)
    exact_after = time.time() - storm_end
    watcher.done.set()
    watcher.join()
    if fail.check(not diffs, "figures not exact %d s after the storm:\n  %s"
                  % (REPAIR_TIMEOUT, "\n  ".join(diffs[:15]))):
        log("every figure exact %.1f s after the storm" % exact_after)
    else:
        log("last status: %s" % json.dumps(last))

    s = ns.get_json("/api/v1/status")
    ev, rs, gaps = s.get("events", {}), s.get("resync", {}), s.get("gaps")
    drops = benchlab.netlink_drops(ns.p.pid)
    log("events %s; resync %s; kernel drops on natscope's socket %d"
        % (ev, rs, drops))
    log("gaps %s" % gaps)
    fail.check(drops > 0, "the kernel dropped no event with a %s buffer: "
               "the storm proved nothing" % BUFFER)
    fail.check(ev.get("lost") == drops,
               "events.lost %r, the kernel dropped %d" % (ev.get("lost"),
                                                          drops))
    fail.check((ev.get("enobufs") or 0) > 0, "events.enobufs is %r"
               % ev.get("enobufs"))
    fail.check((rs.get("count") or 0) >= 2,
               "resync.count %r: the start-up dump and at least one "
               "repair" % rs.get("count"))
    if fail.check(isinstance(gaps, list) and gaps, "status.gaps is empty"):
        for g in gaps:
            fail.check(g.get("end") is not None, "gap %r never closed" % g)
            fail.check(all(isinstance(g.get(k), int) for k in
                           ("events_lost", "enobufs", "added", "removed",
                            "changed")),
                       "gap %r lacks counts" % g)
        lost = sum(g.get("events_lost") or 0 for g in gaps)
        fail.check(0 < lost <= drops, "gaps lost %d events in all, the "
                   "kernel dropped %d" % (lost, drops))
        fail.check(sum((g.get("added") or 0) + (g.get("removed") or 0) +
                       (g.get("changed") or 0) for g in gaps) > 0,
                   "the repairs changed nothing although %d events were "
                   "lost" % lost)

    # an answer's coverage lists the gaps that overlap its interval: the
    # repair's own gap until a snapshot taken an interval after it closed
    deadline = time.monotonic() + 3 * INTERVAL
    while True:
        doc = ns.get_json("/api/v1/gateways")
        if ((doc.get("coverage") or {}).get("complete") is True or
                time.monotonic() > deadline):
            break
        time.sleep(0.1)
    fail.check((doc.get("coverage") or {}).get("complete") is True,
               "%d s after the repair /api/v1/gateways says coverage %r"
               % (3 * INTERVAL, doc.get("coverage")))
    log("watcher: %d consistent status/gateways pairs, %d with a gap open, "
        "%d marked incomplete%s" % (
            watcher.pairs, watcher.open_seen, watcher.incomplete_seen,
            "; errors %s" % watcher.errors if watcher.errors else ""))
    fail.check(not watcher.bad, "gateways claimed complete coverage while a "
               "gap was open: %s" % watcher.bad[:3])

    fail.check(ns.p.poll() is None, "natscope died during the storm")
    rc = lab.stop(ns.p)
    fail.check(rc == 0, "natscope exited %r on SIGTERM" % rc)
    if fail.items:
        log("natscope log (tail):\n" + ns.log_text()[-3000:])


def main():
    nslab.require_lab_tools()
    if not os.access(CTGEN, os.X_OK):
        log("FAIL: ctgen not built: %s" % CTGEN)
        return 1
    fail = nslab.Failures()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="natscope-storm-") as work, \
            nslab.Lab("storm") as lab:
        try:
            run(lab, work, fail)
        except (nslab.LabError, OSError, ValueError, KeyError) as e:
            fail.add("%s: %s" % (type(e).__name__, e))
    log("%s in %.0f s" % ("FAIL (%d)" % len(fail.items) if fail.items
                          else "PASS", time.monotonic() - t0))
    return 1 if fail.items else 0


if __name__ == "__main__":
    sys.exit(main())
