#!/usr/bin/env bash
# make demo: a local broker, the daemon with configs/dev.yaml (fresh state
# under ./var/demo), and scripts/demo playing the app and the cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf var/demo
mkdir -p var/demo/spool/photos var/demo/spool/frames
sed -e 's|\./var/data|./var/demo/data|; s|\./var/spool|./var/demo/spool|; s|\./var/diag.sock|./var/demo/diag.sock|; s|log_level: debug|log_level: warn|' \
  configs/dev.yaml > var/demo/config.yaml
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c configs/mosquitto-dev.conf > var/demo/broker.log 2>&1 &
broker=$!
bin/aibo-privacyd -config var/demo/config.yaml 2> var/demo/daemon.log &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; kill $broker 2>/dev/null; wait $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  bin/aiboctl -socket var/demo/diag.sock health >/dev/null 2>&1 && break
  sleep 0.1
done
go run ./scripts/demo -spool var/demo/spool -cloud var/demo/cloud
echo
bin/aiboctl -socket var/demo/diag.sock status | grep -E 'photos_today|outbox|features.auto_photo'
echo "daemon log: var/demo/daemon.log; uploads: var/demo/cloud/"
