#!/usr/bin/env python3
"""test_demo - `make demo` works for a newcomer (issue 8): tools/demo.py
builds its lab, natscope answers on 198.19.254.1:9628 from this host (over
the demo's veth), a burst raises a critical bucket incident that closes,
and at the end nothing is left: no namespace of the demo, no link.

Exit 0 pass, 1 fail, 77 skip (not root).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "..", "tools", "demo.py")
URL = "http://198.19.254.1:9628"


def get(path):
    try:
        with urllib.request.urlopen(URL + path, timeout=3) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - not up yet, or gone
        return None


def main():
    if os.geteuid() != 0:
        print("test_demo: skipped (needs root)")
        return 77
    bad = []
    p = subprocess.Popen([sys.executable, DEMO, "--seconds", "45",
                          "--burst-every", "5", "--burst-hold", "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    health = incident = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and p.poll() is None:
        h = get("/healthz")
        if h and h.get("status") == "ok":
            health = h
        d = get("/api/v1/incidents")
        for i in (d or {}).get("incidents") or []:
            if (i.get("kind") == "bucket" and i.get("severity") ==
                    "critical" and i.get("closed")):
                incident = i
        if health and incident:
            break
        time.sleep(1)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    print(out)
    if not health:
        bad.append("natscope never answered /healthz ok on %s" % URL)
    if not incident:
        bad.append("no closed critical bucket incident from the burst")
    elif incident.get("peak_mappings") != 60000:
        bad.append("the burst's incident peaked at %s, not 60000"
                   % incident.get("peak_mappings"))
    if p.returncode != 0:
        bad.append("demo exited %s" % p.returncode)
    if "open %s/" % URL not in out:
        bad.append("the demo did not print the URL")
    links = subprocess.run(["ip", "link", "show", "natscope-demo"],
                           capture_output=True).returncode
    if links == 0:
        bad.append("the natscope-demo link is left")
    for b in bad:
        print("FAIL " + b)
    print("test_demo: %s" % ("FAIL" if bad else "PASS"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
