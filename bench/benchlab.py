"""benchlab - helpers of bench/run (stdlib only).

* Netns: a throw-away network namespace with a unique name.  Processes
  started through it are tracked and stopped, and the namespace deleted, on
  close() - also when the caller dies of an exception or Ctrl-C (use it as a
  context manager).
* Netns.http_json(): GET a JSON answer from a server listening on loopback
  inside the namespace, with a socket opened there via setns(2), so the
  caller stays in its own namespace and needs no veth.
* truth_from_conntrack(): the per-gateway figures natscope must show,
  computed from `conntrack -L` text; truth_from_expect(): the same from a
  ctgen --expect-file.  compare_*() list every difference.
* proc_*(): CPU seconds, RSS and netlink drops of a process, from /proc.
"""

import ctypes
import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_seq = 0


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: " + os.strerror(err))


class Netns:
    """A throw-away network namespace; close() always tears it down."""

    def __init__(self, tag="ns"):
        global _seq
        _seq += 1
        self.name = "nsb-%s-%d-%d" % (tag, os.getpid(), _seq)
        self.procs = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.closed = False
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"],
                       check=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def argv(self, cmd):
        return ["ip", "netns", "exec", self.name] + list(cmd)

    def popen(self, cmd, **kw):
        """Starts cmd inside the namespace; `ip netns exec` execs, so the
        pid is the command's own."""
        p = subprocess.Popen(self.argv(cmd), **kw)
        self.procs.append(p)
        return p

    def run(self, cmd, check=True, timeout=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(cmd), check=check, timeout=timeout,
                              **kw)

    def sysctl_read(self, key):
        return self.run(["cat", "/proc/sys/" + key.replace(".", "/")]
                        ).stdout.strip()

    def sysctl_write(self, key, value):
        self.run(["sysctl", "-q", "-w", "%s=%s" % (key, value)])

    def conntrack_count(self):
        return int(self.sysctl_read("net.netfilter.nf_conntrack_count"))

    def connect(self, host, port, timeout=5.0):
        """A TCP socket connected to host:port inside the namespace."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open("/run/netns/" + self.name, os.O_RDONLY)
        try:
            _setns(there)
            try:
                s = socket.create_connection((host, port), timeout=timeout)
            finally:
                _setns(here)
        finally:
            os.close(here)
            os.close(there)
        return s

    def http_get(self, port, path, host="127.0.0.1", timeout=5.0):
        """Returns (status, body bytes) of GET path."""
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = self.connect(host, port, timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def http_json(self, port, path, timeout=5.0):
        """Returns (status, parsed JSON or None)."""
        st, body = self.http_get(port, path, timeout=timeout)
        try:
            return st, json.loads(body)
        except ValueError:
            return st, None

    def stop(self, p, sig=signal.SIGTERM, wait=10.0):
        """Stops one process we started; returns its exit status."""
        if p.poll() is None:
            try:
                p.send_signal(sig)
                return p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                p.kill()
        return p.wait()

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.terminate()
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                except OSError:
                    pass
        subprocess.run(["ip", "netns", "del", self.name],
                       stderr=subprocess.DEVNULL)


def free_port():
    """A TCP port number unlikely to be in use (namespaces start empty, so
    any fixed port works; this keeps parallel runs apart in logs)."""
    return 20000 + (os.getpid() * 7 + _seq * 13) % 20000


# ---- /proc ----

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of pid in seconds (None when gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_thread_cpu(pid):
    """utime + stime per thread of pid, in seconds, keyed "main" for the
    thread whose id is pid and by thread name for the others (summed when
    several share a name); None when gone."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                text = f.read()
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
        key = "main" if int(tid) == pid else name
        out[key] = out.get(key, 0.0) + cpu
    return out


def proc_status(pid, key):
    """A kB field of /proc/pid/status (VmRSS, VmHWM) in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def netlink_event_sockets(pid):
    """[(groups, rmem bytes, drops)] of pid's netfilter netlink sockets
    that are subscribed to groups (its conntrack event sockets), from
    /proc/PID/net/netlink.  Works on a stopped process."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = []
    with open("/proc/%d/net/netlink" % pid) as f:
        next(f)
        for line in f:
            c = line.split()
            if c[1] == "12" and int(c[3], 16) != 0 and c[9] in inodes:
                out.append((int(c[3], 16), int(c[4]), int(c[8])))
    return out


