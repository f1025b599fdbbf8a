#!/usr/bin/env bash
# A three-node RabbitMQ cluster with the MQTT plugin behind HAProxy, for
# make test-cluster and scripts/fleet:
#
#   scripts/cluster.sh start            three nodes, clustered, then HAProxy
#   scripts/cluster.sh stop             everything, the network namespace too
#   scripts/cluster.sh kill N           kill -9 node N (1..3)
#   scripts/cluster.sh start_node N     start node N again (it rejoins)
#   scripts/cluster.sh stop_nodes       stop the three nodes (HAProxy stays)
#   scripts/cluster.sh start_nodes      start the three nodes again, together
#   scripts/cluster.sh partition|heal   cut or restore the network namespace's link
#   scripts/cluster.sh gc               garbage-collect every node (before reading memory)
#   scripts/cluster.sh ctl N ARGS...    rabbitmqctl against node N
#   scripts/cluster.sh env              the addresses, for scripts/fleet
#
# Everything is private to this script: nodes aibo-fleet-{1,2,3}@localhost
# in CLUSTER_DIR (default /tmp/aibo-cluster), their own epmd on
# CLUSTER_EPMD_PORT, ports from CLUSTER_PORT_BASE (default 18900):
#   base      HAProxy, MQTT for the robots (127.0.0.1)
#   base+5    HAProxy, MQTT for the cloud's consumers (127.0.0.1)
#   base+1..3 MQTT of node 1..3 (127.0.0.1)
#   base+11..13, base+21..23  AMQP and Erlang distribution of node 1..3
#   base+31..33  node 1..3's Prometheus endpoint (its own counters)
#   base+40   the nodes' epmd
# and one network namespace, aibo-fleet, joined to this one by a veth pair
# (10.77.0.1 here, 10.77.0.2 there). HAProxy listens on 10.77.0.1:base
# too: a robot that dials from inside the namespace goes through that link,
# which `partition` takes down (packets are dropped, nothing is refused)
# and `heal` brings back. The single node of scripts/rabbitmq.sh (node
# aibo-test, port 18883, the system's epmd) is never touched.
#
# The Erlang VMs run with scheduler busy-waiting off and one scheduler
# each: by default every scheduler spins for a while before it sleeps,
# which on a shared 2-core machine burns a core per node doing nothing.
set -euo pipefail
dir=${CLUSTER_DIR:-/tmp/aibo-cluster}
base=${CLUSTER_PORT_BASE:-18900}
ns=aibo-fleet
veth_host=aibofl0 veth_ns=aibofl1
host_ip=10.77.0.1 ns_ip=10.77.0.2
bin=/usr/lib/rabbitmq/bin
export HOME=$dir # the Erlang cookie all nodes and the CLI share
export ERL_CRASH_DUMP=$dir/erl_crash.dump # never in the caller's directory
export ERL_EPMD_PORT=${CLUSTER_EPMD_PORT:-$((base + 40))}
export RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD=none # +sbwt none +sbwtdcpu none +sbwtdio none
export RABBITMQ_SCHEDULER_BIND_TYPE=u
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +SDcpu 1:1 +A 8 -kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1

node_name() { echo "aibo-fleet-$1@localhost"; }

node_env() { # node_env N: the variables rabbitmq-server and rabbitmqctl read for node N
  local n=$1 d=$dir/node$1
  export RABBITMQ_NODENAME=$(node_name "$n")
  export RABBITMQ_NODE_PORT=$((base + 10 + n))
  export RABBITMQ_DIST_PORT=$((base + 20 + n))
  export RABBITMQ_MNESIA_BASE=$d/mnesia
  export RABBITMQ_LOG_BASE=$d/log
  export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_CONFIG_FILE=$d/rabbitmq
  export RABBITMQ_PID_FILE=$d/pid
}

ctl() { local n=$1; shift; (node_env "$n"; "$bin/rabbitmqctl" -n "$(node_name "$n")" "$@"); }

