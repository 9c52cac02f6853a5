"""truth - natscope's figures computed independently from `conntrack -L`.

Parses `conntrack -L -o extended` (conntrack-tools 1.4.7: both families,
one entry per line) and applies README.md "What it counts":

  nat    reply dst differs from orig src (address, or port / ICMP id).
         public = reply dst ip:port, host = orig src ip,
         destination = reply src ip:port (ICMP: port 0).
  local  not nat, and orig src is one of the gateway's own non-loopback
         addresses.  public = orig src ip:port, host = that ip,
         destination = reply src ip:port.
  other  everything else.

Then aggregates exactly what the API shows per (public ip, proto): the
gateway figures, the host list and the destination list.

  python3 truth.py FILE [LOCAL_ADDR ...] [--range LO-HI]
      prints the figures computed from a saved `conntrack -L -o extended`.
  python3 truth.py --self-check
      checks the parser and the aggregation against the fixture
      tests/fixtures/conntrack-L-extended-id.txt (figures counted by hand
      with grep/awk; see selfcheck()).

Standard library only.
"""

import collections
import functools
import ipaddress
import os
import re
import sys

TCP_STATES = ["none", "syn_sent", "syn_recv", "established", "fin_wait",
              "close_wait", "last_ack", "time_wait", "close", "syn_sent2"]
# conntrack prints these upper-case; old libnetfilter_conntrack said
# LISTEN for what the kernel calls SYN_SENT2.
_STATE_ALIASES = {"listen": "syn_sent2"}

API_PROTOS = ("tcp", "udp", "udplite", "sctp", "dccp", "icmp", "icmpv6")
ICMP_PROTOS = ("icmp", "icmpv6")

CAP_NAT_LOW = 511     # original port < 512: 1-511
CAP_NAT_MID = 424     # original port 512-1023: 600-1023
CAP_NAT_HIGH = 64512  # original port >= 1024: 1024-65535
CAP_ICMP = 65536      # ICMP ids 0-65535

_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id")

Entry = collections.namedtuple(
    "Entry", "family proto state orig reply zone ct_id line")

# One classified entry.  key is what makes it unique in the kernel (the
# reply tuple with its zone), the rest is what natscope derives from it.
Mapping = collections.namedtuple(
    "Mapping",
    "kind family proto zone public_ip public_port host dest_ip dest_port "
    "capacity state")


class ParseError(Exception):
    pass


@functools.lru_cache(maxsize=1 << 16)
def canon(addr):
    """Canonical text of an address (RFC 5952 for IPv6).  Cached: a big
    table repeats a few thousand addresses hundreds of thousands of
    times, and ipaddress is slow."""
    return ipaddress.ip_address(addr).compressed


def addr_key(text):
    """Numeric sort key of an address text: family, then value."""
    a = ipaddress.ip_address(text)
    return (a.version, int(a))


def parse_line(line):
    """Parses one `conntrack -L -o extended` line into an Entry, or
    raises ParseError."""
    tok = line.split()
    if len(tok) < 6 or tok[0] not in ("ipv4", "ipv6"):
        raise ParseError("not an extended conntrack line: %r" % line)
    family = tok[0]
    proto = tok[2]
    state = None
    tuples = [{}, {}]
    cur = -1        # -1 before the first tuple, 2 after the second
    extra = {}
    for t in tok[5:]:
        if t.startswith("["):
            continue    # [UNREPLIED] [ASSURED] [OFFLOAD] ...
        if "=" not in t:
            if cur == -1 and state is None:
                state = t.lower()
                state = _STATE_ALIASES.get(state, state)
            continue
        k, v = t.split("=", 1)
        if k == "src" and cur < 1:
            cur += 1
        elif cur in (0, 1) and (k not in _TUPLE_KEYS or
                                k in tuples[cur]):
            if cur == 0 and k not in _TUPLE_KEYS:
                pass    # zone-orig= and the like, inside the original
            elif cur == 0:
                raise ParseError("repeated %s in original tuple: %r"
                                 % (k, line))
            else:
                cur = 2
        if cur in (0, 1) and k in _TUPLE_KEYS:
            tuples[cur][k] = v
        else:
            extra.setdefault(k, v)
    orig, reply = tuples
    for tp in (orig, reply):
        if "src" not in tp or "dst" not in tp:
            raise ParseError("tuple without addresses: %r" % line)
        tp["src"] = canon(tp["src"])
        tp["dst"] = canon(tp["dst"])
        for k in ("sport", "dport", "type", "code", "id"):
            if k in tp:
                tp[k] = int(tp[k])
    if proto == "tcp" and state not in TCP_STATES:
        raise ParseError("unknown TCP state %r: %r" % (state, line))
    zone = int(extra.get("zone", 0))
    return Entry(family, proto, state, orig, reply, zone,
                 extra.get("id"), line)


