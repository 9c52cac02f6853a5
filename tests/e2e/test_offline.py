#!/usr/bin/env python3
"""test_offline - natscope import, serve and top on the real captures in
tests/fixtures (issue 7, "Offline and command line").  No network
namespace: captures in, a database out, the API over a real socket.

  1. round trips: every capture in tests/fixtures is imported; the mappings,
     distinct ports and hosts of every (public IP, protocol) equal what
     this file computes from the capture on its own (a small parser of
     the text and XML below, sharing nothing with natscope's), events
     replayed in order; the status says stopped, pid 0, a note, and the
     gaps say exactly what is not known exact (an event log with no
     listing before it).
  2. a listing followed by an event log is merged in capture time: the
     result is the listing with the events replayed on it, and exact.
  3. malformed input: each bad line reported as FILE:LINE, a count at the
     end, exit 0, the rest imported and a "skipped" gap; --strict exits 1
     and creates nothing; a file that is no capture exits 1 before the
     database is touched; usage errors exit 2.
     --local and --port-range make the host's own connections local,
     with the capacity of its port range.
     Two listings apart in time make a history period, and incidents
     open at the captures' times.
  4. a failure half way (the file system fills up) exits 1 and leaves an
     existing database byte for byte as it was (root: a tmpfs in a
     private mount namespace).
  5. serve: a database copied into a directory made read-only, served by
     `setpriv --reuid=nobody` on a free port: real answers equal the
     capture, a frozen copy said in the log, no file made next to it;
     a file that is no natscope database is refused (exit 1).
  6. top --once --json, over HTTP and from the file, gives the same
     figures.

Exit 0 pass, 1 fail.  Parts 4 and 5 need root (skipped otherwise).
"""

import collections
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

BIN = os.environ.get("NATSCOPE_BIN", "/work/main/build/natscope")
FIX = os.environ.get("NATSCOPE_FIXTURES",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "..", "fixtures"))
LISTINGS = ["conntrack-L.txt", "conntrack-L-extended-id.txt",
            "conntrack-L.xml", "proc-net-nf_conntrack.txt", "lab-L.txt",
            "lab-L-extended-id.txt", "lab-L.xml", "lab-proc.txt",
            "lab-L-acct-ktimestamp.txt", "lab-L-acct-ktimestamp.xml",
            "lab-proc-acct.txt"]
EVENTS = ["conntrack-E-timestamp-extended-id.txt", "conntrack-E.xml",
          "lab-E.txt", "lab-E-timestamp-extended-id.txt", "lab-E.xml"]
PORTED = {"tcp", "udp", "udplite", "sctp", "dccp"}
ICMP = {"icmp", "icmpv6"}
AT = "2026-11-25T02:00:00Z"
AT_MS = 1795572000000

FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL: " + msg, flush=True)


def log(msg):
    print(msg, flush=True)


# ---- an independent reading of the captures ----

def canon(ip):
    return ipaddress.ip_address(ip).compressed


class Flow:
    """One conntrack entry: its event type (None for a listing), the
    tuples and the zone its reply tuple lives in."""

    def __init__(self, kind, proto, orig, reply, zone, ts):
        self.kind, self.proto = kind, proto
        self.orig, self.reply = orig, reply   # (src, dst, sport, dport)
        self.zone, self.ts = zone, ts

    def key(self):
        return (self.proto, self.zone) + self.reply

    def nat(self):
        if self.proto not in PORTED | ICMP:
            return False
        return (self.reply[1], self.reply[3]) != (self.orig[0], self.orig[2])


