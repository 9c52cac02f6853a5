#!/usr/bin/env python3
"""test_flush_load - `conntrack -F` while the table is under load (issue 6
section 7).

natscope (default event buffer, --interval 1) follows a gateway namespace
where bench/ctgen keeps a steady churn (create + delete at RATE/s) on one
public IP over static entries on another.  During the churn the table is
flushed twice with `conntrack -F`; the second flush races a full-speed
ctgen storm on a third public IP.  When the load is over every figure
must equal truth.py's from `conntrack -L` within EXACT_TIMEOUT, and stay
so.

Exit 0 pass, 1 fail, 77 skip.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

RATE = 40000
CHURN = 8 if not checks.LONG else 30
EXACT_TIMEOUT = 30


def run(lab, work, fail):
    checks.require_ctgen()
    lab.add_ns("gw")
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    checks.ctgen(lab, "gw", "--count", 50000, "--public-ips", 1,
                 "--hosts", 2000, "--seed", 51)
    churn = checks.Ctgen(lab, "gw", "--churn", CHURN, "--rate", RATE,
                         "--lifetime", 2, "--public-ips", 1,
                         "--public-base", 1, "--hosts", 3000,
                         "--host-base", 4000, "--ipv6", 0.1, "--seed", 52)
    flushes = []
    for k, at in enumerate((CHURN * 0.3, CHURN * 0.6)):
        storm = None
        while time.monotonic() - churn.t0 < at:
            time.sleep(0.05)
        if k == 1:
            storm = checks.Ctgen(lab, "gw", "--count", 100000,
                                 "--public-ips", 2, "--public-base", 2,
                                 "--hosts", 1000, "--host-base", 9000,
                                 "--proto", "udp", "--seed", 53)
            time.sleep(0.1)
        n = int(lab.read_sysctl("gw", "net.netfilter.nf_conntrack_count"))
        r = lab.run("gw", "conntrack", "-F")
        flushes.append((n, r.stderr.strip()))
        log("conntrack -F with %d entries: %s" % (n, r.stderr.strip()))
        if storm is not None:
            log("storm: %s" % storm.wait(60))
    r = churn.wait(CHURN + 60)
    log("churn: %s" % r)
    fail.check(r["created"] > RATE * CHURN * 0.8, "the churn made only %r "
               "entries" % r["created"])

    T, t_list = checks.take_truth(lab)
    log("after the load: %d entries, %d mappings on %d gateways"
        % (len(T.entries), len(T.mappings), len(T.gateways)))
    fail.check(len(T.gateways) >= 3, "the table should hold the churn's and "
               "the storm's gateways: %r" % sorted(T.gateways))
    w = checks.wait_exact(ns, T, t_list, EXACT_TIMEOUT)
    checks.report_watch(fail, w, "after conntrack -F under load",
                        EXACT_TIMEOUT)
    if w.exact:
        bad = checks.stays_exact(ns, T, 3)
        fail.check(not bad, "not exact on later snapshots: %s" % bad[:3])
    st = ns.get_json("/api/v1/status")
    log("events %s; resync %s" % (st.get("events"), st.get("resync")))
    checks.finish(fail, lab, ns)


if __name__ == "__main__":
    sys.exit(checks.run_test("flush", run))
