#!/usr/bin/env bash
# tools/deps.sh - install what natscope needs, from Debian packages only.
#   tools/deps.sh build   libraries and tools to build natscope
#   tools/deps.sh test    + what the tests need (cmocka, python3, nftables,
#                         conntrack, iproute2, ping, curl)
#   tools/deps.sh bench   + what the benchmark needs
# Installs only what is missing.  Debian/Ubuntu only: elsewhere it lists
# the packages and stops.
set -euo pipefail

want=(build-essential cmake pkg-config libmnl-dev libnetfilter-conntrack-dev
      libnfnetlink-dev libsqlite3-dev libmicrohttpd-dev libexpat1-dev
      libcurl4-openssl-dev libjansson-dev libzstd-dev libcap-ng-dev)
case "${1:-build}" in
  build) ;;
  test)  want+=(libcmocka-dev python3 nftables conntrack iproute2 iputils-ping
                procps curl sqlite3) ;;
  bench) want+=(python3 nftables conntrack iproute2 procps sqlite3
                ulogd2 ulogd2-sqlite3) ;; # ulogd2: the mapping log's peer
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "natscope: this is not a Debian/Ubuntu system; install the equivalents of:" >&2
  echo "  ${want[*]}" >&2
  exit 1
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
