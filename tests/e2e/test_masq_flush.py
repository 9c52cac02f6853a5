#!/usr/bin/env python3
"""test_masq_flush - masquerade entries flushed by the kernel (issue 6
section 7).

The lab's gateway gets a second uplink, out1 (192.0.2.1/24) to a second
server srv2 (192.0.2.2), masqueraded like out0.  Real TCP (held, TIME_WAIT)
and UDP traffic from both clients leaves by both uplinks, IPv4 and IPv6.

  1. out1 goes down: the kernel deletes every entry masqueraded on it in
     one burst (DESTROY events); SNAT and out0 entries stay.
  2. out1 comes back, new traffic, then its address is removed: the kernel
     deletes the entries masqueraded to that address.
  3. out0's IPv6 address is removed: the same for IPv6.
  4. 203.0.113.9, the SNAT (not masquerade) address, is removed: the
     kernel keeps its entries.

After each step, once the kernel's flush is over (its count is stable),
every figure must equal truth.py's from `conntrack -L`.  The test also
checks that each step really removed (or kept) what it should.

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
S6 = "2001:db8:2::2"
S2 = "192.0.2.2"
OUT1 = "192.0.2.1"
GW6 = "2001:db8:2::1"
GW9 = "203.0.113.9"
EXACT_TIMEOUT = 15

MASQ1_RULESET = """
table ip natlab_m {
	chain post {
		type nat hook postrouting priority 99; policy accept;
		oifname "out1" masquerade
	}
}
"""


def settle(lab, short="gw", timeout=10):
    """Waits until the namespace's conntrack count stops changing (the
    kernel flushes masquerade entries from a work queue).  Returns it."""
    key = "net.netfilter.nf_conntrack_count"
    last = int(lab.read_sysctl(short, key))
    deadline = time.monotonic() + timeout
    stable = 0
    while time.monotonic() < deadline and stable < 3:
        time.sleep(0.2)
        n = int(lab.read_sysctl(short, key))
        stable = stable + 1 if n == last else 0
        last = n
    return last


def stable_truth(lab, timeout=5.0):
    """`conntrack -L` once two listings 0.3 s apart agree: real TCP
    connections that just closed still move from LAST_ACK to TIME_WAIT,
    and a truth taken in between is stale for the whole wait."""
    T, t = checks.take_truth(lab)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        T2, t2 = checks.take_truth(lab)
        if T2.gateways == T.gateways:
            return T2, t2
        T, t = T2, t2
    return T, t


def on(T, ip):
    return sum(1 for m in T.mappings if m.public_ip == ip)


def traffic(a, n_short, tag):
    c1, c2, gw = a["c1"], a["c2"], a["gw"]
    c1("tcp_hold", dst=S4, port=443, n=5, tag=tag)
    c1("tcp_short", dst=S4, port=443, n=n_short)
    c1("tcp_hold", dst=S2, port=443, n=8, tag=tag)
    c1("tcp_short", dst=S2, port=443, n=n_short)
    c1("udp", dst=S2, port=53, n=n_short)
    c2("tcp_hold", dst=S2, port=5432, n=4, tag=tag)
    c2("udp", dst=S2, port=53, n=n_short // 2)
    c2("tcp_short", dst=S4, port=443, n=n_short // 2)     # SNAT to .9
    c1("tcp_hold", dst=S6, port=443, n=3, tag=tag)
    c1("tcp_short", dst=S6, port=443, n=n_short // 2)
    gw("tcp_hold", dst=S2, port=443, n=2, tag=tag, src=OUT1)   # local


def step(fail, lab, ns, what, cmd, expect_gone, expect_kept):
    """Runs cmd in the gateway, waits for the kernel to settle, checks that
    the mappings on expect_gone's IPs went and expect_kept's stayed, and
    that natscope is exact.  Returns the truth."""
    T0, _ = checks.take_truth(lab)
    t = time.monotonic()
    lab.run("gw", *cmd)
    n = settle(lab)
    T, t_list = checks.take_truth(lab)
    log("%s (%s): %d -> %d entries, settled in %.1f s"
        % (what, " ".join(cmd), len(T0.entries), n,
           time.monotonic() - t))
    for ip in expect_gone:
        log("  %s: %d -> %d mappings" % (ip, on(T0, ip), on(T, ip)))
        fail.check(on(T0, ip) > 0 and on(T, ip) == 0,
                   "%s: mappings on %s %d -> %d: the kernel did not flush "
                   "them" % (what, ip, on(T0, ip), on(T, ip)))
    for ip in expect_kept:
        log("  %s: %d -> %d mappings (kept)" % (ip, on(T0, ip), on(T, ip)))
        fail.check(on(T0, ip) > 0 and on(T, ip) == on(T0, ip),
                   "%s: mappings on %s %d -> %d, expected to stay"
                   % (what, ip, on(T0, ip), on(T, ip)))
    w = checks.wait_exact(ns, T, t_list, EXACT_TIMEOUT)
    checks.report_watch(fail, w, what, EXACT_TIMEOUT)
    return T


def run(lab, work, fail):
    nslab.build_nat_lab(lab, with_c2=True, with_v6=True)
    lab.add_ns("srv2")
    lab.veth("gw", "out1", "srv2", "eth0")
    lab.run("gw", "ip", "addr", "add", OUT1 + "/24", "dev", "out1")
    lab.run("srv2", "ip", "addr", "add", S2 + "/24", "dev", "eth0")
    lab.run("srv2", "ip", "route", "add", "default", "via", OUT1)
    lab.nft("gw", MASQ1_RULESET)
    nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53,))
    nslab.start_servers(lab, "srv2", tcp=(443, 5432), udp=(53,))
    a = {s: nslab.Agent(lab, s) for s in ("c1", "c2", "gw")}
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")

    traffic(a, 60, "a")
    T, t_list = stable_truth(lab)
    log("traffic: %d entries, %d mappings on %d gateways"
        % (len(T.entries), len(T.mappings), len(T.gateways)))
    w = checks.wait_exact(ns, T, t_list, EXACT_TIMEOUT)
    checks.report_watch(fail, w, "before", EXACT_TIMEOUT)

    step(fail, lab, ns, "out1 down", ("ip", "link", "set", "out1", "down"),
         [OUT1], ["203.0.113.1", GW9, GW6])

    lab.run("gw", "ip", "link", "set", "out1", "up")
    lab.run("srv2", "ip", "link", "set", "eth0", "up")
    time.sleep(0.5)
    traffic(a, 40, "b")
    step(fail, lab, ns, "out1's address removed",
         ("ip", "addr", "del", OUT1 + "/24", "dev", "out1"),
         [OUT1], ["203.0.113.1", GW9, GW6])

    step(fail, lab, ns, "out0's IPv6 address removed",
         ("ip", "-6", "addr", "del", GW6 + "/64", "dev", "out0"),
         [GW6], ["203.0.113.1", GW9])

    step(fail, lab, ns, "the SNAT address removed",
         ("ip", "addr", "del", GW9 + "/24", "dev", "out0"),
         [], ["203.0.113.1", GW9])

    checks.finish(fail, lab, ns)


if __name__ == "__main__":
    sys.exit(checks.run_test("masq", run))
