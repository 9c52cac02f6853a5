#!/usr/bin/env python3
"""test_database - the database never presents a wrong present (issue 6,
section 5).  natscope runs in a namespace of this run, with entries made by
bench/ctgen:

  1. one writer: a second `natscope run` on the same --db is refused before
     it writes anything, and names the first (pid, when its run started);
     with its port taken it fails before it even opens the database.  The
     first one's answers stay whole (on main the second one emptied them:
     `[]`, complete, healthy).  Readers are not blocked.
  2. a failed start leaves an existing database byte for byte as it was,
     and creates no file.
  3. tables changed behind natscope's back (DELETE FROM gateways in another
     connection) are rewritten in full within two intervals.
  4. one damaged page in the gap log while running: /healthz 503
     "db-error", the failed writes counted and growing, natscope still
     running, no answer complete; SIGTERM then exits 1; at the next start
     the damage is found before anything is written.
  5. a valid database on a read-only and on a full file system is not
     called "not a natscope database" and is left as it was; a new one on
     a full file system is not left behind half made.
  6. SIGTERM when the final write fails (full file system): exit 1, and
     the log says so.

File systems are tmpfs mounts in private mount namespaces (unshare -m):
they vanish with the processes that use them.  Exit 0 pass, 1 fail, 77
skip.
"""

import hashlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nslab  # noqa: E402
from nslab import log  # noqa: E402

CTGEN = os.environ.get("NATSCOPE_CTGEN", "/work/main/build/ctgen")
ENTRIES = 2000
PORT_A, PORT_B, PORT_C, PORT_FS, PORT_TERM = 9640, 9641, 9642, 9643, 9644


# ---------------------------------------------------------------- helpers

def http_get(lab, port, path, timeout=10):
    """GET path from natscope in the gw namespace: (status, body text)."""
    with lab.inside("gw"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.connect()
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def get_json(lab, port, path):
    """(status, parsed body or None)."""
    status, body = http_get(lab, port, path)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def wait_for(what, pred, timeout, step=0.2):
    """Polls pred() until it returns something true; returns it or raises
    LabError saying what did not happen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = repr(e)
        time.sleep(step)
    raise nslab.LabError("timed out after %.0f s waiting for %s (last: %r)"
                         % (timeout, what, last))


def run_timed(lab, argv, timeout):
    """Runs argv in gw: (status or None if it had to be killed, output)."""
    p = lab.spawn("gw", *argv, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        lab.stop(p, timeout=3)
        out, _ = p.communicate()
        rc = None
    return rc, out.decode(errors="replace")


def natscope_argv(db, port):
    return [nslab.natscope_bin(), "run", "--db", db, "--listen",
            "127.0.0.1:%d" % port, "--interval", "1"]


def file_state(path):
    """sha256 of the file and which of its -wal, -shm exist."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return digest, tuple(s for s in ("-wal", "-shm")
                         if os.path.exists(path + s))


def total_mappings(doc):
    return sum(g.get("mappings", 0) for g in doc.get("gateways", []))


def whole(lab, port):
    """True when natscope's answers show every ctgen entry, complete, and
    /healthz is 200."""
    s, doc = get_json(lab, port, "/api/v1/gateways")
    h, _ = http_get(lab, port, "/healthz")
    return (s == 200 and doc is not None and
            doc.get("coverage", {}).get("complete") is True and
            total_mappings(doc) == ENTRIES and h == 200)


def check_whole_for(lab, fail, port, seconds, what):
    """Checks every 0.25 s for seconds that the answers stay whole."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s, doc = get_json(lab, port, "/api/v1/gateways")
        h, hbody = http_get(lab, port, "/healthz")
        ok = (s == 200 and doc is not None and
              doc.get("coverage", {}).get("complete") is True and
              total_mappings(doc) == ENTRIES and h == 200)
        if not fail.check(ok, "%s: answers no longer whole: gateways %d "
                          "%s mappings, complete %r; healthz %d %s"
                          % (what, s, total_mappings(doc or {}),
                             (doc or {}).get("coverage", {}).get("complete"),
                             h, hbody.strip())):
            return
        time.sleep(0.25)


def foreign(db, sql, retries=50):
    """Runs sql on a connection of our own, as the sqlite3 tool would, and
    commits.  Returns the first row of the last statement, if any."""
    for _ in range(retries):
        try:
            con = sqlite3.connect(db, timeout=5, isolation_level=None)
            try:
                row = None
                for stmt in [x for x in sql.split(";") if x.strip()]:
                    row = con.execute(stmt).fetchone()
                return row
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            time.sleep(0.1)
    raise nslab.LabError("%s: still locked" % sql)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def corrupt_root_page(db, name):
    """Garbage over all but the 8-byte header of name's root page (so the
    page still claims its cells, whose pointers now point nowhere)."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        root = con.execute("SELECT rootpage FROM sqlite_schema WHERE "
                           "name = ?", (name,)).fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    junk = bytes((i * 37 + 11) & 0xff for i in range(size - 8))
    with open(db, "r+b") as f:
        f.seek((root - 1) * size + 8)
        f.write(junk)
    log("wrote garbage over page %d (the root of %s)" % (root, name))


