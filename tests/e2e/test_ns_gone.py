#!/usr/bin/env python3
"""test_ns_gone - natscope's namespace or conntrack disappearing under it
(issue 6 section 7).

Three scenarios, each in a lab of its own with its own natscope:

  interfaces  the gateway's interfaces are deleted under real traffic
              (out0, which carries the masquerade, the SNAT address and the
              IPv6 uplink; then the inside interfaces).
  nft-flush   `nft flush ruleset` in the gateway: nothing needs conntrack
              any more; existing entries drain as they time out (TCP
              timeouts lowered to DRAIN seconds), new traffic is not
              tracked.
  netns-del   `ip netns del` of natscope's namespace while it runs: the
              name goes, the namespace stays, pinned by the process; ctgen
              entries with a short timeout drain.  The test reaches the
              namespace through /proc/PID/ns/net from then on.

In each: natscope must keep answering, never busy-loop (its CPU time over
CPU_WINDOW seconds, from /proc/PID/stat, stays under CPU_MAX), its figures
must equal truth.py's from `conntrack -L` right after the change and again
after the entries drained, and SIGTERM must end it cleanly (status 0
within 5 s).  What the kernel did is logged.

Exit 0 pass, 1 fail, 77 skip.
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
S6 = "2001:db8:2::2"
CPU_WINDOW = 5.0
CPU_MAX = 0.5       # seconds of CPU in CPU_WINDOW: 10% of one core
DRAIN = 8           # TCP timeouts while draining (seconds)
EXACT_TIMEOUT = 15


def cpu_check(fail, ns, what):
    c0 = ns.cpu_seconds()
    time.sleep(CPU_WINDOW)
    c1 = ns.cpu_seconds()
    if c0 is None or c1 is None:
        fail.add("%s: natscope is gone (exit %r)" % (what, ns.p.poll()))
        return
    log("%s: natscope used %.3f s of CPU in %.0f s" % (what, c1 - c0,
                                                       CPU_WINDOW))
    fail.check(c1 - c0 < CPU_MAX, "%s: natscope used %.2f s of CPU in %.0f "
               "s: a busy loop?" % (what, c1 - c0, CPU_WINDOW))


def exact(fail, lab, ns, what, argv_prefix=None):
    """natscope equals `conntrack -L` taken now.  wait_exact() needs the
    table to stay as listed: if it changed while natscope was compared
    (ctgen's short timeouts can expire meanwhile on a loaded machine), the
    comparison is made again on a new listing, up to three times."""
    for attempt in range(3):
        T, t_list = checks.take_truth(lab, argv_prefix=argv_prefix)
        w = checks.wait_exact(ns, T, t_list, EXACT_TIMEOUT)
        if w.exact:
            break
        T2, _ = checks.take_truth(lab, argv_prefix=argv_prefix)
        if (len(T2.entries) == len(T.entries) and
                T2.gateways == T.gateways):
            break  # the table held still: natscope was wrong
        log("%s: the table changed during the comparison (%d -> %d "
            "entries): again on a new listing" % (what, len(T.entries),
                                                 len(T2.entries)))
    checks.report_watch(fail, w, "%s (%d entries)" % (what, len(T.entries)),
                        EXACT_TIMEOUT)
    return T


def stop(fail, lab, ns, what):
    fail.check(ns.p.poll() is None, "%s: natscope exited %r"
               % (what, ns.p.poll()))
    t = time.monotonic()
    rc = lab.stop(ns.p, timeout=5)
    fail.check(rc == 0, "%s: natscope exited %r on SIGTERM" % (what, rc))
    log("%s: SIGTERM -> exit %r in %.2f s" % (what, rc,
                                              time.monotonic() - t))
    tail = ns.log_text()[-2500:]
    log("%s: natscope's log ends:\n%s" % (what, tail))


def nat_lab(lab, work):
    nslab.build_nat_lab(lab, with_c2=True, with_v6=True)
    nslab.start_servers(lab, "srv", tcp=(443,), udp=(53,))
    a = {s: nslab.Agent(lab, s) for s in ("c1", "c2")}
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    a["c1"]("tcp_hold", dst=S4, port=443, n=10, tag="h")
    a["c1"]("tcp_short", dst=S4, port=443, n=30)
    a["c1"]("udp", dst=S4, port=53, n=10)
    a["c1"]("tcp_hold", dst=S6, port=443, n=5, tag="h6")
    a["c2"]("tcp_hold", dst=S4, port=443, n=6, tag="h")
    a["c2"]("udp", dst=S4, port=53, n=10)
    return a, ns


def interfaces(fail, lab, work):
    a, ns = nat_lab(lab, work)
    T0 = exact(fail, lab, ns, "interfaces: before")
    lab.run("gw", "ip", "link", "del", "out0")
    time.sleep(1)
    T1 = exact(fail, lab, ns, "interfaces: out0 deleted")
    log("interfaces: out0 deleted: %d -> %d entries; gateways before %s, "
        "after %s" % (len(T0.entries), len(T1.entries),
                      sorted(T0.gateways), sorted(T1.gateways)))
    for short in ("in1", "in2"):
        lab.run("gw", "ip", "link", "del", short)
    time.sleep(1)
    T2 = exact(fail, lab, ns, "interfaces: in1, in2 deleted")
    log("interfaces: inside interfaces deleted: %d entries left; the "
        "gateway's addresses: %s" % (len(T2.entries),
                                     lab.addresses("gw")))
    st = ns.get_json("/api/v1/status")
    log("interfaces: status state %r, mappings %s"
        % (st.get("state"), st.get("mappings")))
    fail.check("no address is left in this network namespace" in
               ns.log_text(), "interfaces: natscope did not say that every "
               "address of its namespace is gone")
    cpu_check(fail, ns, "interfaces")
    stop(fail, lab, ns, "interfaces")


def nft_flush(fail, lab, work):
    a, ns = nat_lab(lab, work)
    for k in ("established", "time_wait", "close_wait", "syn_sent"):
        lab.sysctl("gw", "net.netfilter.nf_conntrack_tcp_timeout_" + k,
                   DRAIN)
    lab.sysctl("gw", "net.netfilter.nf_conntrack_udp_timeout", DRAIN)
    # fresh entries with the short timeouts
    a["c1"]("tcp_short", dst=S4, port=443, n=20)
    a["c1"]("udp", dst=S4, port=53, n=5)
    T0 = exact(fail, lab, ns, "nft-flush: before")
    t_flush = time.monotonic()
    lab.run("gw", "nft", "flush", "ruleset")
    T1 = exact(fail, lab, ns, "nft-flush: right after")
    a["c1"]("tcp_short", dst=S4, port=443, n=5)
    n = lab.read_sysctl("gw", "net.netfilter.nf_conntrack_count")
    log("nft-flush: %d entries before, %d right after, %s after 5 more "
        "connections (no longer tracked: %s)"
        % (len(T0.entries), len(T1.entries), n,
           int(n) == len(T1.entries)))
    cpu_check(fail, ns, "nft-flush")
    left = DRAIN + 2 - (time.monotonic() - t_flush)
    if left > 0:
        time.sleep(left)
    T2 = exact(fail, lab, ns, "nft-flush: after the short timeouts")
    log("nft-flush: %d entries left after %d s (timeouts raised to 600 s "
        "before the test lowered them: %s)"
        % (len(T2.entries), DRAIN + 2,
           sorted({(e.proto, e.state) for e in T2.entries}, key=str)))
    stop(fail, lab, ns, "nft-flush")


def netns_del(fail, lab, work):
    checks.require_ctgen()
    lab.add_ns("gw")
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    checks.ctgen(lab, "gw", "--count", 20000, "--public-ips", 1,
                 "--timeout", DRAIN, "--seed", 71)
    checks.ctgen(lab, "gw", "--count", 10000, "--public-ips", 1,
                 "--public-base", 1, "--proto", "udp", "--seed", 72)
    t_made = time.monotonic()
    exact(fail, lab, ns, "netns-del: before")
    name = lab.ns("gw")
    lab.run(None, "ip", "netns", "del", name)
    fail.check(not os.path.exists("/run/netns/" + name),
               "netns-del: /run/netns/%s still there" % name)
    via = ["nsenter", "--net=/proc/%d/ns/net" % ns.pid, "--"]
    log("netns-del: %s deleted; natscope (pid %d) still runs: %s"
        % (name, ns.pid, ns.p.poll() is None))
    exact(fail, lab, ns, "netns-del: right after", argv_prefix=via)
    cpu_check(fail, ns, "netns-del")
    left = DRAIN + 2 - (time.monotonic() - t_made)
    if left > 0:
        time.sleep(left)
    T = exact(fail, lab, ns, "netns-del: after ctgen's short timeouts",
              argv_prefix=via)
    fail.check(len(T.entries) == 10000, "netns-del: %d entries left, "
               "expected the 10000 long-lived ones" % len(T.entries))
    st = ns.get_json("/api/v1/status")
    log("netns-del: status state %r, conntrack %s" % (st.get("state"),
                                                      st.get("conntrack")))
    stop(fail, lab, ns, "netns-del")


def main():
    nslab.require_lab_tools()
    fail = nslab.Failures()
    t0 = time.monotonic()
    keep = []
    for name, body in (("interfaces", interfaces), ("nft-flush", nft_flush),
                       ("netns-del", netns_del)):
        work = tempfile.mkdtemp(prefix="natscope-gone-%s-" % name)
        n = len(fail.items)
        try:
            with nslab.Lab("gone-" + name) as lab:
                try:
                    body(fail, lab, work)
                except (nslab.LabError, OSError, ValueError,
                        KeyError) as e:
                    fail.add("%s: %s: %s" % (name, type(e).__name__, e))
        except nslab.LabError as e:
            fail.add(str(e))
        if len(fail.items) > n:
            keep.append(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - t0
    if fail.items:
        log("FAIL (%d failures) in %.0f s; files kept in %s"
            % (len(fail.items), took, " ".join(keep)))
        for f in fail.items:
            sys.stderr.write("  - " + f.splitlines()[0][:300] + "\n")
        return 1
    log("PASS in %.0f s" % took)
    return 0


if __name__ == "__main__":
    sys.exit(main())
