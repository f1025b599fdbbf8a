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
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
if accepts; then
  echo "run: port $port is taken (another make run or make demo, or a broker of this machine); stop it, or set RUN_PORT and a config whose mqtt.broker uses that port" >&2
  exit 1
fi
sed "s/^listener 18830 /listener $port /" configs/mosquitto-dev.conf >"$run/mosquitto.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$run/mosquitto.conf" >"$run/mosquitto.log" 2>&1 &
broker=$!
daemon=
# Whatever ends this script (the daemon exiting, a bad config, Ctrl-C,
# SIGTERM, an error under set -e), the daemon and then the broker are
# stopped. Errors are ignored here: a failing kill must not end the
# cleanup early and leave the broker running.
cleanup() {
  set +e
  trap - EXIT INT TERM
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; fi
  kill "$broker" 2>/dev/null
  wait "$broker" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in $(seq 50); do
  accepts && break
  kill -0 "$broker" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$broker" 2>/dev/null || ! accepts; then
  echo "run: the broker did not start on port $port; $run/mosquitto.log says:" >&2
  tail -5 "$run/mosquitto.log" >&2
  exit 1
fi
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
