#!/usr/bin/env python3
"""check_man - the manual page against the program.

  check_man.py NATSCOPE PAGE

Fails (exit 1) when groff warns about PAGE, or when an option that
`natscope COMMAND --help` lists is missing from PAGE's section for that
command (so a new flag cannot ship undocumented).
"""

import re
import subprocess
import sys

COMMANDS = ("run", "serve", "import", "top", "lookup", "health")


def main():
    natscope, page = sys.argv[1], sys.argv[2]
    bad = []
    lint = subprocess.run(["groff", "-man", "-ww", "-z", page],
                          capture_output=True, text=True)
    if lint.returncode != 0 or lint.stderr.strip():
        bad.append("groff: %s" % (lint.stderr.strip() or lint.returncode))
    text = open(page).read()
    # each command's section runs from its .SS to the next .SS or .SH
    sections = {}
    for m in re.finditer(r"^\.SS natscope (\w+)\n(.*?)(?=^\.S[SH] )", text,
                         re.M | re.S):
        sections[m.group(1)] = m.group(2).replace("\\-", "-")
    for cmd in COMMANDS:
        h = subprocess.run([natscope, cmd, "--help"], capture_output=True,
                           text=True)
        opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)",
                              h.stdout + h.stderr)) - {"--help"}
        if not opts:
            bad.append("natscope %s --help lists no option" % cmd)
        sec = sections.get(cmd)
        if sec is None:
            bad.append("%s: no section '.SS natscope %s'" % (page, cmd))
            continue
        for o in sorted(opts):
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), sec):
                bad.append("%s: natscope %s %s is not documented"
                           % (page, cmd, o))
    for b in bad:
        print("check_man: " + b)
    print("check_man: %s" % ("FAIL" if bad else "ok: %d commands" %
                              len(COMMANDS)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