def netlink_drops(pid):
    """Sum of the kernel's drop counters over pid's netfilter netlink
    sockets subscribed to groups (its event sockets), or None."""
    try:
        return sum(s[2] for s in netlink_event_sockets(pid))
    except (OSError, ValueError, IndexError):
        return None


# ---- ground truth ----

def _canon(ip):
    return str(ipaddress.ip_address(ip))


class Truth:
    """Figures per (public_ip, proto): mappings, ports, hosts, dests."""

    def __init__(self):
        self.gw = {}  # (ip, proto) -> dict
        self.nat = 0
        self.other = 0

    def _g(self, key):
        g = self.gw.get(key)
        if g is None:
            g = {"mappings": 0, "ports": set(), "hosts": {}, "dests": {}}
            self.gw[key] = g
        return g

    def add(self, proto, host, public_ip, public_port, dest_ip, dest_port):
        g = self._g((public_ip, proto))
        g["mappings"] += 1
        g["ports"].add(public_port)
        h = g["hosts"].setdefault(host, [0, set()])
        h[0] += 1
        h[1].add(public_port)
        d = (dest_ip, dest_port)
        g["dests"][d] = g["dests"].get(d, 0) + 1
        self.nat += 1

    def gateways(self):
        """{(ip, proto): {mappings, ports_in_use, hosts, destinations,
        worst_mappings}} - what /api/v1/gateways must say."""
        out = {}
        for k, g in self.gw.items():
            out[k] = {"mappings": g["mappings"],
                      "ports_in_use": len(g["ports"]),
                      "hosts": len(g["hosts"]),
                      "destinations": len(g["dests"]),
                      "worst_mappings": max(g["dests"].values())}
        return out

    def hosts(self, key):
        """{host ip: (mappings, ports_in_use)}"""
        return {h: (v[0], len(v[1]) if isinstance(v[1], set) else v[1])
                for h, v in self.gw[key]["hosts"].items()}

    def dests(self, key):
        """{(ip, port): mappings}"""
        return dict(self.gw[key]["dests"])


def truth_from_conntrack(text):
    """Parses `conntrack -L` output (plain or -o extended).  An entry is NAT
    when the reply destination differs from the original source; the
    destination is the reply source.  No entry here is 'local': the
    namespaces the tests build have no address but loopback."""
    t = Truth()
    for line in text.splitlines():
        if "src=" not in line:
            continue
        words = line.split()
        proto = None
        kv = []
        for w in words:
            if proto is None and w in ("tcp", "udp", "udplite", "sctp",
                                       "dccp", "icmp", "icmpv6"):
                proto = w
            if "=" in w:
                k, v = w.split("=", 1)
                kv.append((k, v))
        first = {}
        second = {}
        for k, v in kv:
            if k not in ("src", "dst", "sport", "dport", "type", "code",
                         "id"):
                continue
            cur = second if "src" in second or (k == "src" and
                                                "src" in first) else first
            if k in cur:
                break  # a trailing id=, after both tuples
            cur[k] = v
        if proto is None or "src" not in second:
            continue
        osrc, osport = _canon(first["src"]), first.get("sport", first.get("id"))
        rsrc, rsport = _canon(second["src"]), second.get("sport",
                                                        second.get("id"))
        rdst, rdport = _canon(second["dst"]), second.get("dport",
                                                        second.get("id"))
        if rdst != osrc or rdport != osport:
            t.add(proto, osrc, rdst, int(rdport or 0), rsrc,
                  int(rsport or 0))
        else:
            t.other += 1
    return t