# ------------------------------------------------------------------ tests

def test_one_writer(lab, fail, work):
    """1: a second writer is refused; the first one's answers stay whole."""
    os.makedirs(os.path.join(work, "a"))
    a = nslab.Natscope(lab, "gw", os.path.join(work, "a"), port=PORT_A)
    db = a.db
    st = a.wait_status(lambda s: s.get("state") == "running", 20,
                       "state running")
    wait_for("all %d entries in the answers" % ENTRIES,
             lambda: whole(lab, PORT_A), 20)
    log("first natscope (pid %d) shows all %d entries" % (a.p.pid, ENTRIES))

    # its port taken: fails before it touches the database
    rc, out = run_timed(lab, natscope_argv(db, PORT_A), 10)
    log("second natscope, same --db and port: status %r: %s"
        % (rc, out.strip()))
    fail.check(rc == 1, "second natscope with a taken port: status %r, "
               "wanted 1" % rc)
    fail.check("in use" in out and str(PORT_A) in out,
               "second natscope does not say its port is in use: %r" % out)
    check_whole_for(lab, fail, PORT_A, 3.0, "after a second natscope "
                    "whose port was taken")

    # its own port: refused by the lock, naming the first
    rc, out = run_timed(lab, natscope_argv(db, PORT_B), 10)
    log("second natscope, same --db, port free: status %r: %s"
        % (rc, out.strip()))
    fail.check(rc == 1, "second writer of one database: status %r, wanted "
               "1 (refused)" % rc)
    fail.check("pid %d" % a.p.pid in out,
               "the refusal does not name the first natscope (pid %d): %r"
               % (a.p.pid, out))
    fail.check(st.get("started_at") and st["started_at"] in out,
               "the refusal does not say when the first run started (%s): "
               "%r" % (st.get("started_at"), out))
    check_whole_for(lab, fail, PORT_A, 3.0, "after a second writer")

    # readers are never blocked
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=1)
    try:
        state = con.execute("SELECT state FROM status").fetchone()[0]
    finally:
        con.close()
    fail.check(state == "running", "a reader of the database sees state "
               "%r" % state)

    rc = lab.stop(a.p)
    fail.check(rc == 0, "first natscope: SIGTERM exit status %r" % rc)
    return db


def test_failed_start(lab, fail, work, db):
    """2: a start that fails changes nothing and creates nothing."""
    before = file_state(db)
    fresh = os.path.join(work, "fresh.db")
    with lab.inside("gw"):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", PORT_C))
        taken.listen(1)
    try:
        for path in (db, fresh):
            rc, out = run_timed(lab, natscope_argv(path, PORT_C), 10)
            log("natscope on %s with port %d taken: status %r: %s"
                % (os.path.basename(path), PORT_C, rc, out.strip()))
            fail.check(rc == 1, "port taken: status %r, wanted 1" % rc)
    finally:
        taken.close()
    after = file_state(db)
    fail.check(after == before, "a start that failed changed the database: "
               "%r -> %r" % (before, after))
    left = [f for f in os.listdir(work) if f.startswith("fresh.db")]
    fail.check(not left, "a start that failed left files behind: %r" % left)


