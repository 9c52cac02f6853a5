#!/usr/bin/env python3
"""test_zones_protos - entries in a non-default conntrack zone, DNAT + SNAT
together, UDP-Lite and SCTP (issue 6 section 7).

The lab's gateway gets, besides its masquerade and SNAT:

  * zone 7 for everything client c2 sends (nftables `ct zone set` at raw
    priority, and for the replies, which come back to c2's SNAT port
    range), while c1 reaches the same server port through the same public
    IP in zone 0: one public IP, one destination ip:port, two buckets;
  * bench/ctgen entries with the same tuples in zone 0 and zone 3;
  * DNAT + SNAT: c1 connects to 203.0.113.1:8080, DNATed to the server's
    203.0.113.2:443 and masqueraded (destination = the real backend);
    and DNAT only: the server connects to 203.0.113.1:2222, forwarded to
    c1 (uses no port of the gateway: "other");
  * UDP-Lite: real traffic (this kernel has UDP-Lite sockets) and ctgen;
  * SCTP: real INIT packets from a raw socket with a correct CRC32c
    (there are no SCTP sockets on this kernel) through the masquerade, and
    ctgen entries over ctnetlink.

Then every figure is compared with truth.py's from `conntrack -L`, and the
lab must really hold what it means to (zones, protocols, DNAT).

Exit 0 pass, 1 fail, 77 skip.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

S4 = "203.0.113.2"
GW1 = "203.0.113.1"
GW9 = "203.0.113.9"
ZONE = 7

# runs before the lab's own post chain (priority srcnat): the first NAT
# binding wins
ZONE_RULESET = """
table ip natlab_z {
	chain raw_pre {
		type filter hook prerouting priority raw; policy accept;
		iifname "in2" ct zone set %(zone)d
		iifname "out0" ip daddr %(gw9)s th dport 20000-29999 ct zone set %(zone)d
	}
	chain dnat_pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %(gw1)s tcp dport 8080 dnat to %(s4)s:443
		ip daddr %(gw1)s tcp dport 2222 dnat to 198.18.0.2:7000
	}
	chain post {
		type nat hook postrouting priority 99; policy accept;
		oifname "out0" ip saddr 198.18.1.0/24 meta l4proto tcp snat to %(gw9)s:20000-29999
		oifname "out0" ip saddr 198.18.1.0/24 meta l4proto udp snat to %(gw9)s:20000-29999
		oifname "out0" ip saddr 198.18.0.0/24 ip daddr %(s4)s tcp dport 5432 snat to %(gw9)s:30000-39999
	}
}
""" % {"zone": ZONE, "gw9": GW9, "gw1": GW1, "s4": S4}

SCTP_TIMEOUTS = ("closed", "cookie_wait", "cookie_echoed", "established")


def run(lab, work, fail):
    checks.require_ctgen()
    nslab.build_nat_lab(lab, with_c2=True, with_v6=False)
    lab.nft("gw", ZONE_RULESET)
    for t in SCTP_TIMEOUTS:
        lab.sysctl("gw", "net.netfilter.nf_conntrack_sctp_timeout_" + t, 600)
    # Found on kernel 6.18: with nf_conntrack_checksum=1 (the default)
    # every forwarded UDP-Lite packet is counted "invalid" by conntrack and
    # forwarded untracked (so not NATed either); with 0 it is tracked and
    # masqueraded.  Untracked packets are invisible to natscope by nature.
    lab.sysctl("gw", "net.netfilter.nf_conntrack_checksum", 0)
    nslab.start_servers(lab, "srv", tcp=(443, 5432), udp=(53,),
                        udplite=(5000,))
    nslab.start_servers(lab, "c1", tcp=(7000,))
    a = {s: nslab.Agent(lab, s) for s in ("c1", "c2", "srv")}
    ns = nslab.Natscope(lab, "gw", work, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")

    c1, c2, srv = a["c1"], a["c2"], a["srv"]
    # zone 7 (c2) and zone 0 (c1) through 203.0.113.9 to the same port
    c2("tcp_hold", dst=S4, port=5432, n=12, tag="z")
    c2("tcp_short", dst=S4, port=443, n=20)
    c2("udp", dst=S4, port=53, n=10)
    c1("tcp_hold", dst=S4, port=5432, n=9, tag="z0")
    c1("tcp_short", dst=S4, port=443, n=15)
    # DNAT + SNAT, and DNAT only
    c1("tcp_hold", dst=GW1, port=8080, n=7, tag="dnat")
    c1("tcp_short", dst=GW1, port=8080, n=5)
    srv("tcp_hold", dst=GW1, port=2222, n=3, tag="fwd")
    # UDP-Lite and SCTP, real packets
    c1("udplite", dst=S4, port=5000, n=10)
    c1("sctp_init", dst=S4, dport=9899, sports=list(range(33000, 33016)))
    # bulk over ctnetlink: the same tuples in zones 0 and 3, UDP-Lite, SCTP
    for args in (("--proto", "tcp", "--public-base", 20, "--seed", 31),
                 ("--proto", "tcp", "--public-base", 20, "--seed", 31,
                  "--zone", 3),
                 ("--proto", "udplite", "--public-base", 21, "--seed", 32),
                 ("--proto", "sctp", "--public-base", 22, "--seed", 33),
                 ("--proto", "sctp", "--public-base", 22, "--seed", 33,
                  "--zone", 3, "--delete-fraction", 0.25)):
        r = checks.ctgen(lab, "gw", "--count", 3000, "--public-ips", 1,
                         "--hosts", 200, "--dests", 20, *args)
        fail.check(r["created"] == 3000, "ctgen %s: created %r (%s)"
                   % (" ".join(map(str, args)), r["created"], r["errors"]))

    T, t_list = checks.take_truth(lab)
    log("ground truth: %d entries, %d mappings, %d other"
        % (len(T.entries), len(T.mappings), len(T.other)))

    # the lab holds what the test means
    zones = {(m.zone, m.proto, m.public_ip) for m in T.mappings}
    for want in ((ZONE, "tcp", GW9), (ZONE, "udp", GW9), (0, "tcp", GW9),
                 (3, "tcp", "203.0.113.21"), (0, "tcp", "203.0.113.21"),
                 (3, "sctp", "203.0.113.23"), (0, "sctp", "203.0.113.23"),
                 (0, "udplite", GW1), (0, "sctp", GW1),
                 (0, "udplite", "203.0.113.22")):
        fail.check(want in zones, "the lab holds no %s mapping on %s in "
                   "zone %d" % (want[1], want[2], want[0]))
    both = [d for d in T.dests.get((GW9, "tcp"), [])
            if (d["ip"], d["port"]) == (S4, 5432)]
    fail.check(sorted(d["zone"] for d in both) == [0, ZONE],
               "203.0.113.9 tcp should reach %s:5432 in zones 0 and %d: %r"
               % (S4, ZONE, both))
    dnat = [m for m in T.mappings if m.public_ip == GW1 and
            m.proto == "tcp" and m.host == "198.18.0.2" and
            m.dest_port == 443 and m.state == "established"]
    fail.check(len(dnat) == 7, "DNAT + SNAT: %d established mappings of c1 "
               "to %s:443 via %s:8080, wanted 7" % (len(dnat), S4, GW1))
    inbound = [e for e in T.other if e.proto == "tcp" and
               e.orig["dport"] == 2222]
    fail.check(len(inbound) == 3, "DNAT only: %d entries to %s:2222 counted "
               "as other, wanted 3" % (len(inbound), GW1))
    sctp_real = T.gateways.get((GW1, "sctp"), {}).get("mappings")
    fail.check(sctp_real == 16, "real SCTP INITs: %r mappings on %s, wanted "
               "16" % (sctp_real, GW1))

    w = checks.wait_exact(ns, T, t_list, 20)
    checks.report_watch(fail, w, "zones and protocols", 20)
    if w.exact:
        bad = checks.stays_exact(ns, T, 2)
        fail.check(not bad, "not exact on later snapshots: %s" % bad[:3])
    else:
        log("ground truth:\n" + T.report())

    checks.finish(fail, lab, ns)


if __name__ == "__main__":
    sys.exit(checks.run_test("zones", run))
