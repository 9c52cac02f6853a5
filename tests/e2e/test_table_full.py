#!/usr/bin/env python3
"""test_table_full - the conntrack table is full (issue 6 section 7).

nf_conntrack_max is host-wide (read-only outside the initial namespace;
each namespace's own count is held against it), so this test takes the
e2e lab lock exclusively: no other natscope e2e test runs meanwhile, from
any worktree, and the original value is written back in teardown (or, if
this process is killed, by the next lab that takes the lock).

  1. The gateway holds ctgen's assured SNAT entries and unreplied UDP
     entries from real traffic (these can be early-dropped).
  2. During a ctgen storm, nf_conntrack_max is lowered to just above the
     gateway's count; real traffic keeps arriving (UDP from new ports,
     TCP connects).  The kernel refuses new entries (ctnetlink ENOMEM,
     packets dropped: `drop`) or evicts unreplied ones (`early_drop`,
     with DESTROY events).  The limit is restored.
  3. NAT port exhaustion: an SNAT rule with a 4-port range toward one
     destination; the 5th concurrent connection finds no free tuple and is
     never confirmed (`insert_failed`).
  4. Every figure equals truth.py's from `conntrack -L`, and status
     conntrack.{insert_failed,drop,early_drop} equal the kernel's per-CPU
     sums (`conntrack -S` in the gateway), each of them > 0.

Exit 0 pass, 1 fail, 77 skip.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
GW9 = "203.0.113.9"
MAX_KEY = "net.netfilter.nf_conntrack_max"
COUNTERS = ("insert_failed", "drop", "early_drop", "clash_resolve")

EXHAUST_RULESET = """
table ip natlab_x {
	chain post {
		type nat hook postrouting priority 99; policy accept;
		oifname "out0" ip saddr 198.18.0.0/24 ip daddr %s tcp dport 5432 snat to %s:40000-40003
	}
}
""" % (S4, GW9)


def kernel_stats(lab):
    """The gateway's conntrack statistics summed over CPUs."""
    out = lab.run("gw", "conntrack", "-S").stdout
    tot = {}
    for line in out.splitlines():
        for kv in line.split()[1:]:
            if "=" in kv:
                k, v = kv.split("=", 1)
                tot[k] = tot.get(k, 0) + int(v)
    return tot


def count(lab):
    return int(lab.read_sysctl("gw", "net.netfilter.nf_conntrack_count"))


def run(lab, work, fail):
    checks.require_ctgen()
    nslab.build_nat_lab(lab, with_c2=False, with_v6=False)
    lab.nft("gw", EXHAUST_RULESET)
    nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53,))
    c1 = nslab.Agent(lab, "c1")
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")

    # 1: assured entries and early-droppable ones
    checks.ctgen(lab, "gw", "--count", 20000, "--public-ips", 1,
                 "--public-base", 10, "--seed", 41)
    c1("udp_blast", dst=S4, port=9999, n=3000)
    k0 = kernel_stats(lab)
    n0 = count(lab)
    log("before the storm: %d entries; kernel counters %s"
        % (n0, {k: k0.get(k) for k in COUNTERS}))

    # 2: the limit lowered during a storm
    storm = checks.Ctgen(lab, "gw", "--count", 40000, "--rate", 20000,
                         "--public-ips", 1, "--public-base", 11,
                         "--host-base", 3000, "--seed", 42)
    time.sleep(0.5)
    limit = count(lab) + 300
    lab.set_global_sysctl(MAX_KEY, limit)
    try:
        blast = c1("udp_blast", dst=S4, port=9999, n=3000)
        tries = c1("tcp_try", dst=S4, port=443, n=20, wait=0.2)
        r = storm.wait(120)
        log("storm: %s; UDP %s; TCP %s" % (r, blast, tries))
        full = count(lab)
        t_full = time.time()
        st_full = ns.wait_status(lambda s: checks.as_of(s) and
                                 checks.as_of(s) > t_full, 10,
                                 "a snapshot while the table is full")
    finally:
        lab.restore_globals()
    k1 = kernel_stats(lab)
    log("with nf_conntrack_max %d: %d entries; ctgen created %d, refused "
        "%s; kernel counters %s" % (limit, full, r["created"], r["errors"],
                                    {k: k1.get(k, 0) - k0.get(k, 0)
                                     for k in COUNTERS}))
    fail.check(r["errors"]["enomem"] > 0, "ctgen was never refused: the "
               "table was not full")
    fail.check(checks.dig(st_full, "conntrack.max") == limit,
               "status conntrack.max %r while the limit was %d"
               % (checks.dig(st_full, "conntrack.max"), limit))

    # 3: NAT port exhaustion toward one destination
    c1("tcp_hold", dst=S4, port=5432, n=4, tag="x")
    ex = c1("tcp_try", dst=S4, port=5432, n=6, wait=0.3)
    log("4-port SNAT range, 6 more connects: %s" % ex)
    fail.check(ex["connected"] == 0, "connections beyond a 4-port SNAT "
               "range succeeded: %s" % ex)

    time.sleep(1.5)     # the gc worker settles after the table was full
    T, t_list = checks.take_truth(lab)
    k2 = kernel_stats(lab)
    grew = {k: k2.get(k, 0) - k0.get(k, 0) for k in COUNTERS}
    log("kernel counters grew by %s (totals %s)"
        % (grew, {k: k2.get(k, 0) for k in COUNTERS}))
    for k in ("drop", "early_drop", "insert_failed"):
        fail.check(grew[k] > 0, "the kernel's %s did not grow: the test did "
                   "not produce what it means" % k)

    w = checks.wait_exact(ns, T, t_list, 20)
    checks.report_watch(fail, w, "after the table was full", 20)
    st = ns.wait_status(lambda s: checks.as_of(s) and
                        checks.as_of(s) > t_list + 1, 10,
                        "a snapshot after the listing")
    k3 = kernel_stats(lab)
    for k in ("insert_failed", "drop", "early_drop"):
        v = checks.dig(st, "conntrack." + k)
        fail.check(v is not checks.MISSING and
                   k2.get(k, 0) <= (v or -1) <= k3.get(k, 0),
                   "status conntrack.%s %r, the kernel's is %d" % (
                       k, None if v is checks.MISSING else v, k3.get(k, 0)))
    fail.check(checks.dig(st, "conntrack.max") ==
               int(lab.read_sysctl("gw", MAX_KEY)),
               "status conntrack.max %r after the limit was restored"
               % checks.dig(st, "conntrack.max"))

    checks.finish(fail, lab, ns)


if __name__ == "__main__":
    sys.exit(checks.run_test("table-full", run, exclusive=True))
