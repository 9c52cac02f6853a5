#!/bin/sh
# check_rules.sh DIR - deploy/prometheus checked by a real Prometheus's
# promtool: the rules load (check rules), behave as their unit tests say
# (test rules) and the scrape config is valid (check config).  Exit 77
# (skipped) without promtool: tools/deps.sh test installs it (Debian's
# prometheus package).
set -eu
dir=${1:?usage: check_rules.sh deploy/prometheus}
if ! command -v promtool >/dev/null 2>&1; then
	echo "SKIP: no promtool (tools/deps.sh test installs prometheus)" >&2
	exit 77
fi
cd "$dir"
promtool check rules natscope-rules.yml
promtool test rules natscope-rules.test.yml
promtool check config prometheus.yml
