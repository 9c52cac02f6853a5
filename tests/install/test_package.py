#!/usr/bin/env python3
"""test_package - the Debian package, installed and removed for real (issue 9,
"make install ... a Debian package via CPack that installs and removes
cleanly (test it in CI with dpkg)").

  1. configures a build with the package's prefix (/usr) in BUILD_DIR,
     builds natscope alone and runs `cpack -G DEB` there;
  2. the package holds the binary in /usr/sbin, the compressed manual
     page, the systemd unit naming /usr/sbin/natscope and the docs, and
     depends on the libraries the binary links (dpkg-shlibdeps);
  3. `dpkg -i`: the installed binary runs (--version), `man -w natscope`
     finds the page if man-db is there, `systemd-analyze verify` accepts
     the unit and `systemd-analyze security --offline` scores it below
     the threshold (exposure <= 2.5 of 10);
  4. `dpkg --purge`: every file it installed is gone and dpkg knows no
     natscope.

Needs root (it installs into this system); exit 77 otherwise, or when a
natscope package is already installed (it would not touch that one).
Exit 0 pass, 1 fail.

  test_package.py SOURCE_DIR BUILD_DIR
"""

import glob
import os
import shutil
import subprocess
import sys

EXPOSURE_MAX = 25  # systemd-analyze security's threshold: 2.5 of 10


def run(argv, **kw):
    print("+ " + " ".join(argv), flush=True)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def main():
    src, bdir = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        print("test_package: skipped (needs root: it installs a package)")
        return 77
    if run(["dpkg-query", "-W", "natscope"]).returncode == 0:
        print("test_package: skipped: a natscope package is installed here")
        return 77
    bad = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            bad.append(what)
        return ok

    # 1. build and pack
    r = run(["cmake", "-S", src, "-B", bdir, "-DCMAKE_INSTALL_PREFIX=/usr",
             "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
             "-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"])
    if not check(r.returncode == 0, "configure: %s" % r.stderr[-2000:]):
        return 1
    r = run(["cmake", "--build", bdir, "-j2", "--target", "natscope",
             "manpage"])
    if not check(r.returncode == 0, "build: %s" % r.stderr[-2000:]):
        return 1
    for old in glob.glob(os.path.join(bdir, "natscope_*.deb")):
        os.remove(old)
    r = run(["cpack", "-G", "DEB"], cwd=bdir)
    debs = glob.glob(os.path.join(bdir, "natscope_*.deb"))
    if not check(r.returncode == 0 and len(debs) == 1,
                 "cpack made one .deb: %s %s" % (debs, r.stderr[-2000:])):
        return 1
    deb = debs[0]

    # 2. what it holds
    listing = run(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/sbin/natscope", "./usr/share/man/man8/natscope.8.gz",
                 "./usr/lib/systemd/system/natscope.service",
                 "./usr/share/doc/natscope/README.md",
                 "./usr/share/doc/natscope/database.md"):
        check(path in listing, "the package holds %s" % path)
    info = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
    for lib in ("libsqlite3", "libmicrohttpd", "libmnl",
                "libzstd"):
        check(lib in info, "Depends names %s: %s" % (lib, info.strip()))

    # 3. installed
    try:
        r = run(["dpkg", "-i", deb])
        if not check(r.returncode == 0, "dpkg -i: %s" % r.stderr[-2000:]):
            return 1
        files = [f for f in run(["dpkg-query", "-L", "natscope"]).stdout
                 .splitlines() if f.strip()]
        r = run(["/usr/sbin/natscope", "--version"])
        check(r.returncode == 0 and r.stdout.startswith("natscope "),
              "the installed binary runs: %r" % r.stdout)
        unit = "/usr/lib/systemd/system/natscope.service"
        text = open(unit).read() if os.path.exists(unit) else ""
        check("ExecStart=/usr/sbin/natscope run " in text,
              "the unit starts /usr/sbin/natscope")
        if shutil.which("man"):
            r = run(["man", "-w", "natscope"])
            check(r.returncode == 0 and "natscope.8" in r.stdout,
                  "man -w natscope: %s%s" % (r.stdout, r.stderr))
        r = run(["systemd-analyze", "verify", unit])
        check(r.returncode == 0 and not r.stderr.strip(),
              "systemd-analyze verify: %s" % r.stderr.strip())
        r = run(["systemd-analyze", "security", "--offline=yes",
                 "--threshold=%d" % EXPOSURE_MAX, unit])
        score = [line for line in r.stdout.splitlines()
                 if "Overall exposure" in line]
        print("\n".join(score))
        check(r.returncode == 0, "systemd-analyze security: exposure "
              "within %.1f: %s" % (EXPOSURE_MAX / 10, score))
    finally:
        # 4. removed
        r = run(["dpkg", "--purge", "natscope"])
        check(r.returncode == 0, "dpkg --purge: %s" % r.stderr[-2000:])
    check(run(["dpkg-query", "-W", "natscope"]).returncode != 0,
          "dpkg knows no natscope after the purge")
    left = [f for f in files if os.path.isfile(f)]
    check(not left, "no installed file is left: %s" % left)
    print("test_package: %s" % ("FAIL" if bad else "PASS"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