def test_foreign_delete(lab, fail, work):
    """3: someone empties the tables; natscope rewrites them in full."""
    os.makedirs(os.path.join(work, "d"))
    d = nslab.Natscope(lab, "gw", os.path.join(work, "d"), port=PORT_A)
    d.wait_status(lambda s: s.get("state") == "running", 20,
                  "state running")
    wait_for("all %d entries in the answers" % ENTRIES,
             lambda: whole(lab, PORT_A), 20)
    foreign(d.db, "DELETE FROM gateways; DELETE FROM hosts; "
                  "DELETE FROM destinations")
    t0 = time.monotonic()
    log("emptied gateways, hosts and destinations from another connection")
    try:
        wait_for("the tables rewritten in full", lambda: whole(lab, PORT_A),
                 5)
        log("rewritten in full after %.1f s" % (time.monotonic() - t0))
    except nslab.LabError as e:
        s, doc = get_json(lab, PORT_A, "/api/v1/gateways")
        fail.add("tables emptied by another connection were not rewritten "
                 "within 5 s (interval 1 s): %s; gateways %d %s"
                 % (e, s, json.dumps(doc)[:300]))
    s, st = get_json(lab, PORT_A, "/api/v1/status")
    w = (st or {}).get("writes", {})
    fail.check(s == 200 and w.get("failed", 0) >= 1 and
               "another connection" in (w.get("last_error") or ""),
               "the refused delta is not reported: %s" % w)
    rc = lab.stop(d.p)
    fail.check(rc == 0, "natscope: SIGTERM exit status %r" % rc)


def test_corrupt_running(lab, fail, work):
    """4: a damaged page in the gap log while natscope runs."""
    os.makedirs(os.path.join(work, "e"))
    d = nslab.Natscope(lab, "gw", os.path.join(work, "e"), port=PORT_A)
    d.wait_status(lambda s: s.get("state") == "running", 20,
                  "state running")
    wait_for("all %d entries in the answers" % ENTRIES,
             lambda: whole(lab, PORT_A), 20)
    db = d.db
    # gaps of an earlier run, so that the gap log's page has cells
    now_ms = int(time.time() * 1000)
    rows = ", ".join("(%d, %d, %d, %d, 5, 1, 0, 0, 0, 'enobufs')"
                     % (now_ms - 86400000, i, now_ms - 86400000 + i * 1000,
                        now_ms - 86400000 + i * 1000 + 500)
                     for i in range(1, 21))
    foreign(db, "INSERT INTO gaps VALUES " + rows)
    wait_for("natscope whole again after the inserted gaps",
             lambda: whole(lab, PORT_A), 10)
    res = wait_for("a complete checkpoint", lambda: foreign(
        db, "PRAGMA wal_checkpoint(TRUNCATE)") == (0, 0, 0), 10)
    log("checkpointed: %r" % (res,))
    corrupt_root_page(db, "gaps")
    # a commit of our own elsewhere: every connection drops its cache
    foreign(db, "UPDATE schema_migrations SET applied_at = applied_at "
                "WHERE version = 1")

    seen = []

    def db_error():
        h, body = http_get(lab, PORT_A, "/healthz")
        seen[:] = [h, body.strip()]
        return (h, body) if h == 503 and '"db-error"' in body else None
    try:
        h, body = wait_for("/healthz 503 db-error", db_error, 10)
        log("healthz: %d %s" % (h, body.strip()))
    except nslab.LabError as e:
        _, m = http_get(lab, PORT_A, "/metrics")
        fail.add("damaged gap log: %s; healthz said %r; writes failed "
                 "%r\n%s" % (e, seen, metric(m, "natscope_writes_failed_"
                                               "total"),
                             d.log_text()[-1000:]))
        lab.stop(d.p)
        return
    _, m1 = http_get(lab, PORT_A, "/metrics")
    time.sleep(2.5)
    fail.check(d.p.poll() is None, "natscope exited on a damaged page")
    _, m2 = http_get(lab, PORT_A, "/metrics")
    f1 = metric(m1, "natscope_writes_failed_total")
    f2 = metric(m2, "natscope_writes_failed_total")
    log("writes failed: %r, 2.5 s later %r" % (f1, f2))
    fail.check(f1 is not None and f1 >= 1 and f2 is not None and f2 > f1,
               "failed writes are not counted, or not retried: %r then %r"
               % (f1, f2))
    fail.check(metric(m2, 'natscope_collector_state{state="db-error"}')
               == 1, "/metrics does not show state db-error")
    for path in ("/api/v1/gateways", "/api/v1/status",
                 "/api/v1/gateways/203.0.113.1/hosts"):
        s, body = http_get(lab, PORT_A, path)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        complete = (doc or {}).get("coverage", {}).get("complete")
        log("%s: %d %s" % (path, s, body[:160]))
        fail.check(doc is not None and complete is not True and
                   (s != 200 or complete is False) and
                   (s < 500 or "corrupt" in body),
                   "%s during db-error: %d %s" % (path, s, body[:300]))
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        state, failed, err = con.execute(
            "SELECT state, writes_failed, writes_last_error FROM status"
        ).fetchone()
    finally:
        con.close()
    fail.check(state == "db-error" and failed >= 1 and "corrupt" in err,
               "status row: %r %r %r" % (state, failed, err))

    rc = lab.stop(d.p)
    out = d.log_text()
    fail.check(rc == 1 and "final write" in out,
               "SIGTERM with a damaged database: status %r, log ends %r"
               % (rc, out[-300:]))

    # the next start finds the damage before it writes anything
    before = file_state(db)
    rc, out = run_timed(lab, natscope_argv(db, PORT_A), 10)
    log("natscope on the damaged file: status %r: %s" % (rc, out.strip()))
    fail.check(rc == 1 and "corrupt" in out and "gaps" in out and
               "not a natscope database" not in out,
               "start on a damaged gap log: status %r: %r" % (rc, out))
    fail.check(file_state(db) == before, "the refused start changed the "
               "damaged file")