# The common shape (ports in both tuples, nothing between them but flags),
# parsed with one regular expression; every other line (ICMP, zone-orig=,
# anything unexpected) goes through parse_line().  The self-check compares
# the two on the fixture.
_FAST = re.compile(
    r"(ipv[46]) +\d+ +([a-z]+) +\d+ +\d+ +(?:([A-Z_0-9]+) +)?"
    r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) +(?:\[[A-Z_]+\] +)*"
    r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)((?: +\S+)*) *$")
_ZONE = re.compile(r" zone=(\d+)")
_ID = re.compile(r" id=(\d+)")


def parse_fast(line):
    """parse_line() for the common shape, or None."""
    m = _FAST.match(line)
    if m is None:
        return None
    (family, proto, state, osrc, odst, osp, odp, rsrc, rdst, rsp, rdp,
     tail) = m.groups()
    if " src=" in tail or " dst=" in tail or "port=" in tail:
        return None
    if state is not None:
        state = state.lower()
        state = _STATE_ALIASES.get(state, state)
    if proto == "tcp" and state not in TCP_STATES:
        return None
    z = _ZONE.search(tail)
    i = _ID.search(tail)
    return Entry(family, proto, state,
                 {"src": canon(osrc), "dst": canon(odst), "sport": int(osp),
                  "dport": int(odp)},
                 {"src": canon(rsrc), "dst": canon(rdst), "sport": int(rsp),
                  "dport": int(rdp)},
                 int(z.group(1)) if z else 0, i.group(1) if i else None,
                 line)


