#!/usr/bin/env bash
# Starts a local Mosquitto on loopback and the daemon with configs/dev.yaml.
# Logs go to the terminal; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/data var/spool/photos var/spool/frames
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c configs/mosquitto-dev.conf &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/18830) 2>/dev/null && break
  sleep 0.1
done
echo "broker on tcp://127.0.0.1:18830; try:"
echo "  mosquitto_sub -p 18830 -t 'aibo/aibo-dev/#' -v"
echo "  mosquitto_pub -p 18830 -t aibo/aibo-dev/cmd -m '{\"id\":\"1\",\"type\":\"accept_policy\",\"payload\":{\"version\":\"2026-11\"}}'"
echo "  bin/aiboctl -socket var/diag.sock status"
bin/aibo-privacyd -config configs/dev.yaml &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; kill $broker 2>/dev/null; wait $broker 2>/dev/null' EXIT INT TERM
wait $daemon