def text_flow(line):
    """A flow from a text line (-L, -o extended, /proc, -E), or None for a
    line that is no flow."""
    ts = None
    line = line.lstrip("\0")  # the hole a copytruncate rotation leaves
    m = re.match(r"\s*\[(\d+)\.(\d+)\]", line)
    if m:
        ts = int(m.group(1)) * 1000 + int(m.group(2)) // 1000
        line = line[m.end():]
    kind = None
    m = re.match(r"\s*\[(NEW|UPDATE|DESTROY)\]", line)
    if m:
        kind = m.group(1)
        line = line[m.end():]
    words = line.split()
    if not words or "src=" not in line:
        return None
    if words[0] in ("ipv4", "ipv6"):
        words = words[2:]
    proto = words[0]
    kv = [w.split("=", 1) for w in words if "=" in w]
    src = [canon(v) for k, v in kv if k == "src"]
    dst = [canon(v) for k, v in kv if k == "dst"]
    if proto in ICMP:
        ids = [int(v) for k, v in kv if k == "id"][:2]
        sp = dp = ids
    elif proto in PORTED:
        sp = [int(v) for k, v in kv if k == "sport"]
        dp = [int(v) for k, v in kv if k == "dport"]
    else:
        sp = dp = [0, 0]
    d = dict(kv)
    zone = int(d.get("zone", d.get("zone-reply", 0)))
    return Flow(kind, proto, (src[0], dst[0], sp[0], dp[0]),
                (src[1], dst[1], sp[1], dp[1]), zone, ts)


def xml_flow(line):
    line = line.strip()
    if "</flow>" in line:  # conntrack may add " [USERSPACE] portid=N"
        line = line[:line.index("</flow>") + 7]
    try:
        f = ET.fromstring(line)
    except ET.ParseError:
        return "bad"
    kind = f.get("type")
    kind = kind.upper() if kind else None
    tup, zone = {}, 0
    for meta in f.findall("meta"):
        d = meta.get("direction")
        if d in ("original", "reply"):
            l3, l4 = meta.find("layer3"), meta.find("layer4")
            proto = l4.get("protoname")
            sp = l4.findtext("sport")
            dp = l4.findtext("dport")
            tup[d] = (canon(l3.findtext("src")), canon(l3.findtext("dst")),
                      int(sp) if sp and proto in PORTED else 0,
                      int(dp) if dp and proto in PORTED else 0)
            if d == "reply" and meta.findtext("zone") and not zone:
                zone = int(meta.findtext("zone"))
        elif meta.findtext("zone"):
            zone = int(meta.findtext("zone"))
    return Flow(kind, proto, tup["original"], tup["reply"], zone, None)


def read_capture(path):
    """Flows of a capture in order, and the 1-based lines that are no
    readable flow (XML only: the text fixtures are clean)."""
    flows, bad = [], []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            if path.endswith(".xml"):
                if "<flow" not in line:
                    continue
                fl = xml_flow(line)
                if fl == "bad":
                    bad.append(n)
                    continue
            else:
                if line.startswith("conntrack v"):
                    continue
                fl = text_flow(line)
                if fl is None:
                    continue
            flows.append(fl)
    return flows, bad


def replay(flows, table=None):
    """The table after the flows: a listing's entries, events applied in
    order (NEW and UPDATE upsert, DESTROY removes)."""
    table = dict(table or {})
    for fl in flows:
        if fl.kind == "DESTROY":
            table.pop(fl.key(), None)
        else:
            table[fl.key()] = fl
    return table


def figures(table):
    """{(public_ip, proto): (mappings, ports_in_use, hosts)} of SNAT."""
    maps = collections.Counter()
    ports = collections.defaultdict(set)
    hosts = collections.defaultdict(set)
    for fl in table.values():
        if not fl.nat():
            continue
        gw = (fl.reply[1], fl.proto)
        maps[gw] += 1
        ports[gw].add(fl.reply[3])
        hosts[gw].add(fl.orig[0])
    return {gw: (maps[gw], len(ports[gw]), len(hosts[gw])) for gw in maps}


