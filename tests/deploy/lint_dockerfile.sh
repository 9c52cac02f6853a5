#!/bin/sh
# lint_dockerfile.sh SOURCE_DIR - the Dockerfile through dockerfile-utils'
# linter (npm, pinned in deploy/tools; tools/deps.sh test installs it):
# unknown instructions, bad ports and durations, broken JSON forms.  No
# container engine runs here, so this is what checks it.
set -eu
bin="$1/deploy/tools/node_modules/.bin/dockerfile-utils"
if [ ! -x "$bin" ]; then
  echo "lint_dockerfile: $bin is missing: run tools/deps.sh test" >&2
  exit 1
fi
"$bin" lint "$1/Dockerfile"
echo "lint_dockerfile: ok"