def parse(text):
    """Parses the whole output (summary lines on stderr are not in it)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(parse_fast(line) or parse_line(line))
    return out


def _port(tp, proto):
    """The port-like field of a tuple: source port, or ICMP id."""
    if proto in ICMP_PROTOS:
        return tp.get("id", 0)
    return tp.get("sport", 0)


def _dport(tp, proto):
    if proto in ICMP_PROTOS:
        return tp.get("id", 0)
    return tp.get("dport", 0)


def classify(e, local_addrs, local_capacity):
    """Returns the Mapping an entry is, or None for "other"."""
    if e.proto not in API_PROTOS:
        return None
    o, r = e.orig, e.reply
    icmp = e.proto in ICMP_PROTOS
    if r["dst"] != o["src"] or _dport(r, e.proto) != _port(o, e.proto):
        sport = _port(o, e.proto)
        if icmp:
            cap = CAP_ICMP
        elif sport < 512:
            cap = CAP_NAT_LOW
        elif sport < 1024:
            cap = CAP_NAT_MID
        else:
            cap = CAP_NAT_HIGH
        return Mapping("nat", e.family, e.proto, e.zone, r["dst"],
                       _dport(r, e.proto), o["src"], r["src"],
                       0 if icmp else r["sport"], cap, e.state)
    if o["src"] in local_addrs:
        cap = CAP_ICMP if icmp else local_capacity
        return Mapping("local", e.family, e.proto, e.zone, o["src"],
                       _port(o, e.proto), o["src"], r["src"],
                       0 if icmp else r["sport"], cap, e.state)
    return None


def local_addresses(pairs):
    """From (ifname, address) pairs, the set of canonical non-loopback
    addresses."""
    out = set()
    for ifname, a in pairs:
        ip = ipaddress.ip_address(a)
        if ifname == "lo" or ip.is_loopback:
            continue
        out.add(ip.compressed)
    return out


class Truth:
    """Every figure the API shows, from one conntrack listing.

    gateways: {(ip, proto): dict shaped like an /api/v1/gateways item,
               plus "worst_candidates": every bucket tied for worst}
    hosts:    {(ip, proto): [dict shaped like a /hosts item], sorted}
    dests:    {(ip, proto): [dict shaped like a /destinations item]}
    """

    def __init__(self, entries, local_addrs, local_capacity):
        # conntrack 1.4.7 can print an entry twice in one listing (the
        # fixture has every IPv6 entry twice, same id): keep one.
        # The kernel keeps original tuples unique per zone, so the
        # original tuple and the zone name an entry.
        seen = set()
        self.entries = []
        for e in entries:
            o = e.orig
            k = (e.family, e.proto, e.zone, o["src"], o["dst"],
                 o.get("sport"), o.get("dport"), o.get("id"),
                 o.get("type"), o.get("code"))
            if k not in seen:
                seen.add(k)
                self.entries.append(e)
        self.duplicates = len(entries) - len(self.entries)
        entries = self.entries
        self.mappings = []
        self.other = []
        for e in entries:
            m = classify(e, local_addrs, local_capacity)
            if m is None:
                self.other.append(e)
            else:
                self.mappings.append(m)
        keys = collections.Counter(
            (m.family, m.proto, m.zone, m.public_ip, m.public_port,
             m.dest_ip, m.dest_port) for m in self.mappings)
        dup = [k for k, n in keys.items() if n > 1]
        if dup:
            raise ParseError("two entries with one reply tuple: %r" % dup)
        self._aggregate()

    def count(self, kind):
        return sum(1 for m in self.mappings if m.kind == kind)

    def signature(self):
        """What must not change while the table is quiet: every mapping
        and every other entry's tuples (timeouts excluded)."""
        other = sorted(
            (e.family, e.proto, e.state or "",
             tuple(sorted(e.orig.items())), tuple(sorted(e.reply.items())))
            for e in self.other)
        return (sorted(self.mappings, key=lambda m: tuple(
            "" if v is None else str(v) for v in m)), other)

    def _aggregate(self):
        by_gw = collections.defaultdict(list)
        for m in self.mappings:
            by_gw[(m.public_ip, m.proto)].append(m)
        self.gateways, self.hosts, self.dests = {}, {}, {}
        for (ip, proto), ms in by_gw.items():
            hosts = collections.defaultdict(list)
            dests = collections.defaultdict(list)
            for m in ms:
                hosts[m.host].append(m)
                dests[(m.zone, m.dest_ip, m.dest_port)].append(m)
            hl = []
            for h, hm in hosts.items():
                kinds = {m.kind for m in hm}
                hl.append({"ip": h, "mappings": len(hm),
                           "ports_in_use": len({m.public_port for m in hm}),
                           "kind": kinds.pop() if len(kinds) == 1
                           else "mixed:" + ",".join(sorted(kinds))})
            hl.sort(key=lambda d: (-d["mappings"], addr_key(d["ip"])))
            dl = []
            for (zone, dip, dport), dm in dests.items():
                dl.append({"ip": dip, "port": dport, "zone": zone,
                           "mappings": len(dm),
                           "capacity": max(m.capacity for m in dm)})
            dl.sort(key=lambda d: (-d["mappings"], addr_key(d["ip"]),
                                   d["port"], d["zone"]))
            best = max((d["mappings"] / d["capacity"], d["mappings"])
                       for d in dl)
            worst = [d for d in dl
                     if (d["mappings"] / d["capacity"], d["mappings"])
                     == best]
            g = {"public_ip": ip, "proto": proto,
                 "ports_in_use": len({m.public_port for m in ms}),
                 "mappings": len(ms), "hosts": len(hl),
                 "destinations": len(dl),
                 "worst_destination": dict(worst[0]),
                 "worst_candidates": worst}
            if proto == "tcp":
                st = dict.fromkeys(TCP_STATES, 0)
                for m in ms:
                    st[m.state] += 1
                g["states"] = st
            self.gateways[(ip, proto)] = g
            self.hosts[(ip, proto)] = hl
            self.dests[(ip, proto)] = dl

    def report(self):
        """A readable summary, one gateway per paragraph."""
        out = ["mappings: nat %d, local %d; other entries %d"
               % (self.count("nat"), self.count("local"), len(self.other))]
        for key in sorted(self.gateways, key=lambda k: (addr_key(k[0]),
                                                        k[1])):
            g = self.gateways[key]
            w = g["worst_destination"]
            out.append("%s %s: ports_in_use %d mappings %d hosts %d "
                       "destinations %d worst %s:%d z%d %d/%d"
                       % (g["public_ip"], g["proto"], g["ports_in_use"],
                          g["mappings"], g["hosts"], g["destinations"],
                          w["ip"], w["port"], w["zone"], w["mappings"],
                          w["capacity"]))
            if "states" in g:
                out.append("    states " + " ".join(
                    "%s=%d" % kv for kv in g["states"].items() if kv[1]))
            for h in self.hosts[key]:
                out.append("    host %(ip)s %(kind)s mappings %(mappings)d "
                           "ports %(ports_in_use)d" % h)
            for d in self.dests[key]:
                out.append("    dest %(ip)s:%(port)d z%(zone)d mappings "
                           "%(mappings)d capacity %(capacity)d" % d)
        return "\n".join(out)


