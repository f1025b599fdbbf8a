#!/usr/bin/env bash
# A private RabbitMQ node with the MQTT plugin, for make test-rabbitmq:
#   scripts/rabbitmq.sh start|stop|stop_app|start_app
# One node, aibo-single@localhost, in RABBIT_DIR (default
# /tmp/aibo-rabbitmq-single): MQTT on RABBIT_MQTT_PORT (default 18883),
# AMQP on 18672, distribution on 18673 (a cluster's nodes beside it take
# other names and ports). It allows anonymous MQTT clients (as the test
# Mosquitto does) and never touches the system's rabbitmq service.
set -euo pipefail
dir=${RABBIT_DIR:-/tmp/aibo-rabbitmq-single}
port=${RABBIT_MQTT_PORT:-18883}
bin=/usr/lib/rabbitmq/bin
export HOME=$dir # its Erlang cookie
export RABBITMQ_NODENAME=aibo-single@localhost
export RABBITMQ_NODE_PORT=${RABBIT_AMQP_PORT:-18672}
export RABBITMQ_DIST_PORT=${RABBIT_DIST_PORT:-18673}
export RABBITMQ_MNESIA_BASE=$dir/mnesia
export RABBITMQ_LOG_BASE=$dir/log
export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
export RABBITMQ_CONFIG_FILE=$dir/rabbitmq
export RABBITMQ_PID_FILE=$dir/pid
ctl() { "$bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"; }

case ${1:-} in
start)
  rm -rf "$dir" && mkdir -p "$dir/log"
  echo '[rabbitmq_mqtt].' > "$RABBITMQ_ENABLED_PLUGINS_FILE"
  cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBITMQ_NODE_PORT
mqtt.listeners.tcp.default = 127.0.0.1:$port
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.vhost = /
loopback_users = none
tcp_listen_options.nodelay = true
CONF
  "$bin/rabbitmq-server" > "$dir/log/server.out" 2>&1 &
  ctl wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null
  ctl await_startup >/dev/null
  echo "rabbitmq: MQTT on tcp://127.0.0.1:$port ($("$bin/rabbitmqctl" version 2>/dev/null || echo '?'))"
  ;;
stop_app) ctl stop_app >/dev/null ;;
start_app) ctl start_app >/dev/null && ctl await_startup >/dev/null ;;
stop) ctl stop >/dev/null 2>&1 || true ;;
log) ls "$RABBITMQ_LOG_BASE"/*.log 2>/dev/null | grep -v upgrade | head -1 ;;
*) echo "usage: $0 start|stop|stop_app|start_app|log" >&2; exit 2 ;;
esac