FS_SCRIPT = r"""
set -u
mount -t tmpfs -o size=1m natscope-test "$MNT" || exit 90
cp "$SRC" "$MNT/natscope.db"
mount -o remount,ro "$MNT"
echo "=== ro"
"$BIN" run --db "$MNT/natscope.db" --listen 127.0.0.1:$PORT --interval 1
echo "=== rc $?"
mount -o remount,rw "$MNT"
dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null
echo "=== before $(sha256sum < "$MNT/natscope.db")"
echo "=== full"
"$BIN" run --db "$MNT/natscope.db" --listen 127.0.0.1:$PORT --interval 1
echo "=== rc $?"
echo "=== after $(sha256sum < "$MNT/natscope.db")"
echo "=== files $(ls -A "$MNT" | tr '\n' ' ')"
echo "=== new"
"$BIN" run --db "$MNT/new.db" --listen 127.0.0.1:$PORT --interval 1
echo "=== rc $?"
echo "=== files $(ls -A "$MNT" | tr '\n' ' ')"
"""


def sections(out):
    """The script's output split at its '=== name rest' lines into
    {name: [rest and the lines up to the next marker]} (repeated names
    get _2, _3)."""
    res, cur = {}, None
    for line in out.splitlines():
        if line.startswith("=== "):
            name, _, rest = line[4:].partition(" ")
            key, n = name, 2
            while key in res:
                key, n = "%s_%d" % (name, n), n + 1
            res[key] = [rest]
            cur = key if name in ("ro", "full", "new") else None
        elif cur:
            res[cur].append(line)
    return res


