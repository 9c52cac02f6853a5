#!/usr/bin/env python3
"""test_privsep - natscope run's privileges, as the kernel reports them
(issue 9, least privilege).

  1. Started as root, `natscope run` is two processes: the collector, every
     thread of which holds CAP_NET_ADMIN and nothing else (effective and
     permitted; inheritable, ambient and bounding sets empty;
     NoNewPrivs 1), and its child `natscope run-web`, every thread of which
     holds no capability at all (CapEff, CapPrm, CapInh, CapAmb, CapBnd 0;
     NoNewPrivs 1), with no netlink socket and the database file open
     read-only.  The collector still dumps (an entry made before it
     started) and follows events (one made after) as CAP_NET_ADMIN alone,
     and the API answers from the child.
  2. SIGHUP and SIGUSR1 do not stop it (they used to kill it).
  3. The web process killed (SIGKILL): the collector logs it, starts a new
     one (no capability either) and the API answers again; collection
     never stopped, and no write found the database changed behind the
     collector's back (the new reader saw its SQLite locks).
  4. SIGTERM stops both, with the final write (status stopped, exit 0).
  5. --user nobody: both processes run as nobody (uid, gid, no
     supplementary group), the collector with CAP_NET_ADMIN alone; an
     existing root-owned database is given to nobody and the files the run
     makes (-wal, -shm) are nobody's; the API answers; SIGTERM stops it
     cleanly.  The same in a directory nobody cannot write (root's): the
     database is made before the switch and given to nobody.  A database
     path that is a symbolic link (planted in nobody's directory) is
     refused and its target keeps its owner.
  6. The collector killed (SIGKILL): the web process exits too.

Namespaces nspriv-*, ports 19950-19959.  Exit 0 pass, 1 fail, 77 skip.
"""

import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

CAP_NET_ADMIN = 1 << 12
PUB = "203.0.113.1"
SRV = "198.51.100.1"
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


# ------------------------------------------------------------- /proc

def proc_status(path):
    """The fields of a /proc/.../status file as a dict of strings."""
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def thread_statuses(pid):
    """(thread name, status dict) of every thread of pid."""
    out = []
    base = "/proc/%d/task" % pid
    for tid in sorted(os.listdir(base)):
        try:
            st = proc_status("%s/%s/status" % (base, tid))
        except OSError:
            continue  # it ended meanwhile
        out.append(("%s/%s" % (st.get("Name"), tid), st))
    return out


def children(pid):
    """Pids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def web_child(ns, timeout=10.0, not_pid=None):
    """The natscope run-web child of ns's process (waiting for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [c for c in children(ns.pid)
                if b"run-web" in cmdline(c) and c != not_pid and alive(c)]
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise nslab.LabError("no natscope run-web child of %d within %.0f s "
                         "(children: %r)" % (ns.pid, timeout,
                                             children(ns.pid)))