# ---- natscope ----

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def natscope(*args, check=None, nobody=False, **kw):
    p = subprocess.run((NOBODY if nobody else []) + [BIN] + list(args),
                       capture_output=True, text=True, timeout=120, **kw)
    if check is not None and p.returncode != check:
        fail("natscope %s: exit %d, wanted %d\n%s%s" % (
            " ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def db_figures(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    got = {(ip, proto): (m, p, h) for ip, proto, m, p, h in c.execute(
        "SELECT public_ip, proto, mappings, ports_in_use, hosts "
        "FROM gateways")}
    st = dict(zip(("state", "pid", "note", "as_of_ms", "started_ms"),
                  c.execute("SELECT state, pid, note, as_of_ms, started_ms "
                            "FROM status").fetchone()))
    gaps = c.execute("SELECT reason, end_ms FROM gaps WHERE "
                     "run_started_ms = ?", (st["started_ms"],)).fetchall()
    lost = c.execute("SELECT count(*) FROM gaps WHERE events_lost IS NOT "
                     "NULL").fetchone()[0]
    if lost:
        fail("%s: %d gaps of an import claim a count of events lost"
             % (db, lost))
    c.close()
    return got, st, gaps


def compare(what, got, want):
    if got == want:
        return
    for gw in sorted(set(got) | set(want)):
        if got.get(gw) != want.get(gw):
            fail("%s: %s/%s: natscope (mappings, ports, hosts) %s, the "
                 "capture %s" % (what, gw[0], gw[1], got.get(gw),
                                 want.get(gw)))


def api_figures(doc):
    return {(g["public_ip"], g["proto"]):
            (g["mappings"], g["ports_in_use"], g["hosts"])
            for g in doc["gateways"]}


# ---- the parts ----

def round_trips(tmp):
    for name in LISTINGS + EVENTS:
        path = os.path.join(FIX, name)
        flows, bad = read_capture(path)
        db = os.path.join(tmp, name + ".db")
        p = natscope("import", "--db", db, "--at", AT, path, check=0)
        if p.returncode:
            continue
        listing = name in LISTINGS
        want = figures(replay(flows))
        got, st, gaps = db_figures(db)
        compare(name, got, want)
        if st["state"] != "stopped" or st["pid"] != 0 or \
                not (st["note"] or "").startswith("imported from " + name):
            fail("%s: status %s: wanted stopped, pid 0, an import note"
                 % (name, st))
        want_gaps = set()
        if bad:
            want_gaps.add("skipped")
            for n in bad:
                if "%s:%d: " % (path, n) not in p.stderr:
                    fail("%s: line %d not reported as FILE:LINE: %s"
                         % (name, n, p.stderr))
            if "%d malformed record" % len(bad) not in p.stdout or \
                    "not exact" not in p.stdout:
                fail("%s: no count of %d skipped: %s"
                     % (name, len(bad), p.stdout))
        if not listing:
            want_gaps.add("no-listing")
        open_gaps = {r for r, end in gaps if end is None}
        # a skipped record in a log with no listing extends its gap
        if not (open_gaps == want_gaps or
                (want_gaps == {"skipped", "no-listing"} and
                 len(open_gaps) == 1 and open_gaps <= want_gaps)):
            fail("%s: open gaps %s, wanted %s" % (name, open_gaps,
                                                   want_gaps))
        times = [fl.ts for fl in flows if fl.ts is not None]
        want_asof = max(times) if times and not listing else None
        if listing and st["as_of_ms"] != AT_MS:
            fail("%s: as_of %s, wanted --at %d" % (name, st["as_of_ms"],
                                                   AT_MS))
        if want_asof and st["as_of_ms"] != want_asof:
            fail("%s: as_of %s, wanted the last event's %d"
                 % (name, st["as_of_ms"], want_asof))
        log("%s: %d flows, %d gateways equal%s" % (
            name, len(flows), len(want), ", %d bad lines" % len(bad)
            if bad else ""))