def test_filesystems(lab, fail, work, src):
    """5: read-only and full file systems are called what they are."""
    mnt = os.path.join(work, "mnt-fs")
    os.makedirs(mnt, exist_ok=True)
    env = dict(os.environ, MNT=mnt, SRC=src, BIN=nslab.natscope_bin(),
               PORT=str(PORT_FS))
    p = lab.spawn("gw", "unshare", "-m", "--propagation", "private", "sh",
                  "-c", FS_SCRIPT, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        lab.stop(p)
        out, _ = p.communicate()
    out = out.decode(errors="replace")
    log("file systems:\n" + out.strip())
    if p.returncode == 90:
        fail.add("cannot mount a tmpfs here: %s" % out)
        return
    s = sections(out)
    for name, words in (("ro", "Read-only file system"),
                        ("full", "file system is full")):
        text = "\n".join(s.get(name, []))
        rc = (s.get("rc") if name == "ro" else s.get("rc_2")) or ["?"]
        fail.check(rc[0] == "1", "%s: status %s, wanted 1" % (name, rc[0]))
        fail.check(words in text, "%s: the log does not say %r: %r"
                   % (name, words, text))
        fail.check("not a natscope database" not in text,
                   "%s: a valid database called not a natscope database: "
                   "%r" % (name, text))
    fail.check(s.get("before") == s.get("after"),
               "full: the database changed: %r -> %r"
               % (s.get("before"), s.get("after")))
    files = (s.get("files") or [""])[0].split()
    fail.check(sorted(files) == ["fill", "natscope.db"],
               "full: files left next to the database: %r" % files)
    new = "\n".join(s.get("new", []))
    rc = (s.get("rc_3") or ["?"])[0]
    fail.check(rc == "1" and "not a natscope database" not in new,
               "new database on a full file system: status %s: %r"
               % (rc, new))
    files = (s.get("files_2") or [""])[0].split()
    fail.check(sorted(files) == ["fill", "natscope.db"],
               "new database on a full file system left files: %r" % files)


TERM_SCRIPT = r"""
mount -t tmpfs -o size=2m natscope-test "$MNT" || exit 90
"$BIN" run --db "$MNT/natscope.db" --listen 127.0.0.1:$PORT --interval 1 &
echo $! > "$PIDFILE"
wait $!
echo "=== rc $?"
"""


def test_final_write_fails(lab, fail, work):
    """6: SIGTERM when the final write fails exits 1 and says so."""
    mnt = os.path.join(work, "mnt-term")
    os.makedirs(mnt, exist_ok=True)
    pidfile = os.path.join(work, "term.pid")
    logpath = os.path.join(work, "term.log")
    env = dict(os.environ, MNT=mnt, BIN=nslab.natscope_bin(),
               PORT=str(PORT_TERM), PIDFILE=pidfile)
    with open(logpath, "w") as logf:
        sh = lab.spawn("gw", "unshare", "-m", "--propagation", "private",
                       "sh", "-c", TERM_SCRIPT, stdout=logf,
                       stderr=subprocess.STDOUT, env=env)

    def text():
        with open(logpath, errors="replace") as f:
            return f.read()
    pid = int(wait_for("natscope's pid", lambda: os.path.exists(pidfile) and
                       open(pidfile).read().strip(), 10))
    wait_for("natscope healthy", lambda: http_get(lab, PORT_TERM,
                                                  "/healthz")[0] == 200, 20)
    r = subprocess.run(["nsenter", "-t", str(pid), "-m", "dd",
                        "if=/dev/zero", "of=%s/fill" % mnt, "bs=4k"],
                       capture_output=True, text=True)
    log("filled natscope's file system: %s" % r.stderr.strip()
        .splitlines()[-1:])
    try:
        wait_for("a write failing on the full file system",
                 lambda: "full" in text(), 40)
    except nslab.LabError as e:
        fail.add("%s\n%s" % (e, text()))
        lab.stop(sh)
        return
    os.kill(pid, 15)
    try:
        sh.wait(10)
    except subprocess.TimeoutExpired:
        lab.stop(sh)
    out = text()
    log("natscope on a full file system, stopped:\n" + out[-800:])
    fail.check("=== rc 1" in out, "SIGTERM with a failing final write: "
               "exit status not 1: %r" % out[-300:])
    fail.check("final write" in out and "failed" in out,
               "the log does not say the final write failed: %r"
               % out[-600:])


def main(argv):
    nslab.require_lab_tools()
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            nslab.skip("%s not found in PATH" % tool)
    if not os.access(CTGEN, os.X_OK):
        nslab.skip("ctgen not built (%s)" % CTGEN)
    fail = nslab.Failures()
    work = tempfile.mkdtemp(prefix="natscope-e2e-db-")

    def step(fn, *args):
        """Runs one test; a LabError fails it and the next one runs."""
        try:
            return fn(*args)
        except nslab.LabError as e:
            fail.add("%s: %s" % (fn.__name__, e))
            return None

    with nslab.Lab() as lab:
        try:
            lab.add_ns("gw")
            r = lab.run("gw", CTGEN, "--count", str(ENTRIES),
                        "--public-ips", "2", "--dests", "16",
                        "--timeout", "600")
            log("ctgen: %s" % r.stdout.strip())
            db = step(test_one_writer, lab, fail, work)
            if db:
                step(test_failed_start, lab, fail, work, db)
            step(test_foreign_delete, lab, fail, work)
            step(test_corrupt_running, lab, fail, work)
            if db:
                step(test_filesystems, lab, fail, work, db)
            step(test_final_write_fails, lab, fail, work)
        except nslab.LabError as e:
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
