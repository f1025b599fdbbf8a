#!/usr/bin/env bash
# make lint: every file the README's commands create in the work tree is
# ignored by git, so `git add .` can never commit a private key or a build.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for f in owner.key fw.key command.key var/fw.key device.key tls/client.pem sheet.png var/demo/sheet.png \
  bin/aibo-privacyd var/data/state.db build/aibo-privacyd_1.0_arm64.deb aibo-privacyd_1.0_amd64.deb; do
  if ! git check-ignore -q --no-index "$f"; then
    echo "check-ignored: $f is not in .gitignore" >&2
    status=1
  fi
done
exit $status