def merged(tmp):
    """A listing and an event log, one import, merged by capture time."""
    lpath = os.path.join(FIX, "conntrack-L.txt")
    epath = os.path.join(FIX, "conntrack-E-timestamp-extended-id.txt")
    lflows, _ = read_capture(lpath)
    eflows, _ = read_capture(epath)
    first = min(f.ts for f in eflows)

    # 1. the listing taken while the log ran (--at after its first
    #    event): events before it, the listing (the whole table then),
    #    the events after it; exact
    at = first + 2000 + 1  # on no event's millisecond
    if any(f.ts == at for f in eflows):
        fail("merged: an event at the listing's millisecond")
    db = os.path.join(tmp, "merged.db")
    natscope("import", "--db", db, "--at", "%.3f" % (at / 1000),
             "--interval", "1", lpath, epath, check=0)
    # the events before it change nothing: a listing replaces what was
    # known (and closes the gap they opened)
    table = replay(lflows)
    want = figures(replay([f for f in eflows if f.ts > at], table))
    got, st, gaps = db_figures(db)
    compare("listing within the log", got, want)
    if [g for g in gaps if g[1] is None]:
        fail("listing within the log: open gaps %s: the listing was taken "
             "while the log ran, so the figures are exact" % gaps)
    if ("no-listing",) not in [(g[0],) for g in gaps if g[1] is not None]:
        fail("listing within the log: no closed 'no-listing' gap before "
             "the listing: %s" % gaps)
    c = sqlite3.connect(db)
    writes = c.execute("SELECT writes_ok FROM status").fetchone()[0]
    c.close()
    span = (max(f.ts for f in eflows) - first) // 1000
    # a snapshot per second of capture time where something happened,
    # one per quiet stretch, and the last
    if not 2 <= writes <= span + 3:
        fail("listing within the log: %d snapshots over %d s at "
             "--interval 1" % (writes, span))
    # history, written through the same path as a live run's: periods in
    # capture time from the listing to the last event, all exact, and the
    # last period ends with the final figures
    last = max(f.ts for f in eflows)
    c = sqlite3.connect(db)
    kern = c.execute("SELECT ts_ms, span_ms, exact FROM hist_kernel WHERE "
                     "tier = 0 ORDER BY ts_ms").fetchall()
    end = {(ip, proto): (m, p, h) for ip, proto, m, p, h in c.execute(
        "SELECT public_ip, proto, mappings, ports_in_use, hosts FROM "
        "hist_gateway g WHERE tier = 0 AND ts_ms = (SELECT max(ts_ms) FROM "
        "hist_kernel WHERE tier = 0)")}
    c.close()
    if not kern or kern[0][0] != at or \
            kern[-1][0] + kern[-1][1] != last or \
            sum(k[1] for k in kern) != last - at or \
            any(k[2] != 1 for k in kern):
        fail("listing within the log: history periods %s, wanted exact "
             "ones covering %d..%d" % (kern, at, last))
    compare("listing within the log, the last history period", end, want)
    log("listing within the log: %d gateways equal, exact, %d snapshots, "
        "%d history periods in capture time" % (len(want), writes,
                                                len(kern)))

    # 2. the listing taken before the log's first event: the time between
    #    is unobserved, so never exact
    db = os.path.join(tmp, "merged2.db")
    natscope("import", "--db", db, "--at", AT, epath, lpath, check=0)
    want = figures(replay(eflows, replay(lflows)))
    got, st, gaps = db_figures(db)
    compare("listing before the log", got, want)
    if [g[0] for g in gaps if g[1] is None] != ["no-listing"]:
        fail("listing before the log: open gaps %s, wanted no-listing"
             % gaps)
    log("listing before the log: %d gateways equal, not exact (gap "
        "no-listing)" % len(want))


