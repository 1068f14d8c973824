#!/usr/bin/env bash
# deploy/demo/run.sh - the demo in one command (Debian 12, as root):
# installs what is missing and builds sluice (deploy/build.sh), then starts
# redis-server, mosquitto, sluice, the publisher and the dashboard's
# static server, all on loopback, and prints the URL to open.
#
#   deploy/demo/run.sh                  run until Ctrl-C
#   DEMO_SECONDS=20 deploy/demo/run.sh  stop after 20 s, then check that
#                                       events flowed (a CI smoke test)
#
# Ports: redis 6379, mosquitto 1883, sluice 8080, dashboard 8000; a port
# that is taken (say, by Debian's own redis-server service) is replaced
# by a free one, and the config gets it through ${VAR} expansion. All
# state and logs live in one temporary directory, removed at exit
# (kept, and named, on a failure or with KEEP_STATE=1). Every process
# started here is stopped on exit. SLUICE_BIN runs another sluice binary.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
demo=deploy/demo
demo_seconds=${DEMO_SECONDS:-}
if [ -n "$demo_seconds" ] && ! [[ "$demo_seconds" =~ ^[0-9]+$ ]]; then
  echo "run.sh: DEMO_SECONDS must be a number of seconds" >&2
  exit 2
fi

deploy/build.sh
sluice_bin=${SLUICE_BIN:-$repo/build/sluice}

state=$(mktemp -d /tmp/sluice-demo.XXXXXX)
names=()   # names[i] describes pids[i]
pids=()

# Stops what this script started, newest first: the publisher and the
# page before sluice (so sluice drains with nothing new arriving), the
# brokers last. SIGTERM, then SIGKILL after a few seconds.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local indexes=("${!pids[@]}") i pid
  for ((i = ${#indexes[@]} - 1; i >= 0; i--)); do
    pid=${pids[${indexes[i]}]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # Ctrl-C (130) and SIGTERM (143) are the normal way out.
  if [ "${KEEP_STATE:-0}" = 1 ] || { [ "$status" -ne 0 ] && [ "$status" -ne 130 ] &&
    [ "$status" -ne 143 ]; }; then
    echo "run.sh: logs kept in $state" >&2
  else
    rm -rf "$state"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background with its output in
# $state/NAME.log and remembers it for cleanup.
start() {
  local name=$1
  shift
  "$@" >"$state/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# The port if nothing listens on 127.0.0.1:PORT yet, else a free one
# chosen by the kernel.
pick_port() {
  node -e '
    const net = require("net");
    const want = Number(process.argv[1]);
    const probe = (port) => {
      const s = net.createServer();
      s.once("error", () => probe(0));
      s.listen(port, "127.0.0.1", () => {
        const got = s.address().port;
        s.close(() => console.log(got));
      });
    };
    probe(want);' "$1"
}

# wait_port NAME PORT: waits up to 10 s for the process started last
# under NAME to listen on PORT; fails at once if it exits.
wait_port() {
  local name=$1 port=$2 i pid=
  for i in "${!names[@]}"; do
    [ "${names[i]}" = "$name" ] && pid=${pids[i]}
  done
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: $name did not start on port $port; last lines of its log:" >&2
  tail -n 20 "$state/$name.log" >&2
  return 1
}

redis_port=$(pick_port 6379)
mqtt_port=$(pick_port 1883)
sluice_port=$(pick_port 8080)
dashboard_port=$(pick_port 8000)

start redis redis-server --port "$redis_port" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$state"

# Mosquitto logs to stderr (our log file): as root it drops to the
# `mosquitto` user, which could not open a file in $state.
cat >"$state/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
EOF
start mosquitto mosquitto -c "$state/mosquitto.conf"
wait_port redis "$redis_port"
wait_port mosquitto "$mqtt_port"

mkdir -m 0700 "$state/history"
export SLUICE_PORT=$sluice_port MQTT_PORT=$mqtt_port REDIS_PORT=$redis_port \
  DASHBOARD_PORT=$dashboard_port SLUICE_HISTORY_DIR=$state/history
start sluice "$sluice_bin" -c "$demo/sluice.yaml"
wait_port sluice "$sluice_port"

start publisher env MQTT_URL="mqtt://127.0.0.1:$mqtt_port" \
  REDIS_URL="redis://127.0.0.1:$redis_port" node "$demo/publisher.js"
start dashboard env PORT="$dashboard_port" \
  SLUICE_URL="http://127.0.0.1:$sluice_port" node "$demo/serve.js"
wait_port dashboard "$dashboard_port"

echo "Open http://127.0.0.1:$dashboard_port/ (Ctrl-C stops everything)"

# After DEMO_SECONDS: every part must still answer, and events from both
# sources must have reached sluice.
smoke_check() {
  local metrics ok=0
  curl -fsS "http://127.0.0.1:$dashboard_port/" | grep -q 'Plant floor' ||
    { echo "run.sh: the dashboard page is not served" >&2; ok=1; }
  curl -fsS "http://127.0.0.1:$sluice_port/readyz" >/dev/null ||
    { echo "run.sh: sluice is not ready: $(curl -sS "http://127.0.0.1:$sluice_port/readyz")" >&2; ok=1; }
  metrics=$(curl -fsS "http://127.0.0.1:$sluice_port/metrics") || metrics=
  local source
  for source in plant shop; do
    echo "$metrics" | grep -Eq "^sluice_events_received_total\{source=\"$source\"\} [1-9]" ||
      { echo "run.sh: no events received from source $source" >&2; ok=1; }
  done
  if [ "$ok" -eq 0 ]; then
    echo "run.sh: smoke check passed (dashboard served, sluice ready, events from plant and shop)"
  fi
  return "$ok"
}

if [ -n "$demo_seconds" ]; then
  sleep "$demo_seconds" &
  pids+=($!)
  names+=(timer)
fi

# Wait for the timer, Ctrl-C, or a process that dies on its own.
while :; do
  finished=
  wait -n -p finished "${pids[@]}" || true
  [ -n "$finished" ] || continue
  for i in "${!pids[@]}"; do
    [ "${pids[i]}" = "$finished" ] || continue
    if [ "${names[i]}" = timer ]; then
      unset 'pids[i]' 'names[i]'
      smoke_check
      exit $?
    fi
    echo "run.sh: ${names[i]} exited; last lines of its log:" >&2
    tail -n 20 "$state/${names[i]}.log" >&2
    unset 'pids[i]' 'names[i]'
    exit 1
  done
done