def socket_inodes(pid):
    out = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink("%s/%s" % (fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def netlink_inodes(pid):
    """Inodes of every netlink socket in pid's network namespace."""
    out = set()
    with open("/proc/%d/net/netlink" % pid) as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols:
                out.add(int(cols[-1]))
    return out


def db_fd_modes(pid, db):
    """{path: O_ACCMODE} of pid's descriptors on the database file (its
    -wal and -shm are opened read-write by any SQLite WAL reader, which
    keeps its read marks there)."""
    out = {}
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink("%s/%s" % (fd_dir, fd))
            if link != db:
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("flags:"):
                        out[link] = int(line.split()[1], 8) & 3
        except OSError:
            continue
    return out


# ------------------------------------------------------------- checks

def check_collector(fail, ns, what, uid=0):
    for name, st in thread_statuses(ns.pid):
        caps = {k: int(st[k], 16) for k in CAP_FIELDS}
        want = {"CapInh": 0, "CapPrm": CAP_NET_ADMIN,
                "CapEff": CAP_NET_ADMIN, "CapBnd": 0, "CapAmb": 0}
        fail.check(caps == want, "%s: collector thread %s holds %s, wanted "
                   "CAP_NET_ADMIN alone (%s)"
                   % (what, name, {k: "%x" % v for k, v in caps.items()},
                      {k: "%x" % v for k, v in want.items()}))
        fail.check(st.get("NoNewPrivs") == "1", "%s: collector thread %s: "
                   "NoNewPrivs %r" % (what, name, st.get("NoNewPrivs")))
        fail.check(st["Uid"].split() == [str(uid)] * 4,
                   "%s: collector thread %s: Uid %r, wanted %d"
                   % (what, name, st["Uid"], uid))
    log("%s: collector %d: %d threads, each CAP_NET_ADMIN alone, uid %d"
        % (what, ns.pid, len(thread_statuses(ns.pid)), uid))


def check_web(fail, ns, pid, what, uid=0):
    for name, st in thread_statuses(pid):
        for k in CAP_FIELDS:
            fail.check(int(st[k], 16) == 0, "%s: web thread %s: %s %s, "
                       "wanted 0" % (what, name, k, st[k]))
        fail.check(st.get("NoNewPrivs") == "1", "%s: web thread %s: "
                   "NoNewPrivs %r" % (what, name, st.get("NoNewPrivs")))
        fail.check(st["Uid"].split() == [str(uid)] * 4,
                   "%s: web thread %s: Uid %r, wanted %d"
                   % (what, name, st["Uid"], uid))
    try:
        stdin = os.readlink("/proc/%d/fd/0" % pid)
    except OSError as e:
        stdin = repr(e)
    fail.check(stdin == "/dev/null", "%s: the web process's stdin is %r, "
               "wanted /dev/null" % (what, stdin))
    nl = socket_inodes(pid) & netlink_inodes(pid)
    fail.check(not nl, "%s: the web process holds netlink sockets %r"
               % (what, sorted(nl)))
    modes = db_fd_modes(pid, ns.db)
    fail.check(ns.db in modes, "%s: the web process has no descriptor on "
               "%s (%r)" % (what, ns.db, modes))
    fail.check(all(m == os.O_RDONLY for m in modes.values()),
               "%s: the web process opened the database for writing: %r"
               % (what, modes))
    log("%s: web process %d: %d threads, no capability, no netlink "
        "socket, database read-only" % (what, pid,
                                        len(thread_statuses(pid))))


def conntrack_entry(lab, sport, pport):
    """A SNAT'd TCP entry 198.18.0.2:sport -> SRV:443 on PUB:pport."""
    lab.run("gw", "conntrack", "-I", "-p", "tcp", "-s", "198.18.0.2",
            "-d", SRV, "--sport", str(sport), "--dport", "443",
            "-r", SRV, "-q", PUB, "--reply-port-src", "443",
            "--reply-port-dst", str(pport), "--state", "ESTABLISHED",
            "-u", "SEEN_REPLY", "-t", "600")


def gateway_mappings(ns):
    g = ns.get_json("/api/v1/gateways")
    return sum(x["mappings"] for x in g["gateways"]
               if x["public_ip"] == PUB and x["proto"] == "tcp")


def wait_mappings(ns, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = gateway_mappings(ns)
            if got == want:
                return got
        except (OSError, nslab.LabError) as e:
            got = repr(e)
        time.sleep(0.2)
    return got


def stored_state(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return c.execute("SELECT state FROM status").fetchone()[0]
    finally:
        c.close()


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def stop(lab, fail, ns, what):
    """SIGTERM: exit 0, the web process gone, the final write landed, and
    no write ever found the database changed behind the collector."""
    web = [c for c in children(ns.pid) if b"run-web" in cmdline(c)]
    rc = lab.stop(ns.p, signal.SIGTERM, timeout=10)
    fail.check(rc == 0, "%s: SIGTERM: exit status %r, wanted 0\n%s"
               % (what, rc, ns.log_text()))
    for c in web:
        fail.check(wait_gone(c, 3), "%s: web process %d outlived the "
                   "collector's SIGTERM" % (what, c))
    state = stored_state(ns.db)
    fail.check(state == "stopped", "%s: status %r after SIGTERM, wanted "
               "stopped" % (what, state))
    text = ns.log_text()
    fail.check("another connection changed" not in text and
               "error" not in text.replace("errors", ""),
               "%s: the log shows a failed write:\n%s" % (what, text))


# ------------------------------------------------------------- tests

def test_root(lab, fail, work):
    conntrack_entry(lab, 40001, 50001)        # before: the dump finds it
    ns = nslab.Natscope(lab, "gw", work, port=19950)
    ns.wait_status(lambda s: s.get("state") == "running", 20, "running")
    conntrack_entry(lab, 40002, 50002)        # after: an event
    got = wait_mappings(ns, 2)
    fail.check(got == 2, "root: %s tcp mappings %r, wanted 2 (one dumped, "
               "one from an event)" % (PUB, got))
    check_collector(fail, ns, "root")
    web = web_child(ns)
    check_web(fail, ns, web, "root")
    status, _, body = ns.request("GET", "/healthz")
    fail.check(status == 200, "root: /healthz %d: %r" % (status, body))

    for sig in (signal.SIGHUP, signal.SIGUSR1):
        os.kill(ns.pid, sig)
        time.sleep(1.0)
        fail.check(ns.p.poll() is None, "root: %s stopped it (status %r)"
                   % (sig.name, ns.p.returncode))
        if ns.p.poll() is not None:
            return
        fail.check(wait_mappings(ns, 2) == 2, "root: the API does not "
                   "answer after %s" % sig.name)
    fail.check("SIGHUP" in ns.log_text(), "root: SIGHUP is not logged")

    os.kill(web, signal.SIGKILL)
    log("root: killed web process %d" % web)
    fail.check(wait_gone(web, 3), "root: web process %d survived SIGKILL"
               % web)
    conntrack_entry(lab, 40003, 50003)     # collected while there is no API
    new = web_child(ns, timeout=10, not_pid=web)
    fail.check(ns.p.poll() is None, "root: the collector died with its web "
               "process")
    got = wait_mappings(ns, 3)
    fail.check(got == 3, "root: after the web process was killed: %r "
               "mappings, wanted 3" % (got,))
    check_web(fail, ns, new, "root, restarted")
    # the collector logs "serves again" once the new process said so,
    # which may come after the process's first answer
    deadline = time.monotonic() + 3
    while True:
        text = ns.log_text()
        if ("killed by signal 9" in text and "serves again" in text) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    fail.check("killed by signal 9" in text and "serves again" in text,
               "root: the restart is not logged:\n%s" % text)
    log("root: web process %d replaced by %d; API answers" % (web, new))
    stop(lab, fail, ns, "root")


def test_user(lab, fail, work, root_db):
    nobody = pwd.getpwnam("nobody")
    d = os.path.join(work, "nobody")
    os.mkdir(d)
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    # an existing database made by root: given to nobody
    shutil.copy(root_db, os.path.join(d, "natscope.db"))
    ns = nslab.Natscope(lab, "gw", d, port=19951,
                        extra=("--user", "nobody"), logname="../user.log")
    ns.wait_status(lambda s: s.get("state") == "running", 20, "running")
    conntrack_entry(lab, 40004, 50004)
    got = wait_mappings(ns, 4)
    fail.check(got == 4, "--user: %r mappings, wanted 4" % (got,))
    check_collector(fail, ns, "--user nobody", uid=nobody.pw_uid)
    web = web_child(ns)
    check_web(fail, ns, web, "--user nobody", uid=nobody.pw_uid)
    for pid in (ns.pid, web):
        st = proc_status("/proc/%d/status" % pid)
        fail.check(st["Gid"].split() == [str(nobody.pw_gid)] * 4 and
                   st["Groups"] == "", "--user: process %d: Gid %r Groups "
                   "%r" % (pid, st["Gid"], st["Groups"]))
    for suffix in ("", "-wal", "-shm"):
        p = ns.db + suffix
        try:
            st = os.stat(p)
        except FileNotFoundError:
            fail.add("--user: %s missing while it runs" % p)
            continue
        fail.check((st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid),
                   "--user: %s owned by %d:%d, wanted nobody's"
                   % (p, st.st_uid, st.st_gid))
    # a restart as nobody: the new reader must find the collector's
    # SQLite locks in place (they are lost if the collector ever closes a
    # descriptor of the file, e.g. to chown it after opening it)
    os.kill(web, signal.SIGKILL)
    new = web_child(ns, timeout=10, not_pid=web)
    conntrack_entry(lab, 40005, 50005)
    got = wait_mappings(ns, 5)  # (answers: the new process serves)
    fail.check(got == 5, "--user: after a restart %r mappings, wanted 5"
               % (got,))
    check_web(fail, ns, new, "--user nobody, restarted", uid=nobody.pw_uid)
    stop(lab, fail, ns, "--user nobody")
    st = os.stat(ns.db)
    fail.check(st.st_uid == nobody.pw_uid, "--user: %s is not nobody's "
               "after the run" % ns.db)

    # a directory nobody cannot write: the database is made before the
    # switch and given to nobody with its -wal and -shm
    closed = os.path.join(work, "closed")
    os.mkdir(closed, 0o755)
    ns = nslab.Natscope(lab, "gw", closed, port=19952,
                        extra=("--user", "nobody"), logname="../closed.log")
    ns.wait_status(lambda s: s.get("state") == "running", 20, "running")
    got = wait_mappings(ns, 5)
    fail.check(got == 5, "--user, root's directory: %r mappings, wanted 5"
               % (got,))
    for suffix in ("", "-wal", "-shm"):
        st = os.stat(ns.db + suffix)
        fail.check(st.st_uid == nobody.pw_uid, "--user, root's directory: "
                   "%s owned by %d" % (ns.db + suffix, st.st_uid))
    stop(lab, fail, ns, "--user nobody, root's directory")


def test_user_link(lab, fail, work):
    """A database path that is a symbolic link, in a directory the user
    owns: refused, and the link's target keeps its owner."""
    nobody = pwd.getpwnam("nobody")
    d = os.path.join(work, "planted")
    os.mkdir(d)
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    target = os.path.join(work, "root-only")
    with open(target, "w") as f:
        f.write("root's\n")
    os.symlink(target, os.path.join(d, "natscope.db"))
    r = lab.run("gw", nslab.natscope_bin(), "run", "--user", "nobody",
                "--db", os.path.join(d, "natscope.db"), "--listen",
                "127.0.0.1:19954", check=False, timeout=10)
    out = r.stdout + r.stderr
    fail.check(r.returncode == 1 and "not a plain file" in out,
               "--user, symbolic link: status %d: %r" % (r.returncode, out))
    fail.check(os.stat(target).st_uid == 0, "--user, symbolic link: its "
               "target was given to nobody")


def test_parent_dies(lab, fail, work):
    d = os.path.join(work, "killed")
    os.mkdir(d)
    ns = nslab.Natscope(lab, "gw", d, port=19953)
    ns.wait_status(lambda s: s.get("state") == "running", 20, "running")
    web = web_child(ns)
    ns.p.kill()
    ns.p.wait(5)
    fail.check(wait_gone(web, 3), "web process %d outlived its collector "
               "(SIGKILL) by 3 s" % web)
    log("collector killed: web process %d %s" % (
        web, "gone" if not alive(web) else "STILL THERE"))


def test_listen_token(lab, fail, work):
    """natscope run with two listening addresses and a token: the web
    process serves both, asks for the token but on /healthz, and reads
    the token file again when the collector gets SIGHUP; a restarted web
    process still asks for it."""
    tok = os.path.join(work, "token")
    with open(tok, "w") as f:
        f.write("run-token-1\n")
    os.chmod(tok, 0o600)
    ns = nslab.Natscope(lab, "gw", work, port=19955, logname="listen.log",
                        extra=("--listen", "[::1]:19956",
                               "--auth-token-file", tok,
                               "--auth-open", "/healthz"))

    def code(url, token=None):
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                "--max-time", "5", url]
        if token:
            argv[1:1] = ["-H", "Authorization: Bearer " + token]
        return lab.run("gw", *argv, check=False).stdout.strip()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20 and \
            code("http://127.0.0.1:19955/healthz") != "200":
        time.sleep(0.2)
    v4, v6 = "http://127.0.0.1:19955", "http://[::1]:19956"
    fail.check(code(v4 + "/api/v1/status") == "401" and
               code(v6 + "/api/v1/status") == "401",
               "run: no token, 401 on both addresses")
    fail.check(code(v4 + "/api/v1/status", "run-token-1") == "200" and
               code(v6 + "/api/v1/status", "run-token-1") == "200",
               "run: the token, 200 on both addresses")
    with open(tok, "w") as f:
        f.write("run-token-2\n")
    os.kill(ns.pid, signal.SIGHUP)
    time.sleep(1.0)
    fail.check(ns.p.poll() is None and
               code(v4 + "/api/v1/status", "run-token-1") == "401" and
               code(v4 + "/api/v1/status", "run-token-2") == "200",
               "run: SIGHUP, the new token taken, the old refused")
    web = [c for c in children(ns.pid) if b"run-web" in cmdline(c)]
    fail.check(len(web) == 1, "run: one web process: %s" % web)
    for pid in web:
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20 and \
            code(v4 + "/api/v1/status", "run-token-2") != "200":
        time.sleep(0.3)
    fail.check(code(v4 + "/api/v1/status") == "401" and
               code(v6 + "/api/v1/status", "run-token-2") == "200",
               "run: the restarted web process asks for the token too")
    lab.stop(ns.p, timeout=20)


def test_sighup_settings(lab, fail, work):
    """SIGHUP reloads the log level and the incident thresholds from the
    --config file: the overview's colours move to the new thresholds (its
    web process is started again with them), the collector opens an
    incident at the new warn threshold that the old one would not have,
    and a file that says warn above critical changes nothing."""
    checks.require_ctgen()
    conf = os.path.join(work, "hup.conf")
    with open(conf, "w") as f:
        f.write("warn = 70\ncritical = 90\n")
    ns = nslab.Natscope(lab, "gw", work, port=19957, logname="hup.log",
                        extra=("--config", conf))
    ns.wait_status(lambda s: s.get("state") == "running", 20, "running")

    def page():
        with ns.netns():
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", 19957, timeout=5)
            try:
                c.request("GET", "/", headers={"Accept": "text/html"})
                return c.getresponse().read().decode(errors="replace")
            finally:
                c.close()
    fail.check('data-warn="0.7000" data-critical="0.9000"' in page(),
               "hup: the overview starts at 70/90 %")
    with open(conf, "w") as f:
        f.write("warn = 50\ncritical = 80\nlog-level = debug\n")
    os.kill(ns.pid, signal.SIGHUP)
    t0, html = time.monotonic(), ""
    while time.monotonic() - t0 < 15:
        try:
            html = page()
        except OSError:
            html = ""
        if 'data-warn="0.5000" data-critical="0.8000"' in html:
            break
        time.sleep(0.3)
    fail.check('data-warn="0.5000" data-critical="0.8000"' in html,
               "hup: after SIGHUP the overview shows 50/80 %")
    text = ns.log_text()
    fail.check("read again: warn 50 %, critical 80 %, log level debug" in
               text, "hup: the reload is logged")
    # 60 % of a bucket: a warn incident at 50 %, none at 70 %
    checks.ctgen(lab, "gw", "--count", 38700, "--proto", "udp",
                 "--public-ips", 1, "--dests", 1, "--hosts", 1,
                 "--host-base", 4100, "--seed", 91)
    t0, inc = time.monotonic(), []
    while time.monotonic() - t0 < 20 and not inc:
        inc = [i for i in ns.get_json("/api/v1/incidents").get(
            "incidents") or [] if i.get("kind") == "bucket"]
        time.sleep(0.5)
    fail.check(len(inc) == 1 and inc[0].get("severity") == "warn",
               "hup: a warn bucket incident at 60 %% under the new 50 %% "
               "threshold: %s" % inc)
    after = ns.log_text().split("read again: warn 50 %", 1)[-1]
    fail.check(" debug: " in after, "hup: debug lines after the reload "
               "(the new web process's start is one)")
    with open(conf, "w") as f:
        f.write("warn = 95\ncritical = 80\n")
    os.kill(ns.pid, signal.SIGHUP)
    time.sleep(1.0)
    fail.check("warn above critical: nothing reloaded" in ns.log_text() and
               'data-warn="0.5000"' in page() and ns.p.poll() is None,
               "hup: warn above critical changes nothing")
    lab.run("gw", "conntrack", "-D", "-p", "udp", check=False)
    lab.stop(ns.p, timeout=20)


def main(argv):
    nslab.require_lab_tools()
    fail = nslab.Failures()
    work = tempfile.mkdtemp(prefix="natscope-e2e-privsep-")
    os.chmod(work, 0o755)  # nobody must reach its directory below
    with nslab.Lab(tag="privsep") as lab:
        lab.prefix = "nspriv-%d-%s" % (os.getpid(), secrets.token_hex(3))
        try:
            lab.add_ns("gw")
            test_root(lab, fail, work)
            test_user(lab, fail, work, os.path.join(work, "natscope.db"))
            test_user_link(lab, fail, work)
            test_parent_dies(lab, fail, work)
            test_listen_token(lab, fail, work)
            test_sighup_settings(lab, fail, work)
        except (nslab.LabError, subprocess.SubprocessError, OSError) as e:
            fail.add(str(e))
        finally:
            lab.teardown()
    if fail.items:
        log("%d failure(s); files kept in %s" % (len(fail.items), work))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
