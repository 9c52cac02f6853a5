#!/usr/bin/env bash
# tools/deps.sh - install what natscope needs, from Debian packages only.
#   tools/deps.sh build   libraries and tools to build natscope, and the
#                         dashboard's npm packages (web/ui, `npm ci` from
#                         its pinned lockfile: uPlot is compiled into the
#                         binary)
#   tools/deps.sh test    + what the tests need (cmocka, python3, nftables,
#                         conntrack, iproute2, ping, curl, chromium for the
#                         browser tests, driven by web/ui's playwright-core,
#                         prometheus for promtool and test_metrics' server)
#   tools/deps.sh bench   + what the benchmark needs
# Installs only what is missing.  Debian/Ubuntu only: elsewhere it lists
# the packages and stops.
set -euo pipefail

want=(build-essential cmake pkg-config libmnl-dev libnetfilter-conntrack-dev
      libnfnetlink-dev libsqlite3-dev libmicrohttpd-dev libexpat1-dev
      libcurl4-openssl-dev libjansson-dev libzstd-dev libsystemd-dev
      libcap-ng-dev libgnutls28-dev)
case "${1:-build}" in
  build) ;;
  test)  want+=(libcmocka-dev python3 nftables conntrack iproute2 iputils-ping
                procps curl sqlite3 chromium prometheus
                groff-base dpkg-dev systemd openssl) ;; # the man page, the package, the unit, a TLS certificate; prometheus: promtool, and a server for test_metrics
  bench) want+=(python3 nftables conntrack iproute2 procps sqlite3
                ulogd2 ulogd2-sqlite3) ;; # ulogd2: the mapping log's peer
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

# npm packages from a pinned lockfile, once (again when the lockfile changes).
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "natscope: npm ci in $dir" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
}
# web/ui: uPlot, compiled into the binary (and playwright-core for the
# browser test); deploy/tools: the offline checks of deploy/ (tests only).
npm_steps() {
  local top
  top="$(cd "$(dirname "$0")/.." && pwd)"
  npm_ci "$top/web/ui"
  case "${1:-build}" in
    test) npm_ci "$top/deploy/tools" ;;
  esac
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "natscope: this is not a Debian/Ubuntu system; install the equivalents of:" >&2
  echo "  ${want[*]}" >&2
  exit 1
fi

# Node.js and npm may come from Debian or from elsewhere (NodeSource):
# any working npm will do, Debian's is installed only when there is none.
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  npm_steps "${1:-build}"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "natscope: missing packages: ${missing[*]}" >&2
  echo "natscope: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "natscope: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages with a service (ulogd2) must not start it: the benchmark runs
# its own copy in a throw-away namespace.  policy-rc.d exit 101 forbids
# every service start during this install; ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq || apt-get update
apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_steps "${1:-build}"
