#!/usr/bin/env python3
"""test_login - the dashboard behind a bearer token, in a real browser
(issue 9: a DaemonSet's natscope wants the token, and a browser cannot
send the header, so Grafana's drill-down links need a way in).

`natscope serve` on a database imported from a real capture, with
--auth-token-file, on a free port of 127.0.0.1; tests/e2e/login.js drives
Debian's Chromium (playwright-core):

  1. a gateway page's URL (a link pasted in an incident channel) gives
     the login form (401), whose "next" is that URL;
  2. a wrong token: the form again with its error, no way in;
  3. the token: back at that very URL, the page drawn with the API's
     figures (the page's own API requests carry the cookie); the cookie
     is HttpOnly, SameSite=Lax and is not the token;
  4. a link on another site (localhost:Q, as Grafana's) to a host page:
     opens without the form (SameSite=Lax lets a top-level navigation
     carry the cookie);
  5. /logout, then the page again: the form.
Everywhere: no page error, no failed request, no request that leaves
the two origins; the only console errors are the 401s of the form.

Without Chromium, node or web/ui/node_modules it FAILS naming
tools/deps.sh test; not root: skipped (exit 77).
"""

import functools
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_dashboard  # noqa: E402  (require_browser, CHROMIUM)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("NATSCOPE_BIN", "/work/main/build/natscope")
FIX = os.environ.get("NATSCOPE_FIXTURES", os.path.join(HERE, "..",
                                                       "fixtures"))
SHOTS = os.path.join(os.environ.get("NATSCOPE_ARTIFACTS",
                                    os.path.join(os.getcwd(),
                                                 "e2e-artifacts")), "login")
TOKEN = "dashboard-token-0123456789abcdef"
FAILS = []


def check(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
    if not ok:
        FAILS.append(what)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def main():
    if os.geteuid() != 0:
        print("test_login: skipped (not root: Chromium runs --no-sandbox)")
        return 77
    test_dashboard.require_browser()
    os.makedirs(SHOTS, exist_ok=True)
    work = tempfile.mkdtemp(prefix="natscope-login-")
    db, tok = os.path.join(work, "n.db"), os.path.join(work, "token")
    r = subprocess.run([BIN, "import", "--db", db,
                        os.path.join(FIX, "conntrack-L.txt")],
                       capture_output=True, text=True, timeout=60)
    if not check(r.returncode == 0, "import a capture: %s" % r.stderr[-300:]):
        return 1
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    port, other = free_port(), free_port()
    # the other site: a page with a link to this natscope, as Grafana's
    with open(os.path.join(work, "links.html"), "w") as f:
        f.write('<!DOCTYPE html><title>fleet</title><a id="drill" '
                'href="http://127.0.0.1:%d/host/198.51.100.5">node</a>\n'
                % port)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass
    handler = functools.partial(Quiet, directory=work)
    site = http.server.ThreadingHTTPServer(("127.0.0.1", other), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    p = subprocess.Popen([BIN, "serve", "--db", db, "--listen",
                          "127.0.0.1:%d" % port, "--auth-token-file", tok],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        for _ in range(100):
            try:
                api(port, "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        st, gws = api(port, "/api/v1/gateways")
        g = [x for x in (gws or {}).get("gateways", [])
             if x["public_ip"] == "203.0.113.1" and x["proto"] == "tcp"]
        if not check(st == 200 and len(g) == 1,
                     "the API answers with the token: 203.0.113.1 tcp"):
            return 1
        page = "/gateway/203.0.113.1?proto=tcp"
        cfg = {"base": "http://127.0.0.1:%d" % port,
               "other": "http://localhost:%d" % other,
               "chromium": test_dashboard.CHROMIUM, "token": TOKEN,
               "page": page, "shots": SHOTS}
        r = subprocess.run(["node", os.path.join(HERE, "login.js"),
                            json.dumps(cfg)], capture_output=True,
                           text=True, timeout=180)
        if not check(r.returncode == 0, "login.js ran (exit %d) %s"
                     % (r.returncode, r.stderr[-500:])):
            return 1
        rep = json.loads(r.stdout)
        s = rep["steps"]
        a = s.get("asked", {})
        check(a.get("status") == 401 and a.get("form") and
              a.get("next") == page and a.get("url") == page,
              "the page's URL without the token: the login form (401), "
              "next = that URL: %r" % a)
        w = s.get("wrong", {})
        check(w.get("form") and w.get("url") == "/login" and
              "not this natscope" in (w.get("error") or "") and
              w.get("next") == page,
              "a wrong token: the form again with its error: %r" % w)
        rt = s.get("right", {})
        # (an imported capture has no history: the chart says so)
        errs = [e for e in rt.get("errors") or []
                if not e.startswith("no history")]
        check(rt.get("url") == page and not rt.get("form") and
              "203.0.113.1" in (rt.get("h1") or "") and
              rt.get("errors") is not None and not errs,
              "the token: back at the page, drawn without error: %r"
              % {k: rt.get(k) for k in ("url", "h1", "errors", "form")})
        want = str(g[0].get("mappings"))
        shown = (rt.get("facts") or {}).get("mappings", "").replace(",", "")
        check(shown == want, "its mappings equal the API's (%r, %r)"
              % (shown, want))
        ck = s.get("cookies", [])
        check(len(ck) == 1 and ck[0]["name"] == "natscope_%d" % port and
              ck[0]["httpOnly"] and ck[0]["sameSite"] == "Lax" and
              not ck[0]["value_is_token"],
              "one cookie, HttpOnly, SameSite=Lax, not the token: %r" % ck)
        ln = s.get("linked", {})
        check(ln.get("url") == "/host/198.51.100.5" and not ln.get("form")
              and "198.51.100.5" in (ln.get("h1") or ""),
              "a link from another site (as Grafana's) opens the host page "
              "without the form: %r" % {k: ln.get(k) for k in
                                        ("url", "h1", "form")})
        lo, al = s.get("logout", {}), s.get("after_logout", {})
        check(lo.get("form") and lo.get("url") == "/login" and
              al.get("form") and al.get("next") == page,
              "/logout: the form, and the page wants the token again")
        check(not rep["errors"], "no page error: %r" % rep["errors"][:3])
        # (a favicon still loading when the form is sent is aborted)
        failed = [f for f in rep["failed"]
                  if not ("favicon" in f and "ERR_ABORTED" in f)]
        check(not failed, "no failed request: %r" % failed[:3])
        origins = ("http://127.0.0.1:%d/" % port,
                   "http://localhost:%d/" % other)
        away = [u for u in rep["requests"] if not u.startswith(origins)]
        check(not away, "no request leaves the two origins: %r" % away[:3])
        bad = [m for m in rep["console"] if m["type"] == "error" and
               m["url"].startswith(origins[0]) and "401" not in m["text"]
               and "/api/v1/series" not in m["url"]]
        check(not bad, "no console error but the form's 401s (and the "
              "series' 404: no history): %r" % bad[:3])
    finally:
        p.terminate()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
        site.shutdown()
    print("test_login: %s" % ("FAIL: %d" % len(FAILS) if FAILS else "PASS"))
    if not FAILS:
        subprocess.run(["rm", "-rf", work])
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
