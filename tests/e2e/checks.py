"""checks - natscope's answers against the ground truth, shared by the
end-to-end tests.

  take_truth(lab)          truth.Truth from `conntrack -L` in the gateway
  compare(ns, T)           every difference between the API and T: every
                           /api/v1/gateways figure, every row of /hosts and
                           /destinations of every gateway (limit=10000), and
                           status mappings (nat + local, other)
  wait_exact(ns, T, ...)   polls until a snapshot taken after the listing
                           equals T, noting every answer that claimed
                           complete coverage while it differed
  stays_exact(ns, T, n)    the figures stay equal for n more snapshots
  dig(), expect_field()    fields that may not exist yet: a missing field
                           is reported by name, not as a KeyError
  ctgen(), Ctgen           bench/ctgen in a namespace, foreground or
                           background
  parse_metrics()          Prometheus text -> {(name, labels): value}

Standard library only.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "bench"))

import benchlab  # noqa: E402  (the benchmark's /proc readers)
import nslab  # noqa: E402
import truth  # noqa: E402
from nslab import log  # noqa: E402

CTGEN = os.environ.get("NATSCOPE_CTGEN", "/work/main/build/ctgen")
LONG = os.environ.get("NATSCOPE_LONG") == "1"

MISSING = object()

GW_FIELDS = ("ports_in_use", "port_space", "mappings", "hosts",
             "destinations")
HOST_FIELDS = ("mappings", "ports_in_use", "kind")
DEST_FIELDS = ("mappings", "capacity")
PORT_SPACE = 65535       # ports 1-65535; ICMP: echo ids 0-65535


def port_space(proto):
    """What a public IP offers for proto (natscope's ns_port_space())."""
    return 65536 if proto in ("icmp", "icmpv6") else PORT_SPACE


def dig(doc, path):
    """doc["a"]["b"]... for path "a.b...", or MISSING."""
    cur = doc
    for k in path.split("."):
        if isinstance(cur, dict) and k in cur:
            cur = cur[k]
        else:
            return MISSING
    return cur


def expect_field(fail, doc, path, want, what):
    """Checks doc's field path: equal to want, or want(value) true when
    want is callable.  A missing field is a failure that names it (the
    API may not have it yet).  Returns the value (or MISSING)."""
    v = dig(doc, path)
    if v is MISSING:
        fail.add("%s: no field %r in the answer (not implemented yet?)"
                 % (what, path))
        return v
    ok = want(v) if callable(want) else v == want
    fail.check(ok, "%s: %s is %r, %s" % (
        what, path, v, "unexpected" if callable(want) else
        "wanted %r" % (want,)))
    return v


# ---------------------------------------------------------------- truth

def local_capacity(lab, short="gw"):
    lo, hi = map(int, lab.read_sysctl(
        short, "net.ipv4.ip_local_port_range").split())
    return hi - lo + 1


def take_truth(lab, short="gw", argv_prefix=None):
    """(truth.Truth, time.time() when `conntrack -L` returned).

    argv_prefix runs conntrack and ip some other way than `ip netns exec
    <short>` (e.g. nsenter into a process's namespace once the name is
    gone)."""
    if argv_prefix is None:
        text, when = nslab.conntrack_list(lab, short)
        local = truth.local_addresses(lab.addresses(short))
        cap = local_capacity(lab, short)
    else:
        r = subprocess.run(argv_prefix + ["conntrack", "-L", "-o",
                                          "extended"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise nslab.LabError("conntrack -L: %s" % r.stderr.strip())
        text, when = r.stdout, time.time()
        r = subprocess.run(argv_prefix + ["ip", "-j", "addr", "show"],
                           capture_output=True, text=True, check=True)
        pairs = [(link["ifname"], a["local"])
                 for link in json.loads(r.stdout)
                 for a in link.get("addr_info", [])]
        local = truth.local_addresses(pairs)
        r = subprocess.run(argv_prefix + [
            "cat", "/proc/sys/net/ipv4/ip_local_port_range"],
            capture_output=True, text=True, check=True)
        lo, hi = map(int, r.stdout.split())
        cap = hi - lo + 1
    return truth.Truth(truth.parse(text), local, cap), when


# ------------------------------------------------------------ comparison

def compare_gateways(doc, T, limit=20):
    """Differences between one /api/v1/gateways answer and T."""
    d = []
    api = {}
    for g in doc.get("gateways") or []:
        k = (g.get("public_ip"), g.get("proto"))
        if k in api:
            d.append("gateway %s %s listed twice" % k)
        api[k] = g
    for k in sorted(set(T.gateways) ^ set(api)):
        if k in T.gateways:
            t = T.gateways[k]
            d.append("gateway %s %s: missing (truth: %d mappings)"
                     % (k + (t["mappings"],)))
        else:
            d.append("gateway %s %s: not in the kernel (natscope: %r "
                     "mappings)" % (k + (api[k].get("mappings"),)))
    for k in sorted(set(api) & set(T.gateways)):
        g, t = api[k], dict(T.gateways[k], port_space=port_space(k[1]))
        for f in GW_FIELDS:
            if g.get(f) != t[f]:
                d.append("gateway %s %s: %s natscope %r, truth %r"
                         % (k + (f, g.get(f), t[f])))
        if g.get("worst_destination") not in t["worst_candidates"]:
            d.append("gateway %s %s: worst_destination natscope %r, truth "
                     "%r" % (k + (g.get("worst_destination"),
                                  t["worst_candidates"][:3])))
        if k[1] == "tcp" and g.get("states") != t["states"]:
            d.append("gateway %s %s: states natscope %r, truth %r"
                     % (k + (g.get("states"), t["states"])))
    return d[:limit] + (["... %d more" % (len(d) - limit)]
                        if len(d) > limit else [])


def compare_status(st, T):
    """Differences between a status answer's mappings and T: nat + local
    must equal the kernel's entries that use a port of this host, other
    its entries that use none."""
    d = []
    nat, local, other = (dig(st, "mappings.nat"), dig(st, "mappings.local"),
                         dig(st, "mappings.other"))
    if nat is MISSING or local is MISSING:
        d.append("status: no mappings.nat / mappings.local")
    elif nat + local != T.count("nat") + T.count("local"):
        d.append("status: mappings.nat + local = %d + %d = %d, truth %d + "
                 "%d = %d" % (nat, local, nat + local, T.count("nat"),
                              T.count("local"),
                              T.count("nat") + T.count("local")))
    if other is MISSING:
        d.append("status: no mappings.other")
    elif other != len(T.other):
        d.append("status: mappings.other %r, truth %d (entries that use no "
                 "port of this host)" % (other, len(T.other)))
    return d


def compare_lists(ns, T, limit=20):
    """Differences in /hosts and /destinations of every gateway in T."""
    d = []
    for (ip, proto) in sorted(T.gateways, key=lambda k: (
            truth.addr_key(k[0]), k[1])):
        for kind, fields, tl, ident in (
                ("hosts", HOST_FIELDS, T.hosts[(ip, proto)],
                 lambda x: x["ip"]),
                ("destinations", DEST_FIELDS, T.dests[(ip, proto)],
                 lambda x: (x["ip"], x["port"], x["zone"]))):
            what = "%s %s %s" % (ip, proto, kind)
            st, _, body = ns.request(
                "GET", "/api/v1/gateways/%s/%s?proto=%s&limit=10000"
                % (ip, kind, proto))
            if st != 200:
                d.append("%s: status %d %r" % (what, st, body[:200]))
                continue
            doc = json.loads(body)
            if doc.get("total") != len(tl):
                d.append("%s: total natscope %r, truth %d"
                         % (what, doc.get("total"), len(tl)))
            items = doc.get(kind) or []
            try:
                got = {ident(x): x for x in items}
            except KeyError as e:
                d.append("%s: item without %s" % (what, e))
                continue
            want = {ident(x): x for x in tl}
            extra = sorted(set(got) - set(want), key=repr)
            lack = sorted(set(want) - set(got), key=repr)
            for k in lack[:5]:
                d.append("%s: %r missing (truth %r)" % (what, k, want[k]))
            for k in extra[:5]:
                d.append("%s: %r not in the kernel (natscope %r)"
                         % (what, k, got[k]))
            if len(lack) + len(extra) > 10:
                d.append("%s: %d missing, %d not in the kernel in all"
                         % (what, len(lack), len(extra)))
            for k in sorted(set(got) & set(want), key=repr):
                for f in fields:
                    if got[k].get(f) != want[k][f]:
                        d.append("%s %r: %s natscope %r, truth %r"
                                 % (what, k, f, got[k].get(f), want[k][f]))
            counts = [x.get("mappings") for x in items]
            if counts != sorted(counts, key=lambda c: -(c or 0)):
                d.append("%s: not largest first" % what)
            if len(d) > limit:
                return d[:limit] + ["..."]
    return d


def compare(ns, T, status=True):
    """Every difference between natscope's answers and T (empty: exact).
    Checks /api/v1/gateways, then (if those agree) every host and
    destination row of every gateway, then status mappings."""
    doc = ns.get_json("/api/v1/gateways")
    d = compare_gateways(doc, T)
    if not d:
        d = compare_lists(ns, T)
    if status:
        d += compare_status(ns.get_json("/api/v1/status"), T)
    return d


def as_of(doc):
    try:
        return nslab.rfc3339(doc.get("as_of"))
    except (AttributeError, ValueError):
        return None


def complete(doc):
    return dig(doc, "coverage.complete") is True


class ExactWatch:
    """Result of wait_exact()."""

    def __init__(self):
        self.exact = False
        self.seconds = None     # from t0 to the first exact answer
        self.diffs = ["no snapshot after the listing"]
        self.status = None
        self.premature = []     # (seconds, as_of, diffs): complete but wrong
        self.polls = 0


def wait_exact(ns, T, t_list, timeout, t0=None, judge_from=None):
    """Polls natscope until a snapshot taken after t_list (time.time() of
    the listing) is not resyncing, says coverage complete and equals T in
    every figure.  The table must stay as T says while this runs.

    Every /api/v1/gateways answer from a snapshot taken after judge_from
    (default t_list) that claims complete coverage while its figures differ
    from T is recorded in .premature.  Where events were lost, "complete"
    must mean exact (report_watch(strict=True)); where nothing was lost
    such an answer only lags behind the events still queued for natscope.
    Returns an ExactWatch; .seconds counts from t0 (a time.monotonic();
    default: now)."""
    w = ExactWatch()
    t0 = time.monotonic() if t0 is None else t0
    judge_from = t_list if judge_from is None else judge_from
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.polls += 1
        try:
            g = ns.get_json("/api/v1/gateways")
            st = ns.get_json("/api/v1/status")
        except (nslab.LabError, OSError) as e:
            w.diffs = ["no answer: %s" % e]
            time.sleep(0.2)
            continue
        w.status = st
        ga = as_of(g)
        if ga is not None and ga > judge_from and complete(g):
            gd = compare_gateways(g, T, limit=3)
            if gd and len(w.premature) < 50:
                w.premature.append((time.monotonic() - t0, g.get("as_of"),
                                    gd))
        ready = (as_of(st) is not None and as_of(st) > t_list and
                 st.get("state") == "running" and
                 not dig(st, "resync.active") and complete(g) and
                 complete(st))
        if ready:
            d = compare_gateways(g, T)
            if not d:
                d = compare_lists(ns, T) + compare_status(st, T)
            w.diffs = d
            if not d:
                w.exact = True
                w.seconds = time.monotonic() - t0
                return w
        else:
            w.diffs = ["not ready: state %r, resync.active %r, coverage %r, "
                       "as_of %r (listing at %.3f)"
                       % (st.get("state"), dig(st, "resync.active"),
                          g.get("coverage"), st.get("as_of"), t_list)]
            d = compare_gateways(g, T, limit=3)
            if d:
                w.diffs += d
        time.sleep(0.1)
    return w


def stays_exact(ns, T, snapshots, interval=1.0):
    """After wait_exact(): the next `snapshots` snapshots (as_of must
    advance that many times) all equal T and say complete.  Returns the
    list of failures."""
    bad = []
    seen = set()
    deadline = time.monotonic() + snapshots * interval * 3 + 5
    while len(seen) < snapshots and time.monotonic() < deadline:
        st = ns.get_json("/api/v1/status")
        a = st.get("as_of")
        if a in seen:
            time.sleep(interval / 4)
            continue
        seen.add(a)
        d = compare(ns, T)
        g = ns.get_json("/api/v1/gateways")
        if not complete(g) or not complete(st):
            d.append("coverage %r" % g.get("coverage"))
        if d:
            bad.append("snapshot %s: %s" % (a, "; ".join(d[:5])))
    if len(seen) < snapshots:
        bad.append("only %d new snapshots in %.0f s, wanted %d"
                   % (len(seen), snapshots * interval * 3 + 5, snapshots))
    return bad


def report_watch(fail, w, what, timeout, strict=False):
    """Turns an ExactWatch into failures (and logs the time to exact).
    strict: answers that said complete while they differed fail the test
    (events were lost: complete must mean exact); otherwise they are only
    logged (natscope was still reading queued events)."""
    if w.exact:
        log("%s: every figure exact after %.2f s (%d polls)"
            % (what, w.seconds, w.polls))
    else:
        fail.add("%s: figures not exact within %d s:\n  %s"
                 % (what, timeout, "\n  ".join(w.diffs[:15])))
        if w.status is not None:
            log("last status: %s" % json.dumps(w.status))
    if w.premature:
        first = w.premature[0]
        msg = ("%s: %d answers said coverage complete while their figures "
               "differed from conntrack -L; first at +%.2f s (as_of %s): %s"
               % (what, len(w.premature), first[0], first[1],
                  "; ".join(first[2])))
        if strict:
            fail.add(msg)
        else:
            log("note (lag, nothing lost): " + msg)


# ---------------------------------------------------------------- ctgen

def ctgen_path():
    return CTGEN


def ctgen(lab, short, *args, timeout=300, check=True):
    """Runs bench/ctgen in namespace short to the end; returns its JSON
    summary."""
    r = lab.run(short, CTGEN, *[str(a) for a in args], timeout=timeout,
                check=check)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise nslab.LabError("ctgen %s: no summary: %r %r"
                             % (" ".join(map(str, args)), r.stdout,
                                r.stderr))
    return out


class Ctgen:
    """bench/ctgen running in the background (a storm or churn)."""

    def __init__(self, lab, short, *args):
        self.lab = lab
        self.args = [str(a) for a in args]
        self.t0 = time.monotonic()
        self.p = lab.spawn(short, CTGEN, *self.args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait(self, timeout=300):
        """Its JSON summary once it ends."""
        out, err = self.p.communicate(timeout=timeout)
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise nslab.LabError("ctgen %s: exit %r, no summary: %r %r"
                                 % (" ".join(self.args), self.p.returncode,
                                    out, err))

    def stop(self):
        """SIGINT: ctgen stops at once and prints its summary."""
        if self.p.poll() is None:
            self.p.send_signal(2)
        return self.wait(30)


def require_ctgen():
    if not os.access(CTGEN, os.X_OK):
        raise nslab.LabError("ctgen not built: %s" % CTGEN)


# -------------------------------------------------------------- metrics

def parse_metrics(text):
    """{(name, frozenset(labels.items())): value}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        labels = {}
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            for part in rest.rstrip("}").split('",'):
                if part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        else:
            name = name_labels
        try:
            out[(name, frozenset(labels.items()))] = float(value)
        except ValueError:
            pass
    return out


def metrics(ns):
    st, _, body = ns.request("GET", "/metrics")
    if st != 200:
        raise nslab.LabError("/metrics: status %d" % st)
    return parse_metrics(body.decode())


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())), MISSING)


# ---------------------------------------------------------------- misc

def run_test(name, body, exclusive=False):
    """The common main(): root and tools checked (skip 77), a Lab (torn
    down whatever happens; exclusive: see nslab.Lab) and a temporary
    directory kept on failure; body(lab, work, fail).  Returns the exit
    status."""
    nslab.require_lab_tools()
    fail = nslab.Failures()
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="natscope-%s-" % name)
    try:
        with nslab.Lab(name, exclusive=exclusive) as lab:
            try:
                body(lab, work, fail)
            except (nslab.LabError, OSError, ValueError, KeyError,
                    subprocess.SubprocessError) as e:
                fail.add("%s: %s" % (type(e).__name__, e))
    except nslab.LabError as e:
        fail.add(str(e))
    took = time.monotonic() - t0
    if fail.items:
        log("FAIL (%d failures) in %.0f s; files kept in %s"
            % (len(fail.items), took, work))
        for f in fail.items:
            sys.stderr.write("  - %s\n" % f.splitlines()[0][:300])
        sys.stderr.flush()
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASS in %.0f s" % took)
    return 0


# ---------------------------------------------------------- the end

def finish(fail, lab, ns):
    """The end every test shares: natscope still running, a clean exit
    on SIGTERM, and its log when something failed."""
    fail.check(ns.p.poll() is None, "natscope died")
    rc = lab.stop(ns.p)
    fail.check(rc == 0, "natscope exited %r on SIGTERM" % rc)
    if fail.items:
        log("natscope log:\n" + ns.log_text()[-3000:])


# -------------------------------------------------------- netlink sockets

# the benchmark's reader of /proc/PID/net/netlink
netlink_event_sockets = benchlab.netlink_event_sockets
