"""nslab - network-namespace labs for natscope's end-to-end tests.

A Lab owns a handful of network namespaces named after this run
(ns-<pid>-<random>-<short>, or another first word than ns), the processes started in them and nothing
else.  Teardown kills those processes by their own process group and
deletes those namespaces; it runs from try/finally, atexit and the
SIGTERM/SIGINT handlers, so an interrupted test leaves nothing behind.

Only the Python standard library is used.
"""

import atexit
import ctypes
import datetime
import errno
import fcntl
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def skip(msg):
    """Prints why the test cannot run here and exits with ctest's skip
    code."""
    sys.stderr.write("SKIP: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(SKIP)


def log(msg):
    sys.stderr.write("[%7.2f] %s\n" % (time.monotonic() - _T0, msg))
    sys.stderr.flush()


_T0 = time.monotonic()


def require_lab_tools():
    """Skips (exit 77) unless we are root and ip netns, nft and conntrack
    are usable."""
    if os.geteuid() != 0:
        skip("needs root (network namespaces, nftables, conntrack)")
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None:
            skip("%s not found in PATH" % tool)
    r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        skip("ip netns does not work here: %s" % r.stderr.strip())


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


class LabError(Exception):
    pass


class Failures:
    """Collects a test's failures, logging each as it is found."""

    def __init__(self):
        self.items = []

    def add(self, msg):
        self.items.append(msg)
        log("FAIL: " + msg)

    def check(self, cond, msg):
        if not cond:
            self.add(msg)
        return cond


# ------------------------------------------------------- host-wide state

# Some settings are the host's, not a namespace's (nf_conntrack_max is
# read-only outside the initial namespace and limits every namespace's
# table).  A test that changes one must be alone: every Lab holds a shared
# lock on GLOBAL_LOCK for its life, a Lab(exclusive=True) an exclusive one,
# across every worktree and checkout on this machine.
GLOBAL_LOCK = "/tmp/natscope-e2e-global.lock"
# Original values of the host-wide settings an exclusive Lab changed,
# written before the change.  If that test dies without restoring them
# (SIGKILL, a ctest timeout), the next Lab to take the lock restores them.
GLOBAL_RESTORE = "/tmp/natscope-e2e-global-restore.json"
GLOBAL_LOCK_WAIT = 900  # seconds before giving up on the lock


def _take_global_lock(exclusive, wait=GLOBAL_LOCK_WAIT):
    f = open(GLOBAL_LOCK, "a+")
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                f.close()
                raise
        if not told:
            log("waiting for the %s lock on %s (another natscope e2e test "
                "%s)" % ("exclusive" if exclusive else "shared",
                         GLOBAL_LOCK, "is running" if exclusive else
                         "changes host-wide settings"))
            told = True
        if time.monotonic() > deadline:
            f.close()
            raise LabError("could not lock %s within %d s"
                           % (GLOBAL_LOCK, wait))
        time.sleep(0.2)
    if told:
        log("got the lock")
    _restore_globals()
    return f


def _sysctl_path(key):
    return "/proc/sys/" + key.replace(".", "/")


def _restore_globals():
    """Writes back what GLOBAL_RESTORE records (a test died holding the
    exclusive lock) and removes it.  Called with the lock held."""
    try:
        with open(GLOBAL_RESTORE) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        log("cannot read %s: %s" % (GLOBAL_RESTORE, e))
        return
    for key, value in saved.items():
        try:
            with open(_sysctl_path(key), "w") as f:
                f.write(str(value))
            log("restored host-wide %s = %s (left changed by a test that "
                "died)" % (key, value))
        except OSError as e:
            log("cannot restore %s = %s: %s" % (key, value, e))
            return
    try:
        os.unlink(GLOBAL_RESTORE)
    except FileNotFoundError:
        pass


class Lab:
    """A set of namespaces and processes torn down together.

    exclusive: no other Lab on this machine exists while this one does
    (needed to change host-wide settings: set_global_sysctl).
    prefix: the first word of its namespaces' names (default "ns"), so
    that one suite's namespaces can be told from another's."""

    def __init__(self, tag="lab", exclusive=False, prefix="ns"):
        self._lock = _take_global_lock(exclusive)
        self.exclusive = exclusive
        self._globals = {}      # host-wide sysctl -> original value
        self.prefix = "%s-%d-%s" % (prefix, os.getpid(), secrets.token_hex(3))
        self.tag = tag
        self.namespaces = {}    # short name -> full name
        self.procs = []         # Popen objects, each its own session
        self._down = False
        self._old_handlers = {}
        atexit.register(self.teardown)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    # ---- lifetime ----

    def _on_signal(self, signum, frame):
        log("signal %d: tearing the lab down" % signum)
        self.teardown()
        # 128 + signal number, as a shell would report it
        os._exit(128 + signum)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def teardown(self):
        """Kills every process this lab started and deletes its
        namespaces.  Safe to call more than once."""
        if self._down:
            return
        self._down = True
        for p in self.procs:
            self._kill(p)
        for p in self.procs:
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
        names = set(self.namespaces.values())
        # leftovers of this run only (e.g. a half-created namespace)
        r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                           text=True)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.prefix + "-"):
                names.add(name)
        for name in sorted(names):
            subprocess.run(["ip", "netns", "del", name],
                           capture_output=True)
        self.restore_globals()
        for sig, h in self._old_handlers.items():
            try:
                signal.signal(sig, h)
            except (ValueError, TypeError):
                pass
        if self._lock is not None:
            self._lock.close()     # releases the flock
            self._lock = None

    # ---- host-wide settings (exclusive labs only) ----

    def set_global_sysctl(self, key, value):
        """Writes a host-wide sysctl (in the initial namespace: this
        process's own).  The original value is recorded in GLOBAL_RESTORE
        first and written back by teardown, or by the next Lab if this
        process dies before."""
        if not self.exclusive:
            raise LabError("set_global_sysctl(%s) needs Lab(exclusive=True)"
                           % key)
        path = _sysctl_path(key)
        if key not in self._globals:
            with open(path) as f:
                self._globals[key] = f.read().strip()
            tmp = GLOBAL_RESTORE + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self._globals, f)
            os.replace(tmp, GLOBAL_RESTORE)
        with open(path, "w") as f:
            f.write(str(value))
        log("host-wide %s = %s (was %s)" % (key, value, self._globals[key]))

    def restore_globals(self):
        """Writes back every host-wide sysctl this lab changed."""
        bad = []
        for key, value in self._globals.items():
            try:
                with open(_sysctl_path(key), "w") as f:
                    f.write(value)
                log("host-wide %s restored to %s" % (key, value))
            except OSError as e:
                bad.append(key)
                log("CANNOT RESTORE host-wide %s = %s: %s" % (key, value, e))
        if not bad:
            self._globals = {}
            try:
                os.unlink(GLOBAL_RESTORE)
            except FileNotFoundError:
                pass

    @staticmethod
    def _kill(p, grace=2.0):
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            log("process %d would not die" % p.pid)

    # ---- namespaces ----

    def add_ns(self, short):
        """Creates namespace <prefix>-<short> with lo up.  Returns its
        full name."""
        name = "%s-%s" % (self.prefix, short)
        self.namespaces[short] = name
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.run(short, "ip", "link", "set", "lo", "up")
        return name

    def ns(self, short):
        return self.namespaces[short]

    def veth(self, ns_a, if_a, ns_b, if_b):
        """Creates a veth pair if_a (in ns_a) <-> if_b (in ns_b), both up.
        The pair is created inside ns_a so no name touches the root
        namespace."""
        self.run(ns_a, "ip", "link", "add", if_a, "type", "veth", "peer",
                 "name", if_b, "netns", self.ns(ns_b))
        self.run(ns_a, "ip", "link", "set", if_a, "up")
        self.run(ns_b, "ip", "link", "set", if_b, "up")

    def run(self, short, *cmd, check=True, input=None, timeout=60):
        """Runs cmd in namespace short (None: here) and returns the
        CompletedProcess (text).  Raises LabError with its output when
        check is set and it fails."""
        argv = list(cmd)
        if short is not None:
            argv = ["ip", "netns", "exec", self.ns(short)] + argv
        r = subprocess.run(argv, capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise LabError("%s: exit %d\n%s%s" % (" ".join(argv),
                                                  r.returncode, r.stdout,
                                                  r.stderr))
        return r

    def spawn(self, short, *cmd, stdin=None, stdout=None, stderr=None,
              env=None):
        """Starts cmd in namespace short (None: here) in its own session;
        teardown kills its process group.  Returns the Popen."""
        argv = list(cmd)
        if short is not None:
            argv = ["ip", "netns", "exec", self.ns(short)] + argv
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout,
                             stderr=stderr, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig to p alone and waits for it.  Returns its exit status,
        or None if it did not exit within timeout."""
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def inside(self, short):
        """Context manager: this thread's network namespace is short's
        within the block (sockets opened there stay there, /proc/sys/net
        is short's)."""
        return _Inside(self.ns(short))

    def sysctl(self, short, key, value):
        """Writes /proc/sys/<key with dots as slashes> in namespace
        short."""
        path = "/proc/sys/" + key.replace(".", "/")
        with self.inside(short):
            with open(path, "w") as f:
                f.write(str(value))

    def read_sysctl(self, short, key):
        path = "/proc/sys/" + key.replace(".", "/")
        with self.inside(short):
            with open(path) as f:
                return f.read().strip()

    def addresses(self, short):
        """The namespace's addresses as (ifname, address text) pairs."""
        r = self.run(short, "ip", "-j", "addr", "show")
        out = []
        for link in json.loads(r.stdout):
            for a in link.get("addr_info", []):
                out.append((link["ifname"], a["local"]))
        return out

    def nft(self, short, ruleset):
        self.run(short, "nft", "-f", "-", input=ruleset)


class _Inside:
    def __init__(self, full_name=None, path=None):
        self.path = path or "/run/netns/" + full_name
        self.home = None

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            os.close(self.home)
            raise
        try:
            _setns(fd)
        except OSError:
            os.close(self.home)
            raise
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            _setns(self.home)
        finally:
            os.close(self.home)
        return False


# ------------------------------------------------------------ line I/O

def _readline(p, buf, timeout, what):
    """Reads one line from p.stdout (binary, unbuffered use) within
    timeout.  buf is the caller's bytearray of leftovers."""
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError("%s: no answer within %.0f s" % (what, timeout))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise LabError("%s: exited (status %s)" % (what, p.wait()))
        buf.extend(chunk)
    i = buf.index(b"\n")
    line = bytes(buf[:i]).decode()
    del buf[:i + 1]
    return line


TRAFFIC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "traffic.py")


class Agent:
    """traffic.py's agent running in one namespace.  Calling it runs one
    op there: agent("tcp_short", dst=..., port=..., n=...)."""

    def __init__(self, lab, short):
        self.short = short
        self.p = lab.spawn(short, sys.executable, "-u", TRAFFIC, "agent",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = bytearray()
        json.loads(_readline(self.p, self.buf, 10, "agent " + short))

    def __call__(self, op, timeout=120, **kw):
        kw["op"] = op
        self.p.stdin.write((json.dumps(kw) + "\n").encode())
        self.p.stdin.flush()
        res = json.loads(_readline(self.p, self.buf, timeout,
                                   "agent %s %s" % (self.short, op)))
        if not res.get("ok"):
            raise LabError("agent %s: %s" % (self.short, res.get("error")))
        return res


def start_servers(lab, short, tcp=(), udp=(), udplite=()):
    """Starts traffic.py's servers in namespace short; returns once they
    are bound."""
    p = lab.spawn(short, sys.executable, "-u", TRAFFIC, "serve",
                  "--tcp", ",".join(map(str, tcp)),
                  "--udp", ",".join(map(str, udp)),
                  "--udplite", ",".join(map(str, udplite)),
                  stdout=subprocess.PIPE)
    line = _readline(p, bytearray(), 10, "servers in " + short)
    if line != "ready":
        raise LabError("servers in %s said %r" % (short, line))
    return p


# ------------------------------------------------------------- topology

# Conntrack timeouts raised in the gateway so that nothing expires while
# the test compares (seconds).
QUIET_TIMEOUTS = {
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_close": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv": 600,
    "net.netfilter.nf_conntrack_tcp_timeout_established": 600,
    "net.netfilter.nf_conntrack_udp_timeout": 600,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 600,
    "net.netfilter.nf_conntrack_icmp_timeout": 600,
    "net.netfilter.nf_conntrack_icmpv6_timeout": 600,
}

# The gateway: SNAT for c2's network, masquerade for everything else that
# leaves by out0; the loopback (natscope's own API) is not tracked so the
# table stays quiet while the test reads it.
GW_RULESET = """
table inet natlab {
	chain raw_pre {
		type filter hook prerouting priority raw; policy accept;
		iif "lo" notrack
	}
	chain raw_out {
		type filter hook output priority raw; policy accept;
		oif "lo" notrack
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" ip saddr 198.18.1.0/24 snat ip to 203.0.113.9
		oifname "out0" masquerade
	}
}
"""

# The server drops SYNs to port 9: connections stay in SYN_SENT.
SRV_RULESET = """
table inet natlab_srv {
	chain in {
		type filter hook input priority filter; policy accept;
		tcp dport 9 drop
	}
}
"""

GW_LOCAL_PORT_RANGE = (40000, 49999)


def build_nat_lab(lab, with_c2=True, with_v6=True):
    """Builds the NAT lab:

      c1  198.18.0.2/24 (+ 2001:db8:1::2/64)  --in1-- gw
      c2  198.18.1.2/24                       --in2-- gw   (with_c2)
      gw  out0: 203.0.113.1/24, 203.0.113.9/24 (+ 2001:db8:2::1/64)
      srv 203.0.113.2/24 (+ 2001:db8:2::2/64) --out0-- gw

    gw forwards v4 and v6, SNATs 198.18.1.0/24 to 203.0.113.9 and
    masquerades the rest leaving by out0; its conntrack timeouts are raised
    to 600 s and its ip_local_port_range is GW_LOCAL_PORT_RANGE.  c1 draws
    ephemeral ports from 10000-31999 so that its masqueraded ports never
    meet the gateway's own."""
    for short in ("c1", "gw", "srv") + (("c2",) if with_c2 else ()):
        lab.add_ns(short)
    lab.veth("gw", "in1", "c1", "eth0")
    lab.veth("gw", "out0", "srv", "eth0")
    if with_c2:
        lab.veth("gw", "in2", "c2", "eth0")

    def addr(short, a, dev):
        extra = ["nodad"] if ":" in a else []
        lab.run(short, "ip", "addr", "add", a, "dev", dev, *extra)

    addr("c1", "198.18.0.2/24", "eth0")
    addr("gw", "198.18.0.1/24", "in1")
    addr("gw", "203.0.113.1/24", "out0")
    addr("gw", "203.0.113.9/24", "out0")
    addr("srv", "203.0.113.2/24", "eth0")
    lab.run("c1", "ip", "route", "add", "default", "via", "198.18.0.1")
    lab.run("srv", "ip", "route", "add", "default", "via", "203.0.113.1")
    if with_c2:
        addr("c2", "198.18.1.2/24", "eth0")
        addr("gw", "198.18.1.1/24", "in2")
        lab.run("c2", "ip", "route", "add", "default", "via", "198.18.1.1")
    if with_v6:
        addr("c1", "2001:db8:1::2/64", "eth0")
        addr("gw", "2001:db8:1::1/64", "in1")
        addr("gw", "2001:db8:2::1/64", "out0")
        addr("srv", "2001:db8:2::2/64", "eth0")
        lab.run("c1", "ip", "-6", "route", "add", "default", "via",
                "2001:db8:1::1")
        lab.run("srv", "ip", "-6", "route", "add", "default", "via",
                "2001:db8:2::1")
    lab.sysctl("gw", "net.ipv4.ip_forward", 1)
    lab.sysctl("gw", "net.ipv6.conf.all.forwarding", 1)
    lab.sysctl("gw", "net.ipv4.ip_local_port_range",
               "%d %d" % GW_LOCAL_PORT_RANGE)
    lab.sysctl("c1", "net.ipv4.ip_local_port_range", "10000 31999")
    lab.nft("gw", GW_RULESET)
    lab.nft("srv", SRV_RULESET)
    for k, v in QUIET_TIMEOUTS.items():
        lab.sysctl("gw", k, v)


def conntrack_list(lab, short="gw"):
    """`conntrack -L -o extended` in namespace short: (text, time.time()
    when it returned)."""
    r = lab.run(short, "conntrack", "-L", "-o", "extended")
    return r.stdout, time.time()


# ------------------------------------------------------------- natscope

def natscope_bin():
    return os.environ.get("NATSCOPE_BIN", "/work/main/build/natscope")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    """utime + stime of pid in seconds, from /proc/PID/stat (None once it
    is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rfc3339(text):
    """Parses an RFC 3339 timestamp to a Unix time, or raises
    ValueError."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError("not RFC 3339: %r" % (text,))
    return datetime.datetime.fromisoformat(
        text.replace("Z", "+00:00")).timestamp()


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?"
                      r"(Z|[+-]\d{2}:\d{2})$")


class Natscope:
    """`natscope run` in a namespace, and an HTTP client that reaches its
    API there."""

    def __init__(self, lab, short, workdir, port=9628, interval=1,
                 extra=(), logname="natscope.log"):
        self.lab, self.short, self.port = lab, short, port
        self.db = os.path.join(workdir, "natscope.db")
        self.logpath = os.path.join(workdir, logname)
        self.logf = open(self.logpath, "w")
        self.argv = [natscope_bin(), "run", "--db", self.db, "--listen",
                     "127.0.0.1:%d" % port, "--interval", str(interval)]
        self.argv += list(extra)
        self.p = lab.spawn(short, *self.argv, stdout=self.logf,
                           stderr=subprocess.STDOUT)

    def log_text(self):
        self.logf.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()

    @property
    def pid(self):
        return self.p.pid   # `ip netns exec` execs: natscope's own pid

    def netns(self):
        """A context manager entering natscope's network namespace: the
        lab's by name, or the process's own once the name is gone (ip
        netns del: the process still pins the namespace)."""
        full = self.lab.ns(self.short)
        if os.path.exists("/run/netns/" + full):
            return _Inside(full)
        return _Inside(path="/proc/%d/ns/net" % self.pid)

    def cpu_seconds(self):
        """natscope's user + system CPU time, from /proc/PID/stat."""
        return proc_cpu_seconds(self.pid)

    def request(self, method, path, timeout=10):
        """Returns (status, content type, body bytes)."""
        with self.netns():
            c = http.client.HTTPConnection("127.0.0.1", self.port,
                                           timeout=timeout)
            c.connect()
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()
        finally:
            c.close()

    def get_json(self, path, want=200):
        status, ctype, body = self.request("GET", path)
        if status != want:
            raise LabError("GET %s: status %d (wanted %d): %s"
                           % (path, status, want, body[:500]))
        try:
            return json.loads(body)
        except ValueError:
            raise LabError("GET %s: not JSON: %r" % (path, body[:500]))

    def wait_status(self, pred, timeout, what):
        """Polls /api/v1/status until pred(status) holds; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise LabError("natscope exited with %d while waiting for "
                               "%s:\n%s" % (self.p.returncode, what,
                                            self.log_text()))
            try:
                last = self.get_json("/api/v1/status")
                if pred(last):
                    return last
            except (OSError, LabError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.2)
        raise LabError("timed out waiting for %s; last status: %s"
                       % (what, last))