def malformed(tmp):
    src = os.path.join(FIX, "lab-L.txt")
    lines = open(src).read().splitlines(True)
    bad = list(lines)
    bad.insert(2, "tcp      6 118 TIME_WAIT src=10.1.0.2 dst=banana\n")
    bad.insert(6, "this is no conntrack line at all\n")
    path = os.path.join(tmp, "bad-L.txt")
    open(path, "w").write("".join(bad))
    db = os.path.join(tmp, "bad.db")
    p = natscope("import", "--db", db, "--at", AT, path, check=0)
    for n in (3, 7):
        if not re.search(r"^%s:%d: \S" % (re.escape(path), n), p.stderr,
                         re.M):
            fail("malformed: line %d not reported as FILE:LINE: %s"
                 % (n, p.stderr))
    if "2 malformed records skipped" not in p.stdout or \
            "not exact" not in p.stdout:
        fail("malformed: no count at the end: %s" % p.stdout)
    want = figures(replay(read_capture(src)[0]))
    got, st, gaps = db_figures(db)
    compare("malformed (the rest)", got, want)
    if ("skipped", None) not in gaps:
        fail("malformed: no open 'skipped' gap: %s" % gaps)
    log("malformed: lines 3 and 7 reported, 2 skipped, the rest equal, "
        "gap 'skipped' open")

    db2 = os.path.join(tmp, "strict.db")
    p = natscope("import", "--db", db2, "--strict", "--at", AT, path,
                 check=1)
    if os.path.exists(db2):
        fail("--strict: a failed import left %s behind" % db2)
    p = natscope("import", "--db", db2, os.path.join(FIX, "conntrack-S.txt"),
                 check=1)
    if "not a conntrack capture" not in p.stderr or os.path.exists(db2):
        fail("not a capture: %s (file left: %s)"
             % (p.stderr, os.path.exists(db2)))
    before = open(db, "rb").read()
    natscope("import", "--db", db, os.path.join(tmp, "missing.txt"), check=1)
    if open(db, "rb").read() != before:
        fail("a missing capture changed the database")
    natscope("import", os.path.join(FIX, "lab-L.txt"), check=2)
    natscope("import", "--db", db, "--at", "yesterday", src, check=2)
    natscope("import", "--db", db, "--interval", "0", src, check=2)
    natscope("import", "--db", db, check=2)
    log("malformed: --strict, no capture, a missing file and usage errors "
        "exit as documented, nothing written")


def local(tmp):
    """--local and --port-range: the captured host's own connections."""
    path = os.path.join(FIX, "lab-L.txt")
    flows, _ = read_capture(path)
    mine = "10.9.0.1"
    want = collections.Counter(
        fl.proto for fl in flows
        if not fl.nat() and fl.orig[0] == mine and fl.proto in PORTED)
    db = os.path.join(tmp, "local.db")
    natscope("import", "--db", db, "--at", AT, "--local", mine,
             "--port-range", "40000-40999", path, check=0)
    c = sqlite3.connect(db)
    got = collections.Counter(dict(c.execute(
        "SELECT proto, sum(mappings) FROM hosts WHERE kind = 'local' AND "
        "ip = ? GROUP BY proto", (mine,))))
    caps = {r[0] for r in c.execute(
        "SELECT capacity FROM destinations WHERE public_ip = ?", (mine,))}
    rng = c.execute("SELECT sysctl_port_range_lo, sysctl_port_range_hi, "
                    "conntrack_count FROM status").fetchone()
    c.close()
    if got != want or not want:
        fail("--local: local mappings %s, the capture %s" % (got, want))
    if caps != {1000} or rng != (40000, 40999, None):
        fail("--port-range: capacities %s, status %s" % (caps, rng))
    natscope("import", "--db", db, "--port-range", "9-1", path, check=2)
    natscope("import", "--db", db, "--local", "10.9.0", path, check=2)
    log("--local %s: %s local mappings, capacity 1000 from --port-range"
        % (mine, dict(want)))


