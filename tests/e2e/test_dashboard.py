#!/usr/bin/env python3
"""test_dashboard - the dashboard's overview in a real browser.

Debian's Chromium, driven by playwright-core from web/ui/node_modules
(tests/e2e/browser.js; no browser download), loads natscope's overview
inside the NAT lab's gateway namespace, where nothing but natscope can be
reached:

  live   natscope runs on the lab with real TCP/UDP/ICMP traffic (IPv4 and
         IPv6) and two ctgen bursts that fill one bucket past the critical
         threshold (59,000 of 64,512) and one past the warn threshold
         (47,000); once the figures stand still, the page is loaded with
         and without JavaScript;
  serve  the same database, copied after natscope stopped, under
         `natscope serve --db`.

Each time: every row's figures equal /api/v1/gateways (ports, port space,
worst bucket and its fill, hosts, mappings, TIME_WAIT share, pressure),
the rows are in the API's order of pressure with the colours of the
thresholds, the header says the status' state, coverage and kernel
counters; no console error, no page error, no failed request, no request
to any other origin; with script, every row has its uPlot sparkline; on a
phone-sized screen nothing scrolls sideways.  Screenshots go to
$NATSCOPE_ARTIFACTS/dashboard (the build folder under ctest).

Without Chromium, node or web/ui/node_modules the test FAILS, saying what
to install (tools/deps.sh test does); not root: skipped (exit 77).
  --keep   keep the temporary directory (database, logs) on success.
"""

import http.client
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import nslab  # noqa: E402
from nslab import log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BROWSER_JS = os.path.join(HERE, "browser.js")
UI_MODULES = os.path.join(REPO, "web", "ui", "node_modules")
CHROMIUM = os.environ.get("NATSCOPE_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.path.join(os.environ.get("NATSCOPE_ARTIFACTS",
                                    os.path.join(os.getcwd(),
                                                 "e2e-artifacts")),
                     "dashboard")
PORT = 19701        # natscope run, in the gateway namespace
SERVE_PORT = 19702  # natscope serve on the copy, there too
S4, S6 = "203.0.113.2", "2001:db8:2::2"
CRIT_IP, WARN_IP = "203.0.113.20", "203.0.113.21"  # ctgen --public-base
WARN, CRITICAL = 0.7, 0.9