# ------------------------------------------------------------ self-check

FIXTURE_LOCALS = ("198.18.0.1", "198.18.1.1", "203.0.113.1", "203.0.113.9",
                  "2001:db8:1::1", "2001:db8:2::1")


def selfcheck(fixtures=None):
    """Checks truth.py against the real capture in tests/fixtures.  The
    expected figures were counted with grep/awk on the file, not with this
    code:

      wc -l                                                    1407
      awk '$3=="tcp" && $0 ~ /dst=203\\.0\\.113\\.1 sport/' | wc -l
          (reply dst .1, i.e. nat to .1 or local from .1)
      grep -c 'src=203.0.113.1 dst=203.0.113.2 sport'        (local)
      ... see the table below.
    Returns a list of failure messages (empty: all good)."""
    fixtures = fixtures or os.environ.get(
        "NATSCOPE_FIXTURES",
        os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     "..", "fixtures"))
    path = os.path.join(fixtures, "conntrack-L-extended-id.txt")
    with open(path) as f:
        text = f.read()
    t = Truth(parse(text), set(FIXTURE_LOCALS), 28232)
    fails = []

    def want(what, got, exp):
        if got != exp:
            fails.append("%s: got %r, expected %r" % (what, got, exp))

    fast = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        e = parse_fast(line)
        if e is not None:
            fast += 1
            if e != parse_line(line):
                fails.append("parse_fast differs from parse_line: %r" % line)
                break
    if fast < 1000:
        fails.append("parse_fast took only %d lines of the fixture" % fast)
    want("entries", len(t.entries), SELF_EXPECT["entries"])
    want("duplicate lines", t.duplicates, 31)
    want("nat", t.count("nat"), SELF_EXPECT["nat"])
    want("local", t.count("local"), SELF_EXPECT["local"])
    want("other", len(t.other), SELF_EXPECT["other"])
    for key, exp in SELF_EXPECT["gateways"].items():
        g = t.gateways.get(key)
        if g is None:
            fails.append("gateway %s missing" % (key,))
            continue
        for k, v in exp.items():
            if k == "states":
                want("%s states" % (key,),
                     {s: n for s, n in g["states"].items() if n}, v)
            elif k == "worst":
                w = g["worst_destination"]
                want("%s worst" % (key,),
                     (w["ip"], w["port"], w["mappings"], w["capacity"]), v)
            else:
                want("%s %s" % (key, k), g[k], v)
    want("gateway set", sorted(t.gateways), sorted(SELF_EXPECT["gateways"]))
    for key, exp in SELF_EXPECT["hosts"].items():
        want("%s hosts" % (key,),
             [(h["ip"], h["kind"], h["mappings"], h["ports_in_use"])
              for h in t.hosts[key]], exp)
    for key, exp in SELF_EXPECT["dests"].items():
        want("%s dests" % (key,),
             [(d["ip"], d["port"], d["mappings"], d["capacity"])
              for d in t.dests[key]], exp)
    # an ICMP line keeps its three ids apart (orig, reply, conntrack id)
    e = parse_line("ipv4     2 icmp     1 24 src=198.18.0.2 dst=203.0.113.2 "
                   "type=8 code=0 id=1000 src=203.0.113.2 dst=203.0.113.1 "
                   "type=0 code=0 id=1000 mark=0 use=1 id=2690138625")
    want("icmp orig id", e.orig["id"], 1000)
    want("icmp reply id", e.reply["id"], 1000)
    # an unreplied entry with a zone, IPv6 in long form
    e = parse_line("ipv6     10 tcp      6 119 SYN_SENT "
                   "src=2001:0db8:1:0::2 dst=2001:db8:2::2 sport=40000 "
                   "dport=9 [UNREPLIED] src=2001:db8:2::2 "
                   "dst=2001:db8:2::1 sport=9 dport=40000 mark=0 zone=3 "
                   "use=1 id=5")
    want("v6 canonical", e.orig["src"], "2001:db8:1::2")
    want("zone", e.zone, 3)
    want("state", e.state, "syn_sent")
    m = classify(e, set(), 100)
    want("unreplied nat", (m.kind, m.public_ip, m.public_port, m.dest_port),
         ("nat", "2001:db8:2::1", 40000, 9))
    # lines captured on the lab's kernel (6.18, conntrack 1.4.7): UDP-Lite
    # has no state, SCTP one of its own; zone=N after mark=
    e = parse_line("ipv4     2 udplite  136 599 src=198.18.0.2 "
                   "dst=203.0.113.2 sport=24648 dport=5000 src=203.0.113.2 "
                   "dst=203.0.113.1 sport=5000 dport=24648 mark=0 use=1")
    m = classify(e, set(), 100)
    want("udplite", (e.proto, e.state, m.kind, m.public_ip, m.public_port,
                     m.dest_ip, m.dest_port, m.capacity),
         ("udplite", None, "nat", "203.0.113.1", 24648, "203.0.113.2",
          5000, CAP_NAT_HIGH))
    e = parse_line("ipv4     2 sctp     132 599 ESTABLISHED "
                   "src=198.18.7.158 dst=198.51.100.164 sport=1024 "
                   "dport=443 src=198.51.100.164 dst=203.0.113.5 sport=443 "
                   "dport=1024 [ASSURED] mark=0 zone=9 use=1")
    m = classify(e, set(), 100)
    want("sctp", (e.proto, e.state, e.zone, m.kind, m.public_ip,
                  m.public_port, m.zone),
         ("sctp", "established", 9, "nat", "203.0.113.5", 1024, 9))
    # DNAT + SNAT: the destination is the real backend (reply source)
    e = parse_line("ipv4     2 tcp      6 599 ESTABLISHED src=198.18.0.2 "
                   "dst=203.0.113.1 sport=20001 dport=8080 src=203.0.113.2 "
                   "dst=203.0.113.1 sport=443 dport=20001 [ASSURED] mark=0 "
                   "use=1")
    m = classify(e, {"203.0.113.1"}, 100)
    want("dnat+snat", (m.kind, m.public_ip, m.public_port, m.host,
                       m.dest_ip, m.dest_port),
         ("nat", "203.0.113.1", 20001, "198.18.0.2", "203.0.113.2", 443))
    # DNAT only (a port forward inbound): uses no port of the gateway
    e = parse_line("ipv4     2 tcp      6 599 ESTABLISHED src=203.0.113.2 "
                   "dst=203.0.113.1 sport=41000 dport=2222 src=198.18.0.2 "
                   "dst=203.0.113.2 sport=7000 dport=41000 [ASSURED] mark=0 "
                   "use=1")
    want("dnat only", classify(e, {"203.0.113.1"}, 100), None)
    # one tuple in two zones is two entries, not a duplicate
    t = Truth([parse_line(x) for x in (
        "ipv4     2 tcp      6 599 ESTABLISHED src=198.18.1.2 "
        "dst=203.0.113.2 sport=1100 dport=5432 src=203.0.113.2 "
        "dst=203.0.113.9 sport=5432 dport=20000 [ASSURED] mark=0 use=1",
        "ipv4     2 tcp      6 599 ESTABLISHED src=198.18.1.2 "
        "dst=203.0.113.2 sport=1100 dport=5432 src=203.0.113.2 "
        "dst=203.0.113.9 sport=5432 dport=20000 [ASSURED] mark=0 zone=7 "
        "use=1")], set(), 100)
    want("two zones", [(d["zone"], d["mappings"])
                       for d in t.dests[("203.0.113.9", "tcp")]],
         [(0, 1), (7, 1)])
    want("two zones ports", t.gateways[("203.0.113.9", "tcp")]
         ["ports_in_use"], 1)
    return fails


