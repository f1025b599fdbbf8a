#!/usr/bin/env bash
# make demo: the whole photo story on this machine. A local broker, the
# daemon with fresh state (configs/dev.yaml, log level info) and
# scripts/demo playing the app and the cloud; it ends with a table of every
# photo (kept or deleted, score, rank, why) and a contact sheet.
#
#   DEMO_DIR (var/demo)  DEMO_PORT (the first free port from 18831: 18830
#   is make run's)  BIN (bin)  DEMO_BIN (go run ./scripts/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DEMO_DIR:-var/demo}
bin=${BIN:-bin}
step() { echo "demo: $*"; }
. scripts/broker.sh
if [ -n "${DEMO_PORT:-}" ]; then
  port=$DEMO_PORT
  if accepts "$port"; then
    echo "demo: port $port (DEMO_PORT) is taken by another program (make run? another demo?); free it or unset DEMO_PORT" >&2
    exit 1
  fi
else
  # A port of its own: make run keeps 18830 and may be running.
  port=18831
  while accepts "$port"; do
    port=$((port + 1))
    if [ "$port" -gt 18899 ]; then
      echo "demo: no free port from 18831 to 18899; set DEMO_PORT" >&2
      exit 1
    fi
  done
fi

rm -rf "$dir"
mkdir -p "$dir/spool/photos" "$dir/spool/frames"
sed -e "s|\./var/data|$dir/data|; s|\./var/spool|$dir/spool|; s|\./var/diag.sock|$dir/diag.sock|" \
  -e "s|^log_level: .*|log_level: info|; s|^  broker: .*|  broker: tcp://127.0.0.1:$port|" configs/dev.yaml >"$dir/config.yaml"
grep -q "^  broker: tcp://127.0.0.1:$port\$" "$dir/config.yaml" || { echo "demo: configs/dev.yaml has no mqtt.broker line to point at port $port" >&2; exit 1; }
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\nset_tcp_nodelay true\nmax_packet_size 1049600\n' "$port" >"$dir/mosquitto.conf"

step "starting a broker on 127.0.0.1:$port (log: $dir/broker.log)"
daemon=
start_broker demo "$dir/mosquitto.conf" "$dir/broker.log" "$port"

step "starting the daemon, fresh state in $dir (log: $dir/daemon.log)"
"$bin/aibo-privacyd" -config "$dir/config.yaml" 2>"$dir/daemon.log" &
daemon=$!
for i in $(seq 100); do
  "$bin/aiboctl" -socket "$dir/diag.sock" health >/dev/null 2>&1 && break
  if [ "$i" = 100 ] || ! kill -0 "$daemon" 2>/dev/null; then
    echo "demo: the daemon is not answering; $dir/daemon.log says:" >&2
    tail -5 "$dir/daemon.log" >&2
    exit 1
  fi
  sleep 0.1
done

${DEMO_BIN:-go run ./scripts/demo} -broker "tcp://127.0.0.1:$port" -spool "$dir/spool" -cloud "$dir/cloud" \
  -camera "$dir/camera" -log "$dir/daemon.log"

echo
"$bin/bestshot" sheet -face-models "${FACE_MODELS:-build/models}" -o "$dir/sheet.png" "$dir/camera" >/dev/null
step "contact sheet of what the camera took (bestshot's picks, the daemon's defaults): $dir/sheet.png"
step "uploads as the cloud got them: $dir/cloud/; the daemon's log: $dir/daemon.log"
