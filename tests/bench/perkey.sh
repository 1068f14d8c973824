#!/usr/bin/env bash
# perkey.sh - the per-key Redis Streams benchmark (README "Resumable AI
# responses and job streams"): KEYS concurrent generations, each a Redis
# Stream chat:<id> fed RATE entries/s, one browser each, served by
#   sluice   one per-key route (/chat/{id} -> ai:chat:{id}, raw, field t)
#   node     the hand-built pattern: one XREAD BLOCK per browser on its
#            own Redis connection (perkey/xread_server.js)
# in one run, on the same redis-server. Prints server CPU per delivered
# entry, Redis CPU per entry and XADD-to-client latency for each, and the
# ratios sluice / node. A third run with no reader at all measures what the
# XADDs alone cost Redis, so the Redis CPU of reading can be told apart.
#
#   tests/bench/perkey.sh          KEYS=1000 RATE=50 SECONDS=20
# Environment: SLUICE_BIN (default build/sluice), KEYS, RATE, SECONDS.
set -euo pipefail
cd "$(dirname "$0")/../.."
SLUICE_BIN=${SLUICE_BIN:-build/sluice}
KEYS=${KEYS:-1000}; RATE=${RATE:-50}; SECONDS_=${SECONDS:-20}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}
wait_http() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "perkey.sh: nothing listens on $1" >&2; exit 1
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --maxclients 20000 --daemonize no --logfile "$work/redis.log" &
rpid=$!; pids+=("$rpid")
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done

declare -A result
run_one() { # name port pid (port 0: no server, XADDs only)
    local out base="http://127.0.0.1:$2/chat"
    [ "$2" = 0 ] && base=none
    out=$(node tests/bench/perkey/load.js "$base" "$rport" "$3" "$rpid" \
        "$KEYS" "$RATE" "$SECONDS_" | grep '^RESULT')
    echo "$1: $out" >&2
    result[$1]=$out
    redis-cli -p "$rport" flushall >/dev/null
}

sport=$(free_port)
cat >"$work/sluice.yaml" <<YAML
listen: 127.0.0.1:$sport
sources:
  - name: ai
    type: redis-stream
    url: redis://127.0.0.1:$rport
routes:
  - path: /chat/{id}
    topics: ["ai:chat:{id}"]
    format: raw
    data_field: t
stream: {heartbeat: 15s, max_connections: 19000, max_keys: 19000}
logging: {level: warn}
YAML
"$SLUICE_BIN" -c "$work/sluice.yaml" 2>"$work/sluice.log" &
spid=$!; pids+=("$spid")
wait_http "$sport"
run_one sluice "$sport" "$spid"
kill "$spid"; wait "$spid" 2>/dev/null || true

run_one none 0 0

nport=$(free_port)
node tests/bench/perkey/xread_server.js "$nport" "$rport" 2>"$work/node.log" &
npid=$!; pids+=("$npid")
wait_http "$nport"
run_one node "$nport" "$npid"

field() { echo "${result[$1]}" | grep -o "$2=[0-9.]*" | cut -d= -f2; }
printf '%-34s %12s %12s %8s\n' "$KEYS keys x $RATE entries/s, ${SECONDS_} s" sluice node ratio
row() { # label value_sluice value_node
    printf '%-34s %12s %12s %8s\n' "$1" "$2" "$3" \
        "$(awk -v a="$2" -v b="$3" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
}
for n in sluice node; do
    sent=$(field $n sent); recv=$(field $n received)
    eval "${n}_sent=$sent ${n}_recv=$recv"
    eval "${n}_cpu=$(awk -v c="$(field $n server_cpu_s)" -v r="$recv" 'BEGIN { printf "%.2f", r ? c * 1e6 / r : 0 }')"
    eval "${n}_rcpu=$(awk -v c="$(field $n redis_cpu_s)" -v r="$recv" 'BEGIN { printf "%.2f", r ? c * 1e6 / r : 0 }')"
done
row "received / sent" "$sluice_recv/$sluice_sent" "$node_recv/$node_sent"
row "server CPU per entry (us)" "$sluice_cpu" "$node_cpu"
row "redis CPU per entry (us)" "$sluice_rcpu" "$node_rcpu"
# The XADDs cost the same in both runs: what is left is the reading.
xadd=$(awk -v c="$(field none redis_cpu_s)" -v s="$(field none sent)" 'BEGIN { printf "%.2f", s ? c * 1e6 / s : 0 }')
row "  of which XADD alone (us)" "$xadd" "$xadd"
row "  reading (us)" "$(awk -v a="$sluice_rcpu" -v x="$xadd" 'BEGIN { printf "%.2f", a - x }')" \
    "$(awk -v a="$node_rcpu" -v x="$xadd" 'BEGIN { printf "%.2f", a - x }')"
row "latency p50 (ms)" "$(field sluice p50_ms)" "$(field node p50_ms)"
row "latency p99 (ms)" "$(field sluice p99_ms)" "$(field node p99_ms)"
