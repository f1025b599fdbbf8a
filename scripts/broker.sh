# Sourced by run-dev.sh (make run) and demo.sh (make demo): a local
# Mosquitto that is ours, and stopped with the daemon however the script
# ends.
#
#   accepts PORT            true when something accepts on 127.0.0.1:PORT
#   start_broker NAME CONF LOG PORT
#                           starts mosquitto -c CONF (output to LOG), sets
#                           $broker, stops the daemon ($daemon, when set) and
#                           the broker on every exit, and waits until this
#                           broker, not another program, accepts on PORT

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Errors are ignored in the cleanup: under set -e a failing kill (the
# daemon already gone) used to end it before the broker was stopped.
stop_daemon_and_broker() {
  set +e
  trap - EXIT INT TERM
  if [ -n "${daemon:-}" ]; then kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; fi
  if [ -n "${broker:-}" ]; then kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null; fi
}

start_broker() { # name conf log port
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$2" >"$3" 2>&1 &
  broker=$!
  trap stop_daemon_and_broker EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local i
  for i in $(seq 50); do
    if ! kill -0 "$broker" 2>/dev/null || [ "$i" = 50 ]; then
      echo "$1: the broker did not start on port $4; $3 says:" >&2
      tail -5 "$3" >&2
      exit 1
    fi
    accepts "$4" && return 0
    sleep 0.1
  done
}
