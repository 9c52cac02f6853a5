#!/usr/bin/env python3
"""test_listen - how the API listens and whom it answers (issue 9), over
real sockets with `natscope serve` on a database imported from a real
capture (the same flags are `natscope run`'s: cli/net.c parses both).

  1. --listen as users type it: ":PORT" answers on 127.0.0.1 and ::1,
     "localhost:PORT", several --listen at once; a bad one exits 2.
  2. --auth-token-file: 401 with WWW-Authenticate without the token or
     with a wrong one (shorter, longer, same length), 200 with it;
     --auth-open /healthz,/metrics leaves those two open; SIGHUP reloads
     the file (old token refused, new one taken), and an unreadable file
     at SIGHUP keeps the token in use; a token file anyone can read is
     refused at start (exit 1).
  2b. The login cookie, for browsers (they cannot send the header): a
     page asked for without the token gets 401 with the login form,
     which comes back to the very URL asked for (its query kept, and
     escaped); /login with the wrong token 401 and nothing set; with the
     token 303 to that URL and an HttpOnly SameSite=Lax cookie the API
     then takes; a tampered cookie, an expired one, one from another
     port's natscope and a cross-origin form are refused; "next" cannot
     leave the origin; /logout removes it; a new token (SIGHUP)
     invalidates every cookie made with the old one.  Over TLS the
     cookie is Secure.
  3. --tls-cert/--tls-key: HTTPS with a certificate made here (openssl),
     verified by the client; plain HTTP to that port gets no answer.
  5. Settings from a file (--config) and NATSCOPE_* variables, with the
     precedence flags > environment > file; an unknown setting exits 2
     naming FILE:LINE; --log-format json gives one JSON object a line,
     --log-level warning drops the info lines.
  4. Limits: 200 clients from 127.0.0.2 that trickle their headers and
     never finish, and a flood of requests from 127.0.0.3: a probe from
     127.0.0.1 is answered within a second throughout; at most
     WEB_PER_IP_CONNECTIONS of the slow ones are held; after the idle
     timeout they are closed.

Exit 0 pass, 1 fail.
"""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("NATSCOPE_BIN", "/work/main/build/natscope")
FIX = os.environ.get("NATSCOPE_FIXTURES",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "..", "fixtures"))
PER_IP, TIMEOUT_S = 16, 10  # web.h WEB_PER_IP_CONNECTIONS, WEB_TIMEOUT_S
FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILS.append(what)
    return ok


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Serve:
    def __init__(self, db, *flags):
        self.p = subprocess.Popen([BIN, "serve", "--db", db] + list(flags),
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.out = ""

    def wait_up(self, host, port, ctx=None):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            if self.p.poll() is not None:
                return False
            try:
                get(host, port, "/healthz", ctx=ctx)
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.out = self.p.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.out = self.p.communicate()[0]
        return self.p.returncode


def get(host, port, path, token=None, ctx=None, src=None, timeout=5):
    """(status, headers, body) of GET path."""
    if ctx:
        c = http.client.HTTPSConnection(host, port, timeout=timeout,
                                        context=ctx)
    else:
        c = http.client.HTTPConnection(host, port, timeout=timeout,
                                       source_address=(src, 0) if src
                                       else None)
    h = {"Authorization": "Bearer " + token} if token else {}
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def request(port, method, path, body=None, headers=None, ctx=None):
    """(status, headers, body) of one request; body a dict: a form."""
    import urllib.parse
    c = (http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                     context=ctx) if ctx else
         http.client.HTTPConnection("127.0.0.1", port, timeout=5))
    h = dict(headers or {})
    data = None
    if body is not None:
        data = urllib.parse.urlencode(body)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def part_login(db, work):
    tok = os.path.join(work, "login-token")
    with open(tok, "w") as f:
        f.write("login-token-abcdef0123456789\n")
    os.chmod(tok, 0o600)
    p = free_port()
    s = Serve(db, "--listen", "127.0.0.1:%d" % p, "--auth-token-file", tok)
    if not check(s.wait_up("127.0.0.1", p), "serve with a token starts"):
        print(s.stop(), s.out)
        return
    html = {"Accept": "text/html"}
    page = "/gateway/203.0.113.1?at=2026-12-01T10:00:00Z&proto=tcp&q=<a>"
    st, hd, body = request(p, "GET", page, headers=html)
    want_next = ('value="/gateway/203.0.113.1?at=2026-12-01T10:00:00Z'
                 '&amp;proto=tcp&amp;q=%3Ca%3E"')
    check(st == 401 and b'action="/login"' in body and
          want_next.encode() in body and
          "frame-ancestors" in hd.get("Content-Security-Policy", ""),
          "a page without the token: 401 with the login form, coming back "
          "to that URL, escaped (%d %r)" % (st, body[-400:]))
    st, _, body = request(p, "GET", "/api/v1/status", headers=html)
    check(st == 401 and body.startswith(b"{"),
          "an API path wants the token still, in JSON (%d)" % st)
    check(request(p, "GET", "/ui/dash.css")[0] == 200,
          "the dashboard's files are open (the form needs its style)")
    st, hd, body = request(p, "POST", "/login",
                           {"token": "login-token-abcdef012345678X",
                            "next": "/host/198.18.0.5"})
    check(st == 401 and "Set-Cookie" not in hd and
          b"not this natscope" in body and
          b'value="/host/198.18.0.5"' in body,
          "a wrong token: 401, the form again, no cookie (%d)" % st)
    st, hd, _ = request(p, "POST", "/login",
                        {"token": "login-token-abcdef0123456789",
                         "next": "/host/198.18.0.5?at=1"},
                        {"Origin": "http://127.0.0.1:%d" % p})
    setc = hd.get("Set-Cookie", "")
    cookie = setc.split(";")[0]
    attrs = [a.strip() for a in setc.split(";")[1:]]
    check(st == 303 and hd.get("Location") == "/host/198.18.0.5?at=1" and
          cookie.startswith("natscope_%d=" % p) and "HttpOnly" in attrs and
          "SameSite=Lax" in attrs and "Path=/" in attrs and
          "Max-Age=43200" in attrs and "Secure" not in attrs,
          "the token: 303 back, an HttpOnly SameSite=Lax cookie for 12 h "
          "(%d %r %r)" % (st, hd.get("Location"), setc))
    check(request(p, "GET", "/api/v1/status", headers={"Cookie": cookie})[0]
          == 200 and request(p, "GET", page, headers=dict(
              html, Cookie=cookie))[0] == 200,
          "the cookie opens the API and the pages")
    name, val = cookie.split("=", 1)
    exp, mac = val.split(".")
    bad = {
        "tampered": "%s=%s.%s" % (name, exp, mac[:-1] +
                                  ("0" if mac[-1] != "0" else "1")),
        "a later expiry, same MAC": "%s=%d.%s" % (name, int(exp) + 1, mac),
        "expired (forged)": "%s=%d.%s" % (name, int(time.time()) - 5, mac),
        "another port's": "natscope_%d=%s" % (p + 1, val),
        "the token itself": "%s=login-token-abcdef0123456789" % name,
    }
    for what, ck in bad.items():
        st = request(p, "GET", "/api/v1/status", headers={"Cookie": ck})[0]
        check(st == 401, "a cookie %s: 401 (%d)" % (what, st))
    st, hd, _ = request(p, "POST", "/login",
                        {"token": "login-token-abcdef0123456789"},
                        {"Origin": "http://attacker.example"})
    check(st == 403 and "Set-Cookie" not in hd,
          "a login form from another origin: 403 (%d)" % st)
    for nxt in ("//attacker.example/", "https://attacker.example/",
                "/\\attacker.example", "/a\r\nSet-Cookie: x=1"):
        st, hd, _ = request(p, "POST", "/login",
                            {"token": "login-token-abcdef0123456789",
                             "next": nxt})
        check(st == 303 and hd.get("Location") == "/",
              "next=%r cannot leave the origin: Location / (%r)"
              % (nxt, hd.get("Location")))
    st, _, _ = request(p, "POST", "/login", headers={
        "Content-Type": "application/json"})
    check(st == 415, "/login without a form: 415 (%d)" % st)
    st, _, _ = request(p, "POST", "/login", {"token": "x" * 9000})
    check(st == 413, "a form over 8 KB: 413 (%d)" % st)
    st, hd, _ = request(p, "GET", "/logout", headers={"Cookie": cookie})
    check(st == 303 and hd.get("Location") == "/login" and
          "Max-Age=0" in hd.get("Set-Cookie", ""),
          "/logout removes the cookie (%d %r)" % (st, hd))
    with open(tok, "w") as f:
        f.write("login-token-the-next-one\n")
    s.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    check(request(p, "GET", "/api/v1/status", headers={"Cookie": cookie})[0]
          == 401, "a new token (SIGHUP): the old cookie is refused")
    s.stop()
    check("wrong token at /login from 127.0.0.1" in s.out,
          "a wrong token is logged with the client's address")