def truth_from_expect(path):
    """Loads a ctgen --expect-file into a Truth (ports kept as counts)."""
    with open(path) as f:
        e = json.load(f)
    t = Truth()
    t.nat = e["nat"]
    t.other = e["other"]
    for g in e["gateways"]:
        key = (g["public_ip"], g["proto"])
        t.gw[key] = {"mappings": g["mappings"],
                     "ports": range(g["ports_in_use"]),
                     "hosts": {}, "dests": {}}
    for k, rows in e["hosts"].items():
        ip, proto = k.rsplit("/", 1)
        t.gw[(ip, proto)]["hosts"] = {h: [m, p] for h, m, p in rows}
    for k, rows in e["destinations"].items():
        ip, proto = k.rsplit("/", 1)
        t.gw[(ip, proto)]["dests"] = {(d, port): m for d, port, m in rows}
    return t


def compare_gateways(api, truth):
    """Differences between a /api/v1/gateways answer and the truth."""
    diffs = []
    want = truth.gateways()
    got = {}
    for g in (api or {}).get("gateways", []):
        got[(_canon(g["public_ip"]), g["proto"])] = g
    for k in sorted(set(want) | set(got)):
        w, g = want.get(k), got.get(k)
        if w is None:
            diffs.append("%s/%s: not in the kernel table" % k)
            continue
        if g is None:
            diffs.append("%s/%s: missing from the answer" % k)
            continue
        for f in ("mappings", "ports_in_use", "hosts", "destinations"):
            if g.get(f) != w[f]:
                diffs.append("%s/%s %s: %s, kernel %s" % (k + (f, g.get(f),
                                                                 w[f])))
        wd = g.get("worst_destination") or {}
        if wd.get("mappings") != w["worst_mappings"]:
            diffs.append("%s/%s worst_destination.mappings: %s, kernel %s"
                         % (k + (wd.get("mappings"), w["worst_mappings"])))
    return diffs


def compare_hosts(api, truth, key):
    """Differences between a /hosts answer and the truth (every host the
    answer lists, and its total)."""
    diffs = []
    want = truth.hosts(key)
    if api.get("total") is not None and api["total"] != len(want):
        diffs.append("%s/%s hosts total: %s, kernel %d"
                     % (key + (api["total"], len(want))))
    for h in api.get("hosts", []):
        ip = _canon(h["ip"])
        w = want.get(ip)
        if w is None:
            diffs.append("%s/%s host %s: not in the kernel table"
                         % (key + (ip,)))
        elif (h.get("mappings"), h.get("ports_in_use")) != w:
            diffs.append("%s/%s host %s: (%s, %s), kernel %s" % (
                key + (ip, h.get("mappings"), h.get("ports_in_use"), w)))
    counts = [h.get("mappings") for h in api.get("hosts", [])]
    if counts != sorted(counts, reverse=True):
        diffs.append("%s/%s hosts not largest first" % key)
    top = sorted(want.values(), reverse=True)[:len(counts)]
    if counts != [m for m, _ in top]:
        diffs.append("%s/%s hosts: top mappings %s, kernel %s"
                     % (key + (counts[:5], [m for m, _ in top][:5])))
    return diffs


def compare_dests(api, truth, key):
    """Differences between a /destinations answer and the truth."""
    diffs = []
    want = truth.dests(key)
    if api.get("total") is not None and api["total"] != len(want):
        diffs.append("%s/%s destinations total: %s, kernel %d"
                     % (key + (api["total"], len(want))))
    for d in api.get("destinations", []):
        k = (_canon(d["ip"]), d["port"])
        if want.get(k) != d.get("mappings"):
            diffs.append("%s/%s destination %s:%s: %s, kernel %s" % (
                key + (k[0], k[1], d.get("mappings"), want.get(k))))
    counts = [d.get("mappings") for d in api.get("destinations", [])]
    top = sorted(want.values(), reverse=True)[:len(counts)]
    if counts != top:
        diffs.append("%s/%s destinations: top mappings %s, kernel %s"
                     % (key + (counts[:5], top[:5])))
    return diffs


def dig(obj, path, default=None):
    """dig(status, "mappings.live") - a dotted path into nested dicts."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return default
        obj = obj[part]
    return obj


def wait_for(pred, timeout, step=0.05):
    """Calls pred() until it returns a true value or timeout seconds pass;
    returns (value, seconds waited)."""
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            return v, time.monotonic() - t0
        time.sleep(step)