write_conf() { # write_conf N
  local n=$1 d=$dir/node$1
  mkdir -p "$d/log"
  cat > "$d/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$((base + 10 + n))
mqtt.listeners.tcp.default = 127.0.0.1:$((base + n))
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.vhost = /
# Durable sessions (clean session off) keep their QoS 1 queue on a quorum
# queue, replicated on all three nodes: a node that dies takes no session
# with it. Clean sessions stay on classic queues (3.10 cannot auto-delete
# a quorum queue).
mqtt.durable_queue_type = quorum
# An offline robot's session (its queue and what waits in it) expires
# after a week without a connection (x-expires on the queue; default 24 h).
mqtt.subscription_ttl = ${CLUSTER_SUBSCRIPTION_TTL_MS:-604800000}
loopback_users = none
tcp_listen_options.nodelay = true
# RabbitMQ sizes each connection's Erlang-side buffer to the kernel's
# socket buffers, which Linux grows to 4 MiB: 3.9 MB of Erlang memory per
# idle robot, measured. 64 KiB each way is half a chunk in flight.
mqtt.tcp_listen_options.sndbuf = 65536
mqtt.tcp_listen_options.recbuf = 65536
mqtt.tcp_listen_options.backlog = 4096
mqtt.tcp_listen_options.nodelay = true
# HAProxy's MQTT health checks connect to every node every second.
log.connection.level = warning
# The node's own counters (messages, bytes, memory) for scripts/fleet,
# each connection's bytes refreshed every second (default 5).
collect_statistics_interval = 1000
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $((base + 30 + n))
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name 1)
cluster_formation.classic_config.nodes.2 = $(node_name 2)
cluster_formation.classic_config.nodes.3 = $(node_name 3)
# A node cut off from both others stops serving rather than diverge; with
# one node killed, the two others keep the majority and go on.
cluster_partition_handling = pause_minority
CONF
}

start_node() { # start_node N: start it in the background, return at once
  local n=$1
  (node_env "$n"; "$bin/rabbitmq-server" >> "$RABBITMQ_LOG_BASE/server.out" 2>&1 &)
}

# await_node N: up to 10 minutes. After a whole-cluster restart a node
# sits up to 100 s in the MQTT plugin's client-id tracker before it
# finishes booting; on a loaded machine, more.
await_node() {
  local n=$1
  ctl "$n" wait --timeout 600 "$dir/node$n/pid" >/dev/null
  ctl "$n" await_startup --timeout 600 >/dev/null
}

pid_of() { cat "$dir/node$1/pid" 2>/dev/null || true; }

stop_node() { # stop_node N: a clean stop, waiting for the process to end
  local n=$1 p
  p=$(pid_of "$n")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  timeout 120 "$0" ctl "$n" stop "$dir/node$n/pid" >/dev/null 2>&1 || kill -9 "$p" 2>/dev/null || true
}

servers() {
  cat <<CONF
  option tcp-check
  tcp-check connect
  tcp-check send-binary-lf "101000044d51545404020000000468633%[be_id]3%[srv_id]"
  tcp-check expect binary 20020000
  tcp-check send-binary e000
  default-server check inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
  server n1 127.0.0.1:$((base + 1)) id 1
  server n2 127.0.0.1:$((base + 2)) id 2
  server n3 127.0.0.1:$((base + 3)) id 3
CONF
}

write_haproxy() {
  cat > "$dir/haproxy.cfg" <<CONF
global
  maxconn 8000
  nbthread 1
  stats socket $dir/haproxy.sock mode 600 level admin
  pidfile $dir/haproxy.pid

defaults
  mode tcp
  timeout connect 3s
  # Longer than 1.5 MQTT keepalives (the broker's own limit) for every
  # keepalive the robots may use, so HAProxy never cuts an idle session.
  timeout client 30m
  timeout server 30m
  timeout client-fin 5s
  timeout server-fin 5s
  retries 3
  option redispatch
  # Byte counters move while a session lasts, not only when it ends (an
  # MQTT session lasts hours).
  option contstats

# The robots: from this namespace, and from the test's own namespace
# through the veth pair (one frontend each, so each has its own counters).
frontend robots
  bind 127.0.0.1:$base
  default_backend rabbit

frontend robots_ns
  bind $host_ip:$base
  default_backend rabbit

# The cloud's consumers, apart, so the robots' frontends count robots only.
frontend cloud
  bind 127.0.0.1:$((base + 5))
  default_backend rabbit_cloud

# A node is up when it accepts an MQTT session, not merely a TCP
# connection: after a restart, 3.10's MQTT listener accepts connections
# long before its client-id tracker (a Raft cluster across the nodes) can
# register one. The check sends CONNECT (MQTT 3.1.1, clean session, client
# id "hc" and the backend's and server's ids) and expects CONNACK 0.
backend rabbit
  id 1
  balance leastconn
$(servers)

backend rabbit_cloud
  id 2
  balance leastconn
$(servers)
CONF
}

