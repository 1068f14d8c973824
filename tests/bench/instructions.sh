#!/usr/bin/env bash
# instructions.sh - instructions per delivery of one or more sluice
# binaries, counted by valgrind's callgrind: unlike CPU seconds, the count
# does not depend on what else the machine is doing, so two builds can be
# compared on a busy machine (for example before and after a refactor).
#
#   tests/bench/instructions.sh BIN [BIN...]
#
# For each binary: redis-server and sluice (under callgrind) on free
# loopback ports, then two loadgen runs of STREAMS streams on TOPICS
# topics at RATE events/s, SHORT and LONG seconds. The difference of the
# two instruction totals divided by the difference of deliveries is the
# cost of one delivery on the hot path, start-up and ramp excluded.
# Environment: LOADGEN (default build/tests/loadgen), STREAMS (100),
# TOPICS (10), RATE (50), SHORT (4), LONG (12), SIZE (128).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOADGEN=${LOADGEN:-build/tests/loadgen}
STREAMS=${STREAMS:-100}; TOPICS=${TOPICS:-10}; RATE=${RATE:-50}
SHORT=${SHORT:-4}; LONG=${LONG:-12}; SIZE=${SIZE:-128}
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}

# One measurement: prints "<instructions> <deliveries>".
measure() {
    local bin=$1 seconds=$2 rport sport spid rpid out
    rport=$(free_port); sport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$work/redis.log" &
    rpid=$!; pids+=("$rpid")
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
    cat >"$work/sluice.yaml" <<YAML
listen: 127.0.0.1:$sport
sources:
  - name: src
    type: redis
    url: redis://127.0.0.1:$rport
routes:
  - path: "/bench/{ch}"
    topics: ["src:{ch}"]
stream: {heartbeat: 15s}
logging: {level: warn}
YAML
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --dump-instr=no \
        "$bin" -c "$work/sluice.yaml" 2>"$work/vg.log" &
    spid=$!; pids+=("$spid")
    until curl -fs "http://127.0.0.1:$sport/readyz" >/dev/null 2>&1; do sleep 0.2; done
    out=$("$LOADGEN" --sub "http://127.0.0.1:$sport/bench/t%d" \
        --pub "redis://127.0.0.1:$rport" --pub-topic "t%d" --conns "$STREAMS" \
        --topics "$TOPICS" --rate "$RATE" --duration "$seconds" --size "$SIZE" \
        --drain 10 2>&1 | grep '^RESULT' || true)
    kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
    kill "$rpid"; wait "$rpid" 2>/dev/null || true
    local ir deliveries
    ir=$(grep -m1 '^summary:' "$work/cg.out" | awk '{print $2}')
    deliveries=$(echo "$out" | grep -o 'delivered=[0-9]*' | cut -d= -f2)
    echo "$ir ${deliveries:-0}"
}

for bin in "$@"; do
    read -r ir1 d1 < <(measure "$bin" "$SHORT")
    read -r ir2 d2 < <(measure "$bin" "$LONG")
    if [ "$d2" -le "$d1" ]; then
        echo "$bin: no deliveries measured ($d1, $d2)" >&2
        exit 1
    fi
    echo "$bin: $(( (ir2 - ir1) / (d2 - d1) )) instructions per delivery" \
         "($d1 and $d2 deliveries; $ir1 and $ir2 instructions)"
done