# Counted on the fixture with awk (second src= starts the reply tuple):
#   kind = reply dst != orig src or reply dport != orig sport ? nat : local
# then sort | uniq -c over (kind, proto, reply dst, reply dport, orig src,
# reply src, reply sport, state), after dropping the 31 IPv6 lines that
# appear twice with the same id.
SELF_EXPECT = {
    "entries": 1376, "nat": 1351, "local": 25, "other": 0,
    "gateways": {
        ("203.0.113.1", "tcp"): {
            "mappings": 705, "ports_in_use": 698, "hosts": 2,
            "destinations": 2,
            "worst": ("203.0.113.2", 443, 625, 64512),
            "states": {"close_wait": 60, "established": 40,
                       "time_wait": 605}},
        ("203.0.113.1", "icmp"): {
            "mappings": 5, "ports_in_use": 5, "hosts": 1,
            "destinations": 1, "worst": ("203.0.113.2", 0, 5, 65536)},
        ("203.0.113.9", "tcp"): {
            "mappings": 240, "ports_in_use": 240, "hosts": 1,
            "destinations": 1, "worst": ("203.0.113.2", 443, 240, 64512),
            "states": {"time_wait": 240}},
        ("203.0.113.9", "udp"): {
            "mappings": 395, "ports_in_use": 395, "hosts": 1,
            "destinations": 1, "worst": ("203.0.113.2", 53, 395, 64512)},
        ("2001:db8:2::1", "tcp"): {
            "mappings": 31, "ports_in_use": 31, "hosts": 1,
            "destinations": 1,
            "worst": ("2001:db8:2::2", 443, 31, 64512),
            "states": {"close_wait": 30, "syn_recv": 1}},
    },
    "hosts": {
        ("203.0.113.1", "tcp"): [("198.18.0.2", "nat", 680, 680),
                                 ("203.0.113.1", "local", 25, 25)],
    },
    "dests": {
        ("203.0.113.1", "tcp"): [("203.0.113.2", 443, 625, 64512),
                                 ("203.0.113.2", 5432, 80, 64512)],
    },
}


def main(argv):
    if argv == ["--self-check"]:
        fails = selfcheck()
        for f in fails:
            print("FAIL " + f)
        print("truth.py self-check: %s" % ("FAIL" if fails else "ok"))
        return 1 if fails else 0
    if not argv:
        print(__doc__)
        return 2
    cap = 28232
    locs = []
    args = list(argv)
    path = args.pop(0)
    while args:
        a = args.pop(0)
        if a == "--range":
            lo, hi = args.pop(0).split("-")
            cap = int(hi) - int(lo) + 1
        else:
            locs.append(canon(a))
    with open(path) as f:
        t = Truth(parse(f.read()), set(locs), cap)
    print(t.report())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