def incidents(tmp):
    """Two listings five seconds apart (their files' times), 46,000
    mappings of one public IP toward one bucket (over 70% of both): one
    history period between them, and incidents opened in capture time."""
    t0 = 1795572300
    paths = []
    for k in range(2):
        path = os.path.join(tmp, "burst%d.txt" % k)
        with open(path, "w") as f:
            for i in range(46000):
                f.write("tcp      6 118 TIME_WAIT src=10.1.%d.%d "
                        "dst=198.51.100.7 sport=40000 dport=443 "
                        "src=198.51.100.7 dst=192.0.2.1 sport=443 dport=%d "
                        "[ASSURED] mark=0 use=1\n"
                        % (i // 250, i % 250, 1024 + i))
        os.utime(path, (t0 + 5 * k, t0 + 5 * k))
        paths.append(path)
    db = os.path.join(tmp, "incidents.db")
    natscope("import", "--db", db, *paths, check=0)
    c = sqlite3.connect(db)
    kern = c.execute("SELECT ts_ms, span_ms, exact FROM hist_kernel "
                     "WHERE tier = 0").fetchall()
    inc = sorted(c.execute("SELECT kind, severity, public_ip, dest_ip, "
                           "dest_port, opened_ms, peak_mappings "
                           "FROM incident").fetchall())
    c.close()
    if kern != [(t0 * 1000, 5000, 1)]:
        fail("incidents: history periods %s, wanted one of 5 s" % kern)
    want = [("bucket", "warn", "192.0.2.1", "198.51.100.7", 443,
             t0 * 1000, 46000),
            ("gateway", "warn", "192.0.2.1", None, None, t0 * 1000, 46000)]
    if inc != want:
        fail("incidents: %s, wanted %s" % (inc, want))
    log("incidents: two listings 5 s apart, one exact period, a gateway and "
        "a bucket incident opened at the capture's time")


def full_disk(tmp):
    """The file system fills up half way: nothing of the import lands."""
    if os.geteuid() != 0:
        log("full disk: skipped (not root)")
        return
    big = os.path.join(tmp, "big-L.txt")
    with open(big, "w") as f:
        for i in range(60000):
            f.write("tcp      6 118 TIME_WAIT src=10.%d.%d.2 dst=10.200.0.2 "
                    "sport=%d dport=443 src=10.200.0.2 dst=192.0.2.%d "
                    "sport=443 dport=%d [ASSURED] mark=0 use=1\n"
                    % (i // 250 % 250, i % 250, 1024 + i % 60000,
                       1 + i % 200, 1024 + i % 60000))
    seed = os.path.join(tmp, "lab-L.txt.db")
    script = r"""
set -e
mount -t tmpfs -o size=600k natscope-full "$1"
cp "$2" "$1/x.db"
sha256sum < "$1/x.db"
set +e
"$3" import --db "$1/x.db" "$4"
echo "exit=$?"
sha256sum < "$1/x.db"
sqlite3 "$1/x.db" "SELECT note FROM status"
"""
    mnt = os.path.join(tmp, "full")
    os.mkdir(mnt)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                        "-c", script, "sh", mnt, seed, BIN, big],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout.splitlines()
    if len(out) < 4:
        fail("full disk: the script failed: %s %s" % (p.stdout, p.stderr))
        return
    if out[1] != "exit=1":
        fail("full disk: import %s, wanted exit 1: %s" % (out[1], p.stderr))
    if out[0] != out[2]:
        fail("full disk: the database changed: %s" % p.stderr)
    if not out[3].startswith("imported from lab-L.txt"):
        fail("full disk: status note %r, wanted the earlier import's"
             % out[3])
    if "full" not in p.stderr or "nothing was imported" not in p.stderr:
        fail("full disk: the log does not say it: %s" % p.stderr)
    log("full disk: exit 1, the database byte for byte as it was")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def serve(tmp):
    if os.geteuid() != 0:
        log("serve: skipped (not root: setpriv to nobody)")
        return
    name = "conntrack-L-extended-id.txt"
    want = figures(replay(read_capture(os.path.join(FIX, name))[0]))
    ro = os.path.join(tmp, "ro")
    os.mkdir(ro)
    shutil.copy(os.path.join(tmp, name + ".db"), os.path.join(ro, "copy.db"))
    os.chmod(os.path.join(ro, "copy.db"), 0o444)
    os.chmod(ro, 0o555)
    os.chmod(tmp, 0o755)
    port = free_port()
    errlog = open(os.path.join(tmp, "serve.log"), "w+")
    p = subprocess.Popen(NOBODY + [BIN, "serve", "--db",
                          os.path.join(ro, "copy.db"), "--listen",
                          "127.0.0.1:%d" % port], stderr=errlog)
    base = "http://127.0.0.1:%d" % port
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.05)
        code, doc = get(base + "/api/v1/gateways")
        if code != 200:
            fail("serve: /api/v1/gateways %d %s" % (code, doc))
        else:
            compare("serve", api_figures(doc), want)
            if doc["coverage"]["complete"] is not True:
                fail("serve: a clean listing's coverage %s"
                     % doc["coverage"])
        code, st = get(base + "/api/v1/status")
        if code != 200 or st["state"] != "stopped" or \
                not st.get("note", "").startswith("imported from"):
            fail("serve: status %d %s" % (code, st))
        gw = sorted(want, key=lambda g: -want[g][0])[0]
        code, hosts = get(base + "/api/v1/gateways/%s/hosts?proto=%s"
                          % gw)
        if code != 200 or hosts["total"] != want[gw][2]:
            fail("serve: hosts of %s/%s: %d %s, wanted %d"
                 % (gw + (code, hosts, want[gw][2])))
        code, h = get(base + "/healthz")
        if code != 503 or h.get("status") != "stopped":
            fail("serve: /healthz %d %s, wanted 503 stopped" % (code, h))
        # top, over HTTP and from the file, says the same
        for how in (["--url", base], ["--db", os.path.join(ro, "copy.db")]):
            t = natscope("top", "--json", "--top", "2", *how, check=0,
                         nobody=True)
            if t.returncode == 0:
                compare("top " + how[0], api_figures(json.loads(t.stdout)),
                        want)
        t = natscope("top", "--once", "--url", base, check=0)
        if "not live: imported from" not in t.stdout:
            fail("top: the table does not say it is an import:\n"
                 + t.stdout)
        log("serve: as nobody from a read-only directory on port %d: "
            "%d gateways equal, stopped, healthz 503; top agrees"
            % (port, len(want)))
    finally:
        p.terminate()
        rc = p.wait(10)
        errlog.seek(0)
        text = errlog.read()
    if rc != 0:
        fail("serve: exit %d after SIGTERM\n%s" % (rc, text))
    if "frozen copy" not in text:
        fail("serve: the log does not say it serves a frozen copy:\n" + text)
    if sorted(os.listdir(ro)) != ["copy.db"]:
        fail("serve: files made next to the copy: %s" % os.listdir(ro))
    # a copy with a -wal it cannot read (taken while a writer had one):
    # said, and what the main file holds is shown, consistent
    src = os.path.join(tmp, "walsrc.db")
    shutil.copy(os.path.join(tmp, name + ".db"), src)
    c = sqlite3.connect(src)
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.execute("UPDATE status SET note = 'only in the wal'")
    c.commit()
    walro = os.path.join(tmp, "walro")
    os.mkdir(walro)
    shutil.copy(src, os.path.join(walro, "w.db"))
    shutil.copy(src + "-wal", os.path.join(walro, "w.db-wal"))
    c.close()
    os.chmod(walro, 0o555)
    t = natscope("top", "--json", "--db", os.path.join(walro, "w.db"),
                 check=0, nobody=True)
    if "-wal holds" not in t.stderr or \
            not json.loads(t.stdout or "{}").get("note", "").startswith(
                "imported from"):
        fail("a frozen copy with a -wal: %s %s" % (t.stdout[:200],
                                                   t.stderr))
    log("serve: a frozen copy's unreadable -wal is said")

    # a file that is no natscope database
    p = natscope("serve", "--db", os.path.join(FIX, "conntrack-L.txt"),
                 "--listen", "127.0.0.1:%d" % free_port(), check=1)
    if "not a natscope database" not in p.stderr:
        fail("serve: a capture as --db: %s" % p.stderr)
    empty = os.path.join(tmp, "empty.db")
    sqlite3.connect(empty).close()
    p = natscope("serve", "--db", empty, "--listen",
                 "127.0.0.1:%d" % free_port(), check=1)
    if "not a natscope database" not in p.stderr:
        fail("serve: an empty SQLite file: %s" % p.stderr)
    natscope("serve", check=2)
    log("serve: no natscope database refused, usage errors exit 2")


def main():
    tmp = tempfile.mkdtemp(prefix="natscope-offline-")
    try:
        round_trips(tmp)
        merged(tmp)
        malformed(tmp)
        local(tmp)
        incidents(tmp)
        full_disk(tmp)
        serve(tmp)
    finally:
        for root, dirs, _ in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