def require_browser():
    """Exits 1 (a failure, not a skip) when what the test drives is
    missing: CI installs it, so its absence is a broken setup."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("%s (Debian's chromium package)" % CHROMIUM)
    if shutil.which("node") is None:
        missing.append("node (Node.js)")
    if not os.path.isdir(os.path.join(UI_MODULES, "playwright-core")):
        missing.append("%s/playwright-core (npm ci in web/ui)" % UI_MODULES)
    if missing:
        sys.stderr.write("FAIL: the browser test cannot run: missing %s.\n"
                         "Install them with: tools/deps.sh test\n"
                         % "; ".join(missing))
        sys.exit(1)


# ------------------------------------------------------------ HTTP, JSON

def get(lab, short, port, path, want=200):
    """GET path from 127.0.0.1:port in namespace short: parsed JSON."""
    with lab.inside(short):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.connect()
    try:
        c.request("GET", path, headers={"Accept": "application/json"})
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    if r.status != want:
        raise nslab.LabError("GET %s: %d (wanted %d): %r"
                             % (path, r.status, want, body[:300]))
    return json.loads(body)


def figures(doc):
    """The gateways of an answer without its times, for 'unchanged'."""
    return sorted(json.dumps(g, sort_keys=True)
                  for g in doc.get("gateways") or [])


def wait_still(lab, port, timeout=60):
    """Waits until the gateways read the same twice 1.5 s apart and every
    gateway has history (its sparkline's series answers 200)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        doc = get(lab, "gw", port, "/api/v1/gateways")
        if last is not None and figures(doc) == figures(last):
            to = nslab.rfc3339(doc["as_of"]) + 1
            if all(series_ok(lab, port, g, to) for g in doc["gateways"]):
                return doc
        last = doc
        time.sleep(1.5)
    raise nslab.LabError("the figures did not stand still within %d s"
                         % timeout)


def series_ok(lab, port, g, to):
    path = ("/api/v1/series?public_ip=%s&proto=%s&from=%.3f&to=%.3f"
            % (g["public_ip"], g["proto"], to - 3600, to))
    try:
        get(lab, "gw", port, path)
        return True
    except nslab.LabError:
        return False


# ------------------------------------------------------------ the truth

def ratio(part, whole):
    return part / whole if whole > 0 else 0.0


def level(r):
    return "crit" if r >= CRITICAL else "warn" if r >= WARN else "ok"


def destination(d):
    ip = d["ip"]
    text = ("[%s]" % ip if ":" in ip else ip) + ":%d" % d["port"]
    if d.get("zone"):
        text += " zone %d" % d["zone"]
    return text


def expected_rows(doc):
    """The rows the page must show for /api/v1/gateways doc, in order."""
    rows = []
    for g in doc["gateways"]:
        d = g.get("worst_destination")
        ports = ratio(g["ports_in_use"], g["port_space"])
        bucket = ratio(d["mappings"], d["capacity"]) if d else 0.0
        states = g.get("states")
        tw = (100.0 * states["time_wait"] / g["mappings"]
              if states and g["mappings"] > 0 else None)
        rows.append({
            "ip": g["public_ip"], "proto": g["proto"],
            "pressure": max(ports, bucket), "time_wait": tw,
            "ports_in_use": str(g["ports_in_use"]),
            "port_space": str(g["port_space"]),
            "worst": destination(d) if d else "none",
            "worst_mappings": str(d["mappings"]) if d else None,
            "worst_capacity": str(d["capacity"]) if d else None,
            "hosts": str(g["hosts"]), "mappings": str(g["mappings"]),
        })
    rows.sort(key=lambda r: (-r["pressure"], r["ip"], r["proto"]))
    return rows


def percent(text):
    """'73.1 %' -> 73.1; None when it is not a percentage."""
    if not text or not text.endswith(" %"):
        return None
    try:
        return float(text[:-2])
    except ValueError:
        return None


# ------------------------------------------------------------ judging

def check_visit(fail, what, v, doc, status, base, js):
    page = v["page"]
    fail.check(v["status"] == 200, "%s: status %s" % (what, v["status"]))
    csp = v["headers"].get("content-security-policy", "")
    fail.check("default-src 'self'" in csp and "unsafe" not in csp,
               "%s: Content-Security-Policy %r" % (what, csp))
    fail.check(v["headers"].get("x-content-type-options") == "nosniff",
               "%s: no X-Content-Type-Options: nosniff" % what)

    # nothing went wrong, nothing left the origin
    errors = [m for m in v["console"] if m["type"] in ("error", "assert")]
    fail.check(not errors, "%s: console errors: %s" % (what, errors))
    for m in v["console"]:
        if m["type"] == "warning":
            log("%s: console warning: %s" % (what, m["text"]))
    fail.check(not v["errors"], "%s: page errors: %s" % (what, v["errors"]))
    fail.check(not v["failed"], "%s: failed requests: %s"
               % (what, v["failed"]))
    foreign = [u for u in v["requests"] if not u.startswith(base + "/")]
    fail.check(not foreign, "%s: requests that left %s: %s"
               % (what, base, foreign))
    if js:
        fail.check(any(u.startswith(base + "/api/v1/series?")
                       for u in v["requests"]) and
                   any(u == base + "/api/v1/gateways"
                       for u in v["requests"]),
                   "%s: the script read neither gateways nor series: %s"
                   % (what, v["requests"]))
        fail.check((page["live"] or "").startswith("refreshed"),
                   "%s: the refresh line says %r" % (what, page["live"]))
    else:
        fail.check(page["live"] is None and
                   all(u.startswith(base + "/ui/") or u == base + "/"
                       for u in v["requests"]),
                   "%s: without script, something ran: %s %s"
                   % (what, page["live"], v["requests"]))

    # the header
    h = page["header"]
    cov = doc.get("coverage") or {}
    fail.check(h["state"] == status.get("state"),
               "%s: header state %r, the status says %r"
               % (what, h["state"], status.get("state")))
    fail.check((h["coverage"] or "").startswith("complete") ==
               bool(cov.get("complete")) and
               (cov.get("complete") or "NOT COMPLETE" in h["coverage"]),
               "%s: header coverage %r, the API %s"
               % (what, h["coverage"], cov))
    ct = status.get("conntrack")
    for k in ("insert_failed", "drop"):
        want = (None if not isinstance(ct, dict) else
                str(ct[k]) if ct.get(k) is not None else "unknown")
        fail.check(h[k] == want, "%s: header %s %r, the status says %r"
                   % (what, k, h[k], want))
    fail.check(h["count"] == str(len(doc["gateways"])),
               "%s: %s rows said, the API has %d"
               % (what, h["count"], len(doc["gateways"])))

    # the rows: order, figures, colours
    want = expected_rows(doc)
    got = page["rows"]
    fail.check([(r["ip"], r["proto"]) for r in got] ==
               [(r["ip"], r["proto"]) for r in want],
               "%s: rows in the order %s, by pressure %s"
               % (what, [(r["ip"], r["proto"]) for r in got],
                  [(r["ip"], r["proto"]) for r in want]))
    by_key = {(r["ip"], r["proto"]): r for r in got}
    for w in want:
        r = by_key.get((w["ip"], w["proto"]))
        if r is None:
            continue
        key = "%s %s %s" % (what, w["ip"], w["proto"])
        for k in ("ports_in_use", "port_space", "worst", "worst_mappings",
                  "worst_capacity", "hosts", "mappings"):
            fail.check(r[k] == w[k], "%s: %s shown %r, the API %r"
                       % (key, k, r[k], w[k]))
        fail.check(r["shown_ip"] == w["ip"], "%s: shown as %r"
                   % (key, r["shown_ip"]))
        p = percent(r["pressure"])
        fail.check(p is not None and abs(p - 100 * w["pressure"]) <= 0.051,
                   "%s: pressure shown %r, the API's figures give %.3f %%"
                   % (key, r["pressure"], 100 * w["pressure"]))
        if w["time_wait"] is None:
            fail.check(r["time_wait"] == "\u2014", "%s: TIME_WAIT %r for "
                       "no TCP states" % (key, r["time_wait"]))
        else:
            t = percent(r["time_wait"])
            fail.check(t is not None and abs(t - w["time_wait"]) <= 0.051,
                       "%s: TIME_WAIT shown %r, the API's states give "
                       "%.3f %%" % (key, r["time_wait"], w["time_wait"]))
        fail.check(r["cls"] == "lvl-" + level(w["pressure"]),
                   "%s: class %r at pressure %.3f" % (key, r["cls"],
                                                      w["pressure"]))
        if js:
            fail.check(r["spark"], "%s: no sparkline" % key)
    if js:
        fail.check(v.get("phone_width", 9999) <= 400,
                   "%s: %s px wide on a 390 px phone"
                   % (what, v.get("phone_width")))


def browse(lab, port, name):
    """Runs browser.js in the gateway namespace against port."""
    base = "http://127.0.0.1:%d" % port
    cfg = {"base": base, "shots": SHOTS, "name": name,
           "chromium": CHROMIUM}
    t0 = time.monotonic()
    r = lab.run("gw", "node", BROWSER_JS, json.dumps(cfg), check=False,
                timeout=240)
    if r.returncode != 0:
        raise nslab.LabError("browser.js (%s): exit %d\n%s"
                             % (name, r.returncode, r.stderr[-4000:]))
    log("%s: browsed in %.1f s, screenshots in %s"
        % (name, time.monotonic() - t0, SHOTS))
    return base, json.loads(r.stdout.strip().splitlines()[-1])


def look(lab, fail, port, name):
    """Loads the overview with and without script and checks both
    against the API, read before and after (it must not have moved)."""
    doc = wait_still(lab, port)
    status = get(lab, "gw", port, "/api/v1/status")
    base, report = browse(lab, port, name)
    after = get(lab, "gw", port, "/api/v1/gateways")
    if figures(after) != figures(doc):
        raise nslab.LabError("%s: the figures moved while the browser "
                             "read them" % name)
    for js in (True, False):
        check_visit(fail, "%s/%s" % (name, "js" if js else "nojs"),
                    report["js" if js else "nojs"], doc, status, base, js)
    return doc, report


# ------------------------------------------------------------ the run

def traffic(a):
    c1, c2 = a["c1"], a["c2"]
    c1("tcp_hold", dst=S4, port=443, n=20, tag="h")
    c1("tcp_short", dst=S4, port=443, n=30)      # TIME_WAIT
    c1("udp", dst=S4, port=53, n=10)
    c1("ping", dst=S4, ids=[4000, 4001])
    c1("tcp_hold", dst=S6, port=443, n=3, tag="h6")
    c2("tcp_hold", dst=S4, port=443, n=5, tag="h")
    c2("udp", dst=S4, port=53, n=4)


def run(lab, work, fail):
    checks.require_ctgen()
    os.makedirs(SHOTS, exist_ok=True)
    nslab.build_nat_lab(lab)
    nslab.start_servers(lab, "srv", tcp=(443,), udp=(53,))
    agents = {s: nslab.Agent(lab, s) for s in ("c1", "c2")}
    log("lab up in %s" % lab.prefix)

    ns = nslab.Natscope(lab, "gw", work, port=PORT, interval=1)
    ns.wait_status(lambda s: s.get("state") == "running", 20,
                   "state running")
    traffic(agents)
    # one bucket past critical, one past warn (ctgen's entries hold for
    # an hour; the lab's own for 600 s)
    for count, proto, base, hosts in ((59000, "tcp", 19, 4000),
                                      (47000, "udp", 20, 5000)):
        r = checks.ctgen(lab, "gw", "--count", count, "--proto", proto,
                         "--public-ips", 1, "--dests", 1, "--hosts", 1,
                         "--public-base", base, "--host-base", hosts,
                         "--seed", 90 + base)
        log("ctgen: %s %s entries in %.2f s" % (r.get("created"), proto,
                                               r.get("seconds") or 0))
    doc, report = look(lab, fail, PORT, "live")
    levels = {(r["ip"], r["proto"]): r["cls"]
              for r in report["nojs"]["page"]["rows"]}
    fail.check(levels.get((CRIT_IP, "tcp")) == "lvl-crit" and
               levels.get((WARN_IP, "udp")) == "lvl-warn",
               "live: the full buckets are not coloured: %s" % levels)
    fail.check(len(doc["gateways"]) >= 6, "live: only %d gateways: %s"
               % (len(doc["gateways"]), figures(doc)))

    # the same database, copied, under natscope serve
    code = lab.stop(ns.p)
    fail.check(code == 0, "natscope run exited with %s" % code)
    copy = os.path.join(work, "copy")
    os.makedirs(copy)
    for suffix in ("", "-wal"):
        if os.path.exists(ns.db + suffix):
            shutil.copy(ns.db + suffix,
                        os.path.join(copy, "natscope.db" + suffix))
    with open(os.path.join(work, "serve.log"), "w") as logf:
        srv = lab.spawn("gw", nslab.natscope_bin(), "serve", "--db",
                        os.path.join(copy, "natscope.db"), "--listen",
                        "127.0.0.1:%d" % SERVE_PORT, stdout=logf,
                        stderr=logf)
    deadline = time.monotonic() + 10
    while True:
        try:
            get(lab, "gw", SERVE_PORT, "/api/v1/status")
            break
        except (OSError, nslab.LabError):
            if time.monotonic() > deadline or srv.poll() is not None:
                raise nslab.LabError("natscope serve did not answer")
            time.sleep(0.2)
    doc2, report2 = look(lab, fail, SERVE_PORT, "serve")
    fail.check(report2["nojs"]["page"]["header"]["state"] == "stopped",
               "serve: the header says %r"
               % report2["nojs"]["page"]["header"]["state"])
    fail.check(figures(doc2) == figures(doc),
               "serve: the copy's figures differ from the live run's last")
    lab.stop(srv)
    return True


def main(argv):
    require_browser()
    nslab.require_lab_tools()
    work = tempfile.mkdtemp(prefix="natscope-dash-")
    fail = nslab.Failures()
    ok = False
    with nslab.Lab(prefix="nsdash") as lab:
        try:
            ok = run(lab, work, fail)
        except nslab.LabError as e:
            fail.add(str(e))
        finally:
            lab.teardown()
    if fail.items or not ok:
        log("%d failure(s); database and logs kept in %s"
            % (len(fail.items), work))
        return 1
    if "--keep" in argv:
        log("kept %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
