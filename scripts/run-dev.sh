#!/usr/bin/env bash
# make run [CONFIG=path]: a local Mosquitto on 127.0.0.1:18830 and the daemon
# with the config (configs/dev.yaml by default). Standard output carries the
# daemon's JSON log lines and nothing else, so `make run | jq` works; these
# hints go to standard error and the broker's log to var/mosquitto.log.
# Ctrl-C stops both. RUN_DIR (var), RUN_PORT (18830) and BIN (bin) move
# the logs, the broker and the binaries (the tests use them).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/dev.yaml}
if [ ! -r "$config" ]; then
  echo "run: cannot read config $config" >&2
  exit 2
fi
# The YAML's own spool_dir and diag.socket, for the folders and the hints.
spool=$(sed -n 's/^spool_dir: *//p' "$config" | tr -d '"' | head -1)
socket=$(sed -n '/^diag:/,/^[^ ]/s/^  socket: *//p' "$config" | tr -d '"' | head -1)
run=${RUN_DIR:-var}
port=${RUN_PORT:-18830}
bin=${BIN:-bin}
mkdir -p "$run" "${spool:-var/spool}/photos" "${spool:-var/spool}/frames"
. scripts/broker.sh
if accepts "$port"; then
  echo "run: port $port is taken (another make run or make demo, or a broker of this machine); stop it, or set RUN_PORT and a config whose mqtt.broker uses that port" >&2
  exit 1
fi
sed "s/^listener 18830 /listener $port /" configs/mosquitto-dev.conf >"$run/mosquitto.conf"
daemon=
start_broker run "$run/mosquitto.conf" "$run/mosquitto.log" "$port"
if ! awk '/^security:/ { s = 1; next } s && /^[^ #]/ { s = 0 }
  s && /^  command_keys:/ { c = 1; next } s && /^  [^ ]/ { c = 0 }
  s && c && /^    [^ #]/ { found = 1 } END { exit !found }' "$config"; then
  signed="unsigned commands accepted (no security.command_keys; a signed envelope is unwrapped unchecked)"
else
  signed="signed commands only (security.command_keys)"
fi
{
  echo "run: daemon with $config: $signed"
  echo "run: broker on tcp://127.0.0.1:$port, its log in $run/mosquitto.log; try:"
  echo "  mosquitto_sub -p $port -t 'aibo/+/#' -T 'aibo/+/artifacts/+/chunk/+' -v"
  echo "  mosquitto_pub -p $port -t aibo/aibo-dev/cmd -m '{\"id\":\"1\",\"type\":\"accept_policy\",\"payload\":{\"version\":\"2026-11\"}}'"
  echo "  $bin/aiboctl -socket ${socket:-var/diag.sock} status"
} >&2
"$bin/aibo-privacyd" -config "$config" 2>&1 &
daemon=$!
status=0
wait "$daemon" || status=$?
daemon=
exit "$status"
