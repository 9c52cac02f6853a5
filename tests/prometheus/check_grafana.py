#!/usr/bin/env python3
"""check_grafana - deploy/grafana/natscope-fleet.json, offline (no Grafana
runs here):

  1. it is a dashboard: title, uid, panels each with the ${datasource}
     variable and at least one query;
  2. every PromQL expression in it (panels, annotations, the node
     variable) parses: they are written out as recording rules and loaded
     by a real Prometheus's `promtool check rules`;
  3. every series it names exists: a family natscope's own /metrics has
     (`natscope serve` over a capture imported here), a recording rule of
     deploy/prometheus/natscope-rules.yml, or Prometheus's up and ALERTS;
  4. every link into a node's natscope opens a page natscope serves
     (asked of that same `natscope serve` as a browser would).

  check_grafana.py DASHBOARD RULES NATSCOPE CAPTURE

Exit 0 pass, 1 fail, 77 skip (no promtool: tools/deps.sh test installs
Debian's prometheus).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+|"
                  r"natscope_[a-zA-Z0-9_]+|up|ALERTS)\b")


def exprs(dash):
    out = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            out.append(("panel %r" % p.get("title"), t.get("expr", "")))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(("annotation %r" % a.get("name"), a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"label_values\((\w+)", q or "")
        if m:
            out.append(("variable %r" % v.get("name"), m.group(1)))
    return out


def links(dash):
    found = []

    def walk(o):
        if isinstance(o, dict):
            if "url" in o and isinstance(o["url"], str):
                found.append(o["url"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash.get("panels", []))
    return found


def main(argv):
    dash_path, rules_path, natscope, capture = argv[1:5]
    promtool = shutil.which("promtool")
    if not promtool:
        print("SKIP: no promtool (tools/deps.sh test installs prometheus)")
        return 77
    bad = []
    dash = json.load(open(dash_path))
    for k in ("title", "uid", "panels", "templating"):
        if not dash.get(k):
            bad.append("the dashboard has no %s" % k)
    for p in dash.get("panels", []):
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            bad.append("panel %r does not use ${datasource}" % p.get("title"))
        if not p.get("targets"):
            bad.append("panel %r has no query" % p.get("title"))

    work = tempfile.mkdtemp(prefix="natscope-grafana-")
    try:
        # 2. every expression parses, as Prometheus reads it
        es = exprs(dash)
        rules = os.path.join(work, "exprs.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: grafana\n    rules:\n")
            for i, (where, e) in enumerate(es):
                e = e.replace("$instance", ".*")
                f.write("      - record: grafana:check:%d\n" % i)
                f.write("        expr: %s\n" % json.dumps(e))
        r = subprocess.run([promtool, "check", "rules", rules],
                           capture_output=True, text=True)
        if r.returncode != 0:
            bad.append("promtool check rules: %s" % (r.stdout + r.stderr))

        # 3. every series exists
        db = os.path.join(work, "n.db")
        subprocess.run([natscope, "import", "--db", db, capture],
                       capture_output=True, check=True)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        srv = subprocess.Popen([natscope, "serve", "--db", db, "--listen",
                                "127.0.0.1:%d" % port],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            base = "http://127.0.0.1:%d" % port
            text = None
            for _ in range(50):
                try:
                    text = urllib.request.urlopen(base + "/metrics",
                                                  timeout=3).read().decode()
                    break
                except OSError:
                    time.sleep(0.1)
            have = set(re.findall(r"^# TYPE (\S+)", text or "", re.M))
            have |= {h + suf for h in have
                     for suf in ("_bucket", "_sum", "_count")}
            have |= set(re.findall(r"^\s+- record: (\S+)",
                                   open(rules_path).read(), re.M))
            have |= {"up", "ALERTS"}
            for where, e in es:
                for n in NAME.findall(e):
                    if n not in have:
                        bad.append("%s names %s, which neither natscope's "
                                   "/metrics nor the rules have" % (where, n))
            # 4. the links into a node's natscope
            for u in links(dash):
                path = re.sub(r"^http://\$\{[^}]+\}", "", u)
                path = re.sub(r"\$\{__data\.fields\.public_ip\}",
                              "203.0.113.1", path)
                path = re.sub(r"\$\{[^}]+\}", "tcp", path).split("?")[0]
                req = urllib.request.Request(base + (path or "/"), headers={
                    "Accept": "text/html"})
                try:
                    code = urllib.request.urlopen(req, timeout=5).status
                except urllib.error.HTTPError as e:
                    code = e.code
                if code != 200:
                    bad.append("link %s: natscope answers %s to %s"
                               % (u, code, path))
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for b in bad:
        print("check_grafana: " + b)
    print("check_grafana: %s (%d expressions, %d links)"
          % ("FAIL" if bad else "ok", len(es), len(links(dash))))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
