#!/usr/bin/env python3
"""test_restart - natscope restarted on an existing database while the
table is busy (issue 6 section 7).

  1. natscope follows ctgen's static entries on public IP A until exact,
     then stops (SIGTERM); its database holds those figures.
  2. While it is stopped the table changes: a /24 of A's hosts is deleted,
     static entries appear on public IP C.  The static part (A and C) is
     the ground truth from here on.
  3. A ctgen churn starts on public IP B (the table is busy), then natscope
     starts again on the same --db.  From the moment the process starts
     until its first dump has completed (and a few seconds more),
     /api/v1/gateways and /api/v1/status are polled as fast as possible.
     No answer may present the previous run's tables as current: an answer
     saying coverage complete must come from this process (status pid),
     from a snapshot taken after it started, with state running, and its
     A and C figures must be the new ones; while state is "starting",
     coverage must say incomplete.
  4. When the churn is over every figure equals truth.py's from
     `conntrack -L`.

Exit 0 pass, 1 fail, 77 skip.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

A, C = "203.0.113.1", "203.0.113.3"
FIELDS = ("mappings", "ports_in_use", "hosts", "destinations")
WATCH_AFTER = 3.0       # seconds of polling after the first dump completed


def figures(doc, ip):
    for g in doc.get("gateways") or []:
        if (g.get("public_ip"), g.get("proto")) == (ip, "tcp"):
            return {f: g.get(f) for f in FIELDS}
    return None


def poll(ns, path):
    try:
        st, _, body = ns.request("GET", path, timeout=5)
    except (OSError, nslab.LabError, Exception) as e:  # noqa: BLE001
        return ("error", type(e).__name__, None)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return ("http", st, doc)


def run(lab, work, fail):
    checks.require_ctgen()
    lab.add_ns("gw")
    ns1 = nslab.Natscope(lab, "gw", work, interval=1)
    ns1.wait_status(lambda s: s.get("state") == "running", 20,
                    "state running")
    checks.ctgen(lab, "gw", "--count", 100000, "--public-ips", 1,
                 "--hosts", 2000, "--seed", 61)
    T, t_list = checks.take_truth(lab)
    w = checks.wait_exact(ns1, T, t_list, 20)
    checks.report_watch(fail, w, "first run", 20)
    old = ns1.get_json("/api/v1/gateways")
    old_a = figures(old, A)
    rc = lab.stop(ns1.p, timeout=20)
    fail.check(rc == 0, "first natscope exited %r on SIGTERM" % rc)
    log("first run stopped; its database says A = %s" % old_a)

    r = lab.run("gw", "conntrack", "-D", "-s", "198.18.1.0/24")
    log("while stopped: conntrack -D -s 198.18.1.0/24: %s"
        % r.stderr.strip())
    checks.ctgen(lab, "gw", "--count", 20000, "--public-ips", 1,
                 "--public-base", 2, "--hosts", 500, "--host-base", 3000,
                 "--seed", 62)
    Ts, _ = checks.take_truth(lab)
    new = {ip: {f: Ts.gateways[(ip, "tcp")][f] for f in FIELDS}
           for ip in (A, C)}
    log("static truth now: A %s, C %s" % (new[A], new[C]))
    fail.check(new[A] != old_a, "the table did not change while natscope "
               "was stopped")

    churn = checks.Ctgen(lab, "gw", "--churn", 12, "--rate", 30000,
                         "--lifetime", 2, "--public-ips", 1,
                         "--public-base", 1, "--hosts", 1000,
                         "--host-base", 5000, "--seed", 63)
    time.sleep(1.0)
    t_spawn = time.time()
    ns2 = nslab.Natscope(lab, "gw", work, interval=1,
                         logname="natscope2.log")
    pid = ns2.pid
    seen = {"error": 0, "starting": 0, "complete": 0, "incomplete": 0}
    bad = []
    done_at = None
    n = 0
    while time.time() - t_spawn < 30:
        if ns2.p.poll() is not None:
            fail.add("the second natscope exited %r:\n%s"
                     % (ns2.p.returncode, ns2.log_text()))
            return
        n += 1
        for path in ("/api/v1/gateways", "/api/v1/status"):
            kind, code, doc = poll(ns2, path)
            t = time.time() - t_spawn
            if kind == "error" or not isinstance(doc, dict):
                seen["error"] += 1
                continue
            comp = checks.complete(doc)
            seen["complete" if comp else "incomplete"] += 1
            if path.endswith("status"):
                state = doc.get("state")
                if state == "starting":
                    seen["starting"] += 1
                    if comp:
                        bad.append("+%.3f s status: state starting with "
                                   "coverage complete" % t)
                if comp and (doc.get("pid") != pid or state != "running"):
                    bad.append("+%.3f s status: coverage complete from pid "
                               "%r state %r (this process is %d)"
                               % (t, doc.get("pid"), state, pid))
                if (done_at is None and state == "running" and
                        doc.get("pid") == pid and
                        (checks.dig(doc, "resync.count") or 0) >= 1):
                    done_at = t
                    log("first dump complete by +%.3f s (status: %s)"
                        % (t, doc.get("resync")))
            elif not comp:
                if figures(doc, A) == old_a:
                    seen["old_incomplete"] = seen.get("old_incomplete",
                                                      0) + 1
            else:
                a = checks.as_of(doc)
                if a is None or a < t_spawn:
                    bad.append("+%.3f s gateways: coverage complete with "
                               "as_of %s, before this process started"
                               % (t, doc.get("as_of")))
                for ip in (A, C):
                    got = figures(doc, ip)
                    if got != new[ip]:
                        bad.append("+%.3f s gateways: coverage complete, %s "
                                   "%s, the table holds %s%s"
                                   % (t, ip, got, new[ip],
                                      " (the previous run's figures)"
                                      if ip == A and got == old_a else ""))
        if done_at is not None and time.time() - t_spawn > \
                done_at + WATCH_AFTER:
            break
    log("polled %d times in %.1f s: %s" % (n, time.time() - t_spawn, seen))
    fail.check(done_at is not None, "the second natscope never said its "
               "first dump completed within 30 s")
    if bad:
        fail.add("%d answers presented other tables than the kernel's as "
                 "current; first: %s" % (len(bad), "; ".join(bad[:3])))

    r = churn.wait(60)
    log("churn: created %d, deleted %d" % (r["created"], r["deleted"]))
    T, t_list = checks.take_truth(lab)
    w = checks.wait_exact(ns2, T, t_list, 20)
    checks.report_watch(fail, w, "after the restart", 20)
    rc = lab.stop(ns2.p, timeout=20)
    fail.check(rc == 0, "second natscope exited %r on SIGTERM" % rc)
    if fail.items:
        log("second natscope's log:\n" + ns2.log_text()[-3000:])


if __name__ == "__main__":
    sys.exit(checks.run_test("restart", run))