def part_listen(db):
    p = free_port()
    s = Serve(db, "--listen", ":%d" % p)
    up = check(s.wait_up("127.0.0.1", p), ":PORT answers on 127.0.0.1")
    if up and have_ipv6_loopback():
        check(get("::1", p, "/healthz")[0] in (200, 503),
              ":PORT answers on ::1 too")
    s.stop()
    p1, p2 = free_port(), free_port()
    s = Serve(db, "--listen", "localhost:%d" % p1, "--listen",
              "127.0.0.1:%d" % p2)
    check(s.wait_up("127.0.0.1", p1) and s.wait_up("127.0.0.1", p2),
          "two --listen, one a name: both answer")
    s.stop()
    r = subprocess.run([BIN, "serve", "--db", db, "--listen", "::1:9628"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "--listen '::1:9628'" in r.stderr,
          "an IPv6 address without brackets: exit 2 naming it (%d %r)"
          % (r.returncode, r.stderr))


def part_token(db, work):
    tok = os.path.join(work, "token")
    with open(tok, "w") as f:
        f.write("  first-token-0123456789  \nignored second line\n")
    os.chmod(tok, 0o600)
    p = free_port()
    s = Serve(db, "--listen", "127.0.0.1:%d" % p, "--auth-token-file", tok,
              "--auth-open", "/healthz,/metrics")
    if not check(s.wait_up("127.0.0.1", p), "serve with a token starts"):
        print(s.stop(), s.out)
        return
    st, hd, _ = get("127.0.0.1", p, "/api/v1/status")
    check(st == 401 and hd.get("WWW-Authenticate", "").startswith("Bearer"),
          "no token: 401 with WWW-Authenticate (%d %s)" % (st, hd))
    for bad in ("first-token", "first-token-0123456789X",
                "first-token-0123456788"):
        check(get("127.0.0.1", p, "/api/v1/status", bad)[0] == 401,
              "a wrong token (%r): 401" % bad)
    check(get("127.0.0.1", p, "/api/v1/status",
              "first-token-0123456789")[0] == 200,
          "the token, trimmed of white space: 200")
    # (healthz says 503 "stopped" of an imported file: not 401)
    hz, mt = get("127.0.0.1", p, "/healthz")[0], get("127.0.0.1", p,
                                                   "/metrics")[0]
    check(hz == 503 and mt == 200, "--auth-open: /healthz and /metrics "
          "without the token (%d, %d)" % (hz, mt))
    check(get("127.0.0.1", p, "/api/v1/")[0] == 401,
          "the index is not open")
    with open(tok, "w") as f:
        f.write("second-token\n")
    s.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    check(get("127.0.0.1", p, "/api/v1/status",
              "first-token-0123456789")[0] == 401 and
          get("127.0.0.1", p, "/api/v1/status", "second-token")[0] == 200,
          "SIGHUP: the new token, not the old")
    os.chmod(tok, 0o644)  # now anyone can read it: refused, old one kept
    s.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    check(s.p.poll() is None and
          get("127.0.0.1", p, "/api/v1/status", "second-token")[0] == 200,
          "SIGHUP with a file it must refuse: still running, token kept")
    rc = s.stop()
    check(rc == 0 and "kept the token in use" in s.out,
          "that is logged, and SIGTERM exits 0 (%d)" % rc)
    r = subprocess.run([BIN, "serve", "--db", db, "--listen",
                        "127.0.0.1:%d" % free_port(), "--auth-token-file",
                        tok], capture_output=True, text=True, timeout=10)
    check(r.returncode == 1 and "readable by anyone" in r.stderr,
          "a world-readable token file: exit 1 (%d %r)"
          % (r.returncode, r.stderr[-200:]))
    r = subprocess.run([BIN, "serve", "--db", db, "--auth-open",
                        "/healthz"], capture_output=True, text=True,
                       timeout=10)
    check(r.returncode == 2, "--auth-open without a token file: exit 2")


def part_tls(db, work):
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work,
                                                              "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days",
                        "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, text=True)
    if not check(r.returncode == 0, "openssl made a certificate: %s"
                 % r.stderr[-300:]):
        return
    tok = os.path.join(work, "tls-token")
    with open(tok, "w") as f:
        f.write("tls-token\n")
    os.chmod(tok, 0o600)
    p = free_port()
    s = Serve(db, "--listen", "127.0.0.1:%d" % p, "--tls-cert", cert,
              "--tls-key", key, "--auth-token-file", tok, "--auth-open",
              "/healthz")
    ctx = ssl.create_default_context(cafile=cert)
    if check(s.wait_up("127.0.0.1", p, ctx), "HTTPS answers, the "
             "certificate verified"):
        st, _, body = get("127.0.0.1", p, "/api/v1/status", "tls-token",
                          ctx=ctx)
        check(st == 200 and json.loads(body).get("state") == "stopped",
              "an HTTPS answer: %d" % st)
        st, hd, _ = request(p, "POST", "/login", {"token": "tls-token"},
                            ctx=ctx)
        check(st == 303 and "; Secure" in hd.get("Set-Cookie", ""),
              "over TLS the login cookie is Secure (%d %r)"
              % (st, hd.get("Set-Cookie")))
        try:
            st = get("127.0.0.1", p, "/healthz", timeout=3)[0]
        except (OSError, http.client.HTTPException):
            st = None
        check(st is None, "plain HTTP to the TLS port gets no answer")
    s.stop()


def part_limits(db):
    p = free_port()
    s = Serve(db, "--listen", "127.0.0.1:%d" % p)
    if not check(s.wait_up("127.0.0.1", p), "serve for the limits"):
        return
    slow = []
    for _ in range(200):
        c = socket.socket()
        c.settimeout(2)
        c.bind(("127.0.0.2", 0))
        try:
            c.connect(("127.0.0.1", p))
            c.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
            slow.append(c)
        except OSError:
            c.close()
    stop = threading.Event()
    flood_n = [0]

    def flood():
        while not stop.is_set():
            try:
                get("127.0.0.1", p, "/api/v1/gateways", src="127.0.0.3",
                    timeout=2)
                flood_n[0] += 1
            except (OSError, http.client.HTTPException):
                pass
    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    worst = 0.0
    t_end = time.monotonic() + 4
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            st = get("127.0.0.1", p, "/healthz", src="127.0.0.1")[0]
        except (OSError, http.client.HTTPException):
            st = None
        worst = max(worst, time.monotonic() - t0)
        check(st in (200, 503), "the probe is answered during the attack")
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    check(worst < 1.0, "the probe's slowest answer %.3f s (< 1 s), beside "
          "200 slow clients and a flood of %d requests" % (worst,
                                                          flood_n[0]))

    def held():
        alive = 0
        for c in slow:
            try:
                c.settimeout(0.05)
                if c.recv(1, socket.MSG_PEEK) == b"":
                    continue  # closed by the server
            except socket.timeout:
                pass  # still open, nothing sent
            except OSError:
                continue
            alive += 1
        return alive
    n = held()
    check(n <= PER_IP, "at most %d slow connections from one address are "
          "held (%d of %d)" % (PER_IP, n, len(slow)))
    time.sleep(TIMEOUT_S + 3)
    n = held()
    check(n == 0, "after %d s idle they are closed (%d left)"
          % (TIMEOUT_S, n))
    for c in slow:
        c.close()
    s.stop()


def part_config(db, work):
    conf = os.path.join(work, "natscope.conf")
    p1, p2, p3 = free_port(), free_port(), free_port()
    with open(conf, "w") as f:
        f.write("# a comment\ndb = %s\nlisten = 127.0.0.1:%d\n"
                "log-format json   # one object a line\n" % (db, p1))
    s = Serve(db, "--config", conf)  # --db given twice: the flag wins
    up = check(s.wait_up("127.0.0.1", p1), "the file's listen")
    s.stop()
    lines = [line for line in s.out.splitlines() if line.strip()]
    try:
        objs = [json.loads(line) for line in lines]
    except ValueError:
        objs = []
    check(up and objs and all(set(o) >= {"time", "prog", "level", "msg"}
                              for o in objs),
          "--log-format json from the file: every line a JSON object "
          "(%d lines)" % len(lines))
    env = dict(os.environ, NATSCOPE_LISTEN="127.0.0.1:%d 127.0.0.1:%d"
               % (p2, p3), NATSCOPE_LOG_LEVEL="warning")
    p = subprocess.Popen([BIN, "serve", "--config", conf], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    s = Serve.__new__(Serve)
    s.p, s.out = p, ""
    ok = s.wait_up("127.0.0.1", p2) and s.wait_up("127.0.0.1", p3)
    try:
        get("127.0.0.1", p1, "/healthz", timeout=1)
        file_listen = True
    except OSError:
        file_listen = False
    s.stop()
    check(ok and not file_listen, "NATSCOPE_LISTEN (two) overrides the "
          "file's listen")
    check('"level":"info"' not in s.out, "NATSCOPE_LOG_LEVEL=warning: no "
          "info line")
    p4 = free_port()
    env = dict(os.environ, NATSCOPE_LISTEN="127.0.0.1:%d" % p2)
    p = subprocess.Popen([BIN, "serve", "--config", conf, "--listen",
                          "127.0.0.1:%d" % p4], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    s = Serve.__new__(Serve)
    s.p, s.out = p, ""
    check(s.wait_up("127.0.0.1", p4), "--listen on the command line "
          "overrides the environment")
    s.stop()
    with open(conf, "a") as f:
        f.write("no-such-setting = 1\n")
    r = subprocess.run([BIN, "serve", "--config", conf], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 2 and "%s:5: unknown setting 'no-such-setting'"
          % conf in r.stderr, "an unknown setting: exit 2 with FILE:LINE "
          "(%d %r)" % (r.returncode, r.stderr))


def main():
    work = tempfile.mkdtemp(prefix="natscope-listen-")
    db = os.path.join(work, "n.db")
    r = subprocess.run([BIN, "import", "--db", db,
                        os.path.join(FIX, "conntrack-L.txt")],
                       capture_output=True, text=True, timeout=60)
    if not check(r.returncode == 0, "import a capture: %s" % r.stderr):
        return 1
    part_listen(db)
    part_token(db, work)
    part_login(db, work)
    part_tls(db, work)
    part_config(db, work)
    part_limits(db)
    print("test_listen: %s" % ("FAIL: %d" % len(FAILS) if FAILS
                               else "PASS"))
    if not FAILS:
        subprocess.run(["rm", "-rf", work])
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