netns_up() {
  ip netns add "$ns"
  ip link add "$veth_host" type veth peer name "$veth_ns"
  ip link set "$veth_ns" netns "$ns"
  ip addr add "$host_ip/30" dev "$veth_host"
  ip link set "$veth_host" up
  ip -n "$ns" addr add "$ns_ip/30" dev "$veth_ns"
  ip -n "$ns" link set "$veth_ns" up
  ip -n "$ns" link set lo up
}

netns_down() {
  ip link del "$veth_host" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}

stop_all() {
  if [ -f "$dir/haproxy.pid" ]; then kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true; fi
  for n in 1 2 3; do stop_node "$n" & done
  wait
  epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
  netns_down
}

case ${1:-} in
start)
  if [ "$(id -u)" -ne 0 ]; then echo "cluster.sh: needs root (the network namespace)" >&2; exit 1; fi
  stop_all
  rm -rf "$dir" && mkdir -p "$dir"
  echo '[rabbitmq_mqtt,rabbitmq_prometheus].' > "$dir/enabled_plugins"
  for n in 1 2 3; do write_conf "$n"; done
  netns_up
  # Node 1 first, then the two others join it. Booted all at once, fresh
  # nodes may form more than one of the MQTT plugin's client-id trackers
  # (a Raft cluster the plugin forms on its own, and says so in its
  # source); a node outside the one with a majority then refuses every
  # MQTT connection ("client ID registration timed out").
  start_node 1
  await_node 1
  for n in 2 3; do start_node "$n"; done
  for n in 2 3; do await_node "$n"; done
  ctl 1 await_online_nodes 3 --timeout 120 >/dev/null 2>&1 || ctl 1 cluster_status >&2
  write_haproxy
  haproxy -f "$dir/haproxy.cfg" -D
  echo "cluster: MQTT on tcp://127.0.0.1:$base (and $host_ip:$base from netns $ns), nodes on $((base + 1))..$((base + 3)) ($("$bin/rabbitmqctl" version 2>/dev/null || echo '?'), HAProxy $(haproxy -v | head -1 | awk '{print $3}'))"
  ;;
stop) stop_all ;;
kill) p=$(pid_of "$2"); kill -9 "$p" ;;
start_node) start_node "$2"; await_node "$2" ;;
stop_nodes) for n in 1 2 3; do stop_node "$n" & done; wait ;;
start_nodes)
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do await_node "$n"; done
  ;;
gc) # a full garbage collection on every node, before reading memory
  for n in 1 2 3; do ctl "$n" eval '[erlang:garbage_collect(P) || P <- erlang:processes()], ok.' >/dev/null & done; wait ;;
partition) ip link set "$veth_host" down ;;
heal) ip link set "$veth_host" up ;;
ctl) n=$2; shift 2; ctl "$n" "$@" ;;
env)
  echo "CLUSTER_DIR=$dir"
  echo "CLUSTER_URL=tcp://127.0.0.1:$base"
  echo "CLUSTER_NS=$ns"
  echo "CLUSTER_NS_URL=tcp://$host_ip:$base"
  echo "CLUSTER_CLOUD_URL=tcp://127.0.0.1:$((base + 5))"
  echo "CLUSTER_HAPROXY_SOCK=$dir/haproxy.sock"
  for n in 1 2 3; do echo "CLUSTER_NODE_$n=tcp://127.0.0.1:$((base + n))"; done
  for n in 1 2 3; do echo "CLUSTER_METRICS_$n=http://127.0.0.1:$((base + 30 + n))/metrics"; done
  ;;
*) echo "usage: $0 start|stop|kill N|start_node N|stop_nodes|start_nodes|partition|heal|gc|ctl N ARGS|env" >&2; exit 2 ;;
esac
