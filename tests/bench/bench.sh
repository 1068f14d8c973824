#!/usr/bin/env bash
# bench.sh - the fan-out benchmark: sluice against nginx + nchan on the
# same machine, same workloads, same load generator (tests/bench/loadgen.c).
# What each figure means: tests/bench/README.md.
#
#   bench.sh                    every workload on both servers, then a table
#   bench.sh --workloads W1,IDLE   a subset (W1 W2 IDLE W4)
#   bench.sh --smoke            tiny sluice-only run for CI (exit 1 on any loss)
#   bench.sh --replicas         W1, W2 on one sluice and on three replicas fed
#                               by one log (history.redis), then log ingest
#   bench.sh --replicas-smoke   tiny replica run for CI (exit 1 on any loss)
#   bench.sh --profile          perf profile of sluice under W2 (top symbols)
#   bench.sh --syscalls         strace -c of both servers under W1
#   bench.sh --transports       W1, W2 on both servers over cleartext HTTP/1.1,
#                               TLS HTTP/1.1 and TLS HTTP/2 (100 streams per
#                               connection), then a table by transport
#   bench.sh --transports-smoke tiny sluice-only TLS HTTP/1.1 and HTTP/2 run
#                               for CI (exit 1 on any loss)
#
# Environment: SLUICE_BIN, LOADGEN (default: build/ of the repository),
# NGINX (default nginx), NCHAN_MODULE (default Debian's path), DURATION
# (seconds per publishing workload, default 20), RETRIES (runs of one
# measurement while the machine is disturbed, default 2), PROFILE_RATE
# (events/s of --profile, default 50), INGEST_RATE (events/s offered to
# one source in the ingest measure, default 100000), STREAMS (streams of
# --transports, default 5000), H2_STREAMS (HTTP/2 streams per connection
# of --transports, default 100), KEEP=1 keeps the work dir.
#
# Every server (redis-server, sluice, nginx) is started here on a free
# loopback port with a generated config in a temporary directory, one
# set per workload so each starts clean, and everything is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SLUICE_BIN=${SLUICE_BIN:-$root/build/sluice}
LOADGEN=${LOADGEN:-$root/build/tests/loadgen}
NGINX=${NGINX:-nginx}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
DURATION=${DURATION:-20}
STREAMS=${STREAMS:-5000}
H2_STREAMS=${H2_STREAMS:-100}

mode=full
workloads="W1,W2,IDLE,W4"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) mode=smoke ;;
        --replicas) mode=replicas ;;
        --replicas-smoke) mode=replicas-smoke ;;
        --profile) mode=profile ;;
        --syscalls) mode=syscalls ;;
        --transports) mode=transports ;;
        --transports-smoke) mode=transports-smoke ;;
        --workloads) workloads=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 1 ;;
    esac
    shift
done

for bin in "$SLUICE_BIN" "$LOADGEN"; do
    [ -x "$bin" ] || { echo "bench.sh: $bin is not built" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "bench.sh: redis-server missing" >&2; exit 1; }

# Streams need file descriptors on both sides; children inherit this.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
results=$work/results
: >"$results"
pids=()
# How streams reach the server: h1 (cleartext HTTP/1.1), h1-tls (HTTP/1.1
# over TLS) or h2 (HTTP/2 over TLS, H2_STREAMS streams per connection).
# Not h1: the servers get TLS with $work/tls.crt (make_cert) and HTTP/2.
transport=h1

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}

# Stops one server started by this script (TERM, then KILL after 10 s).
stop_pid() {
    local pid=$1 i
    if ! kill "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        return 0
    fi
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Drops a stopped pid from the cleanup list, so a reused pid is never hit.
forget_pid() {
    local keep=() p
    for p in "${pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

# wait_http URL: until the URL answers at all (any status), at most 10 s.
wait_http() {
    local i
    for i in $(seq 100); do
        if curl -sk -o /dev/null -m 1 "$1"; then return 0; fi
        sleep 0.1
    done
    echo "bench.sh: $1 did not answer" >&2
    return 1
}

# A self-signed certificate for both servers (RSA 2048, as the README's
# TLS example): $work/tls.crt, $work/tls.key.
make_cert() {
    [ -s "$work/tls.crt" ] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$work/tls.key" \
        -out "$work/tls.crt" -subj /CN=127.0.0.1 2>/dev/null || {
        echo "bench.sh: openssl could not make a certificate" >&2; return 1; }
}

# The scheme and loadgen's options for $transport.
transport_args() {
    case "$transport" in
        h1) sub_scheme=http; transport_opts=() ;;
        h1-tls) sub_scheme=https; transport_opts=(--tls) ;;
        h2) sub_scheme=https; transport_opts=(--h2 "$H2_STREAMS") ;;
    esac
}

start_redis() {
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
        --appendonly no --protected-mode no --logfile "$work/redis.log" \
        --daemonize no &
    redis_pid=$!
    pids+=("$redis_pid")
    local i
    for i in $(seq 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench.sh: redis-server did not start" >&2
    return 1
}

# start_sluice bench|dev: /bench/{ch} -> src:{ch}, or /dev/{id} ->
# src:devices/{id} (one Redis channel per device). With $history_redis
# set, the history is the shared log in that Redis (key prefix "bench"),
# so several started in turn are replicas of one service; $max_events
# (default 100000) bounds the history.
start_sluice() {
    local route topic history
    if [ "$1" = dev ]; then
        route='/dev/{id}'; topic='src:devices/{id}'
    else
        route='/bench/{ch}'; topic='src:{ch}'
    fi
    sluice_port=$(free_port)
    history="history:
  max_events: ${max_events:-100000}"
    if [ -n "${history_redis:-}" ]; then
        history="$history
  redis: $history_redis
  key: bench"
    fi
    cat >"$work/sluice-$sluice_port.yaml" <<EOF
listen: 127.0.0.1:$sluice_port
sources:
  - name: src
    type: redis
    url: redis://127.0.0.1:$redis_port
routes:
  - path: "$route"
    topics: ["$topic"]
$history
stream:
  max_connections: 25000
  heartbeat: 15s
logging: {level: warn}
EOF
    # Not h1: one TLS port offering h2 and http/1.1 by ALPN, as deployed.
    if [ "$transport" != h1 ]; then
        cat >>"$work/sluice-$sluice_port.yaml" <<EOF
tls: {cert_file: $work/tls.crt, key_file: $work/tls.key}
http2: {enabled: true, max_concurrent_streams: 200}
EOF
    fi
    transport_args
    "$SLUICE_BIN" -c "$work/sluice-$sluice_port.yaml" 2>>"$work/sluice.log" &
    sluice_pid=$!
    pids+=("$sluice_pid")
    local i
    for i in $(seq 100); do
        [ "$(curl -sk -o /dev/null -w '%{http_code}' -m 1 \
            "$sub_scheme://127.0.0.1:$sluice_port/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    echo "bench.sh: sluice not ready; its log:" >&2
    tail -20 "$work/sluice.log" >&2
    return 1
}

# start_replicas N: N sluice (bench routes) sharing one log in the Redis
# of start_redis; their ports and pids in replica_ports / replica_pids.
# Returns once exactly one of them is the ingest leader of source src.
start_replicas() {
    local n=$1 i leaders=0 p
    history_redis=redis://127.0.0.1:$redis_port/0
    replica_ports=()
    replica_pids=()
    for i in $(seq "$n"); do
        start_sluice bench
        replica_ports+=("$sluice_port")
        replica_pids+=("$sluice_pid")
    done
    history_redis=
    for i in $(seq 100); do
        leaders=0
        for p in "${replica_ports[@]}"; do
            if curl -s -m 1 "http://127.0.0.1:$p/metrics" |
                grep -q '^sluice_ingest_leader{source="src"} 1$'; then
                leaders=$((leaders + 1))
            fi
        done
        [ "$leaders" = 1 ] && return 0
        sleep 0.1
    done
    echo "bench.sh: not one ingest leader among the replicas ($leaders)" >&2
    return 1
}

stop_replicas() {
    local pid
    for pid in "${replica_pids[@]}"; do
        stop_pid "$pid"
    done
}

# start_nchan: nginx + nchan on nginx_port; publishers POST to
# nginx_pub_port, which is the same port for h1 and a separate cleartext
# one when the streams come over TLS (listen ... ssl http2).
start_nchan() {
    nginx_port=$(free_port)
    nginx_pub_port=$nginx_port
    local dir=$work/nginx user="" listen tls=""
    listen="listen 127.0.0.1:$nginx_port backlog=4096;"
    if [ "$transport" != h1 ]; then
        nginx_pub_port=$(free_port)
        listen="listen 127.0.0.1:$nginx_port ssl http2 backlog=4096;
        listen 127.0.0.1:$nginx_pub_port backlog=4096;"
        # As sluice's TLS: 1.2 and 1.3 (nginx 1.22's default stops at
        # 1.2), the server's cipher preference, no session tickets.
        tls="ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_session_tickets off;
    http2_max_concurrent_streams 200;"
    fi
    mkdir -p "$dir/tmp"
    # As root the master would hand the worker to nobody, who cannot
    # enter the private work dir.
    [ "$(id -u)" = 0 ] && user="user root;"
    # worker_rlimit_nofile above the hard limit only earns an alert.
    local nofile=25000
    [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 25000 ] && nofile=$(ulimit -Hn)
    cat >"$dir/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
$user
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 25000;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    nchan_shared_memory_size 512m;
    $tls
    server {
        $listen
        location ~ ^/sub/(.+)\$ {
            nchan_subscriber eventsource;
            nchan_channel_id \$1;
            nchan_subscriber_timeout 0;
        }
        location ~ ^/pub/(.+)\$ {
            nchan_publisher;
            nchan_channel_id \$1;
            nchan_message_buffer_length 100;
            nchan_message_timeout 60s;
        }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/stderr.log" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_http "http://127.0.0.1:$nginx_pub_port/pub/probe"
    transport_args
    wait_http "$sub_scheme://127.0.0.1:$nginx_port/pub/probe"
    nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
    [ -n "$nginx_worker" ] || { echo "bench.sh: no nginx worker" >&2; return 1; }
}

# Busy share of the whole machine over 1 s, in % of one core.
machine_busy() {
    local a b
    a=$(head -1 /proc/stat)
    sleep 1
    b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x); split(b, y)
        busy = 0
        for (i = 2; i <= 9; i++) if (i != 5 && i != 6) busy += y[i] - x[i]
        printf "%d", 100 * busy / hz
    }'
}

# Waits (at most 30 s) until the machine is quiet: other tenants' builds
# and tests disturb the figures. Each RESULT line carries other_cpu_pct,
# what the rest of the machine used during the measurement itself.
wait_quiet() {
    local i busy
    for i in $(seq 30); do
        busy=$(machine_busy)
        [ "$busy" -lt 15 ] && return 0
    done
    echo "bench.sh: warning: the machine stays busy ($busy% of a core)" >&2
}

# run_loadgen LABEL WORKLOAD ARGS...: one loadgen run; its RESULT line
# goes to $work/last, its human line to stdout.
run_loadgen() {
    local label=$1 workload=$2 out
    shift 2
    wait_quiet
    : >"$work/last"
    out=$(timeout 300 "$LOADGEN" --label "$label" --workload "$workload" "$@") || {
        echo "bench.sh: loadgen failed ($label $workload): $out" >&2
        return 1
    }
    grep '^RESULT ' <<<"$out" >"$work/last"
    grep -v '^RESULT ' <<<"$out"
}

# sluice_once WORKLOAD ROUTE LOADGEN-ARGS...: fresh redis + sluice, one run.
sluice_once() {
    local workload=$1 route=$2 path pub
    shift 2
    start_redis
    start_sluice "$route"
    if [ "$route" = dev ]; then path='/dev/%d'; pub='devices/%d'
    else path='/bench/t%d'; pub='t%d'; fi
    local pubargs=(--pub "redis://127.0.0.1:$redis_port" --pub-topic "$pub")
    [ "$workload" = IDLE ] && pubargs=()
    run_loadgen sluice "$workload" --sub "$sub_scheme://127.0.0.1:$sluice_port$path" \
        "${transport_opts[@]}" "${pubargs[@]}" --pid "$sluice_pid" \
        --bus-pid "$redis_pid" "$@" || true
    stop_pid "$sluice_pid"
    stop_pid "$redis_pid"
}

# replicas_once WORKLOAD ROUTE LOADGEN-ARGS...: fresh redis + three
# replicas fed by one log; stream i goes to replica i mod 3; the server
# CPU is the three replicas' sum (redis, the bus and the log, is
# bus_cpu_s). ROUTE is always bench here.
replicas_once() {
    local workload=$1 p pidargs=() ports
    shift 2
    start_redis
    start_replicas 3
    for p in "${replica_pids[@]}"; do pidargs+=(--pid "$p"); done
    ports=$(IFS=,; echo "${replica_ports[*]}")
    run_loadgen replicas "$workload" \
        --sub "http://127.0.0.1:${replica_ports[0]}/bench/t%d" --sub-ports "$ports" \
        --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' \
        "${pidargs[@]}" --bus-pid "$redis_pid" "$@" || true
    stop_replicas
    stop_pid "$redis_pid"
}

# ingest_once RATE SECONDS: one sluice with history.redis, RATE events/s
# offered on one Redis channel for SECONDS, one stream reading them.
# The rate the log took them at comes from the log itself: an entry's id
# carries Redis's clock at the append, so (appended - 1) / (last - first
# entry time) is the append rate, whatever the offered rate. Prints a
# RESULT line (workload=INGEST) and adds it to the results.
ingest_once() {
    local rate=$1 secs=$2 len first last out sent
    start_redis
    max_events=$((rate * secs * 2)) start_replicas 1
    out=$(timeout 120 "$LOADGEN" --label replicas --workload INGEST-run \
        --sub "http://127.0.0.1:${replica_ports[0]}/bench/t0" \
        --pub "redis://127.0.0.1:$redis_port" --pub-topic 't0' \
        --conns 1 --rate "$rate" --duration "$secs" --drain 10 \
        --pid "${replica_pids[0]}" --bus-pid "$redis_pid") || true
    grep -v '^RESULT ' <<<"$out" >&2 || true
    sent=$(sed -n 's/^RESULT .* events=\([0-9]*\) .*/\1/p' <<<"$out")
    len=$(redis-cli -p "$redis_port" XLEN bench:log)
    first=$(redis-cli -p "$redis_port" XRANGE bench:log - + COUNT 1 | head -1)
    last=$(redis-cli -p "$redis_port" XREVRANGE bench:log + - COUNT 1 | head -1)
    stop_replicas
    stop_pid "$redis_pid"
    awk -v n="$len" -v f="${first%-*}" -v l="${last%-*}" -v r="$rate" -v o="${sent:-0}" 'BEGIN {
        ms = l - f
        per_s = ms > 0 ? (n - 1) * 1000 / ms : 0
        printf "RESULT label=replicas workload=INGEST offered_per_s=%d published=%d appended=%d" \
            " append_ms=%d ingest_per_s=%.0f\n", r, o, n, ms, per_s
    }' | tee -a "$results"
}

# nchan_once WORKLOAD PREFIX LOADGEN-ARGS...: fresh nginx, one run.
nchan_once() {
    local workload=$1 prefix=$2
    shift 2
    start_nchan
    local pubargs=(--pub "http://127.0.0.1:$nginx_pub_port" --pub-topic "/pub/$prefix%d")
    [ "$workload" = IDLE ] && pubargs=()
    run_loadgen nchan "$workload" --sub "$sub_scheme://127.0.0.1:$nginx_port/sub/$prefix%d" \
        "${transport_opts[@]}" "${pubargs[@]}" --pid "$nginx_worker" "$@" || true
    if grep -q -i 'emerg\|alert\|crit' "$work/nginx/error.log" 2>/dev/null; then
        echo "bench.sh: nginx error log:" >&2
        tail -5 "$work/nginx/error.log" >&2
    fi
    stop_pid "$nginx_pid"
}

# measure sluice|nchan ARGS...: one run (see sluice_once / nchan_once),
# repeated up to RETRIES times while the rest of the machine used more
# than 25% of a core during it; the least disturbed run goes to the table.
measure() {
    local server=$1 best="" best_other=1000000 other attempt
    shift
    for attempt in $(seq "${RETRIES:-2}"); do
        "${server}_once" "$@"
        [ -s "$work/last" ] || continue
        other=$(sed -n 's/.* other_cpu_pct=\([0-9]*\).*/\1/p' "$work/last")
        if [ "${other:-0}" -lt "$best_other" ]; then
            best=$(cat "$work/last")
            best_other=${other:-0}
        fi
        [ "$best_other" -le 25 ] && break
        echo "bench.sh: run disturbed (rest of machine ${other}% of a core), again" >&2
    done
    [ -n "$best" ] && echo "$best" >>"$results"
    return 0
}

print_env() {
    echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine: $(uname -srm), $(nproc) cores," \
        "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
        "open files $(ulimit -n)"
    echo "sluice:  $("$SLUICE_BIN" --version 2>&1 | head -1)" \
        "(git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "nginx:   $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')," \
        "nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
    echo "redis:   $(redis-server --version | awk '{print $3}')"
    echo "libevent $(pkg-config --modversion libevent 2>/dev/null || echo '?')," \
        "loadgen: one process, one thread"
}

# ---- the table

# val LABEL WORKLOAD KEY: a value from the RESULT lines ("-" if absent).
val() {
    awk -v l="$1" -v w="$2" -v k="$3" '
        $0 ~ " label=" l " " && $0 ~ " workload=" w " " {
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == k) v = kv[2]
            }
        }
        END { print (v == "" ? "-" : v) }' "$results"
}

# The two columns of the table (the ratio is a / b).
col_a=sluice
col_b=nchan

# row WORKLOAD TITLE KEY [SCALE [RATIO]]: col_a, col_b and (unless RATIO
# is 0) col_a/col_b for one key.
row() {
    local w=$1 title=$2 key=$3 scale=${4:-1} ratio=${5:-1} s n
    s=$(val "$col_a" "$w" "$key")
    n=$(val "$col_b" "$w" "$key")
    awk -v t="$title" -v s="$s" -v n="$n" -v f="$scale" -v rt="$ratio" 'BEGIN {
        fs = (s == "-") ? "-" : sprintf("%.2f", s * f)
        fn = (n == "-") ? "-" : sprintf("%.2f", n * f)
        r = (rt == 0 || s == "-" || n == "-" || n + 0 == 0) ? "" : sprintf("%.2f", s / n)
        sub(/\.00$/, "", fs); sub(/\.00$/, "", fn)
        printf "  %-30s %14s %14s %10s\n", t, fs, fn, r
    }'
}

# counts WORKLOAD: streams ok, delivered/expected, missing, dups (no ratio).
counts() {
    local w=$1 l
    for l in "$col_a" "$col_b"; do
        printf '%s\n' "$(val $l "$w" ok)/$(val $l "$w" conns) $(val $l "$w" delivered)/$(val $l "$w" expected) $(val $l "$w" missing) $(val $l "$w" dups)"
    done | awk '{ s[NR] = $0; split($0, f, " "); ok[NR] = f[1]; de[NR] = f[2]; mi[NR] = f[3]; du[NR] = f[4] }
        END {
            printf "  %-30s %14s %14s\n", "streams ok", ok[1], ok[2]
            printf "  %-30s %14s %14s\n", "delivered/expected", de[1], de[2]
            printf "  %-30s %14s %14s\n", "missing / dup", mi[1] " / " du[1], mi[2] " / " du[2]
        }'
}

latency_rows() {
    row "$1" "latency p50 (ms)" p50_us 0.001
    row "$1" "latency p90 (ms)" p90_us 0.001
    row "$1" "latency p99 (ms)" p99_us 0.001
    row "$1" "latency max (ms)" max_us 0.001
}

# The rows of W1 and W2 (one topic, 5000 streams); $1 labels redis's CPU.
fanout_rows() {
    local w
    for w in W1 W2; do
        grep -q "workload=$w " "$results" || continue
        local rate=10; [ "$w" = W2 ] && rate=50
        echo "$w: 5000 streams on 1 topic, $rate events/s, 128 B, ${DURATION} s"
        counts "$w"
        latency_rows "$w"
        row "$w" "server CPU per delivery (us)" cpu_per_delivery_us
        row "$w" "server CPU (% of 1 core)" server_cpu_pct
        row "$w" "deliveries/s" deliveries_per_s
        row "$w" "loadgen CPU (% of 1 core)" client_cpu_pct 1 0
        row "$w" "$1" bus_cpu_s 1 0
        row "$w" "rest of machine (% of 1 core)" other_cpu_pct 1 0
    done
}

print_table() {
    echo
    echo "== results (ratio = sluice / nchan; lower is better for CPU, memory, latency)"
    printf "  %-30s %14s %14s %10s\n" "" sluice nchan ratio
    local w
    fanout_rows "redis CPU (s, sluice's bus)"
    if grep -q "workload=IDLE " "$results"; then
        echo "IDLE: 19000 open streams, no events"
        counts IDLE
        row IDLE "server RSS before (MiB)" rss_before_kib 0.0009765625
        row IDLE "server RSS open (MiB)" rss_open_kib 0.0009765625
        row IDLE "RSS per stream (bytes)" rss_per_stream_b
    fi
    for w in W4-1k W4-10k; do
        grep -q "workload=$w " "$results" || continue
        echo "$w: ${w#W4-} streams, one topic each, 5000 events/s round robin, ${DURATION} s"
        counts "$w"
        latency_rows "$w"
        row "$w" "server CPU per event (us)" cpu_per_event_us
        row "$w" "server CPU (% of 1 core)" server_cpu_pct
        row "$w" "RSS per stream (bytes)" rss_per_stream_b
        row "$w" "rest of machine (% of 1 core)" other_cpu_pct 1 0
    done
}

# The replica table: three replicas fed by one log against one sluice.
print_replica_table() {
    col_a=replicas
    col_b=sluice
    echo
    echo "== results (ratio = 3 replicas / 1 sluice; CPU is the replicas' sum)"
    printf "  %-30s %14s %14s %10s\n" "" replicas sluice ratio
    fanout_rows "redis CPU (s, bus and log)"
    if grep -q "workload=INGEST " "$results"; then
        echo "INGEST: one redis source, one sluice with history.redis"
        sed -n 's/^RESULT label=replicas workload=INGEST /  /p' "$results"
    fi
}

# The table of --transports: each workload over each transport, then
# the transports' ratios for each server, then sluice's targets.
transport_title() {
    case "$1" in
        h1) echo "cleartext HTTP/1.1" ;;
        h1-tls) echo "HTTP/1.1 over TLS" ;;
        h2) echo "HTTP/2 over TLS" ;;
    esac
}

# text_row WORKLOAD TITLE KEY: a value that is not a number (too wide
# for the columns), both servers on one line.
text_row() {
    printf "  %-30s %s: %s, %s: %s\n" "$2" "$col_a" "$(val "$col_a" "$1" "$3")" \
        "$col_b" "$(val "$col_b" "$1" "$3")"
}

# quotient LABEL KEY WORKLOAD-A WORKLOAD-B: A's value over B's ("-" if
# either is missing).
quotient() {
    local a b
    a=$(val "$1" "$3" "$2")
    b=$(val "$1" "$4" "$2")
    awk -v a="$a" -v b="$b" 'BEGIN {
        print (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }'
}

# ratio_row TITLE KEY WORKLOAD-A WORKLOAD-B: A / B for each server.
ratio_row() {
    printf "  %-30s %14s %14s\n" "$1" "$(quotient sluice "$2" "$3" "$4")" \
        "$(quotient nchan "$2" "$3" "$4")"
}

# target TITLE VALUE OP LIMIT: one of sluice's targets, met or not.
target() {
    awk -v t="$1" -v v="$2" -v op="$3" -v lim="$4" 'BEGIN {
        if (v == "-") { printf "  %-46s %6s   (target %s %s): no figure\n", t, v, op, lim; exit }
        ok = (op == "<=") ? v + 0 <= lim + 0 : v + 0 < lim + 0
        printf "  %-46s %6s   (target %s %s): %s\n", t, v, op, lim, ok ? "met" : "NOT MET"
    }'
}

# client_note WORKLOAD: a warning when loadgen (one thread) used most of
# a core: the client, not the server, may then have set the pace.
client_note() {
    local l c
    for l in "$col_a" "$col_b"; do
        c=$(val "$l" "$1" client_cpu_pct)
        if awk -v c="$c" 'BEGIN { exit !(c != "-" && c + 0 >= 90) }'; then
            echo "  note: loadgen used $c% of a core against $l: it may have set the pace"
        fi
    done
}

print_transport_table() {
    local w t rate conns
    col_a=sluice
    col_b=nchan
    echo
    echo "== results by transport (ratio = sluice / nchan; lower is better for CPU, memory, latency)"
    printf "  %-30s %14s %14s %10s\n" "" sluice nchan ratio
    for w in W1 W2; do
        rate=10; [ "$w" = W2 ] && rate=50
        for t in h1 h1-tls h2; do
            grep -q "workload=$w-$t " "$results" || continue
            conns=$(val sluice "$w-$t" connections)
            [ "$conns" = - ] && conns=$(val nchan "$w-$t" connections)
            echo "$w-$t: $(transport_title $t), $STREAMS streams / $conns connections," \
                "1 topic, $rate events/s, 128 B, ${DURATION} s"
            counts "$w-$t"
            row "$w-$t" "latency p50 (ms)" p50_us 0.001
            row "$w-$t" "latency p99 (ms)" p99_us 0.001
            row "$w-$t" "server CPU per delivery (us)" cpu_per_delivery_us
            row "$w-$t" "server CPU (% of 1 core)" server_cpu_pct
            row "$w-$t" "server RSS, streams open (MiB)" rss_open_kib 0.0009765625
            row "$w-$t" "server RSS at the end (MiB)" rss_end_kib 0.0009765625
            row "$w-$t" "deliveries/s" deliveries_per_s
            [ "$t" != h1 ] && text_row "$w-$t" "TLS negotiated" tls
            [ "$t" = h2 ] && row "$w-$t" "nghttp2 allocs in loadgen" h2_allocs 1 0
            row "$w-$t" "loadgen CPU (% of 1 core)" client_cpu_pct 1 0
            row "$w-$t" "rest of machine (% of 1 core)" other_cpu_pct 1 0
            client_note "$w-$t"
        done
    done
    echo
    echo "== CPU per delivery, one transport over another (each server against itself)"
    printf "  %-30s %14s %14s\n" "" sluice nchan
    for w in W1 W2; do
        ratio_row "$w: TLS h1 / cleartext h1" cpu_per_delivery_us "$w-h1-tls" "$w-h1"
        ratio_row "$w: TLS h2 / TLS h1" cpu_per_delivery_us "$w-h2" "$w-h1-tls"
        ratio_row "$w: TLS h2 / cleartext h1" cpu_per_delivery_us "$w-h2" "$w-h1"
    done
    echo
    echo "== sluice against issue 16's targets (CPU per delivery)"
    for w in W1 W2; do
        target "$w: TLS h1 / cleartext h1" \
            "$(quotient sluice cpu_per_delivery_us "$w-h1-tls" "$w-h1")" "<=" 1.3
        target "$w: TLS h2 / TLS h1" \
            "$(quotient sluice cpu_per_delivery_us "$w-h2" "$w-h1-tls")" "<" 1
        target "$w: TLS h2 / cleartext h1" \
            "$(quotient sluice cpu_per_delivery_us "$w-h2" "$w-h1")" "<" 1
        target "$w: sluice / nchan over TLS h2" "$(awk -v s="$(val sluice "$w-h2" cpu_per_delivery_us)" \
            -v n="$(val nchan "$w-h2" cpu_per_delivery_us)" 'BEGIN {
            print (s == "-" || n == "-" || n + 0 == 0) ? "-" : sprintf("%.2f", s / n) }')" "<=" 0.8
    done
}

# ---- modes

run_smoke() {
    start_redis
    start_sluice bench
    local out rc=0
    out=$(timeout 25 "$LOADGEN" --label sluice --workload smoke \
        --sub "http://127.0.0.1:$sluice_port/bench/t%d" \
        --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' \
        --conns 200 --rate 20 --duration 2 --drain 3 --pid "$sluice_pid" \
        --check) || rc=$?
    echo "$out"
    if [ "$rc" != 0 ]; then
        echo "bench.sh --smoke: FAILED (loadgen status $rc); sluice log:" >&2
        tail -20 "$work/sluice.log" >&2
        exit 1
    fi
    echo "bench.sh --smoke: ok"
}

# A few seconds of sluice over TLS: HTTP/1.1 (a connection per stream),
# then HTTP/2 (100 streams per connection); every delivery exactly once.
run_transports_smoke() {
    local out rc=0 t
    make_cert
    transport=h2 # the TLS and HTTP/2 config
    start_redis
    start_sluice bench
    for t in h1-tls h2; do
        transport=$t
        transport_args
        out=$(timeout 25 "$LOADGEN" --label sluice --workload "smoke-$t" \
            --sub "https://127.0.0.1:$sluice_port/bench/t%d" "${transport_opts[@]}" \
            --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' --topics 4 \
            --conns 200 --rate 20 --settle 0.5 --duration 2 --drain 3 \
            --pid "$sluice_pid" --check) || rc=$?
        echo "$out"
        if [ "$rc" != 0 ]; then
            echo "bench.sh --transports-smoke: FAILED over $t (loadgen status $rc); sluice log:" >&2
            tail -20 "$work/sluice.log" >&2
            exit 1
        fi
    done
    echo "bench.sh --transports-smoke: ok"
}

# perf profile of sluice during W2 (PROFILE_RATE=10 for W1): 10 s of
# cpu-clock samples with DWARF call chains in the publishing phase.
run_profile() {
    command -v perf >/dev/null || { echo "bench.sh: perf missing" >&2; exit 1; }
    local rate=${PROFILE_RATE:-50} data=$work/perf.data
    start_redis
    start_sluice bench
    wait_quiet
    "$LOADGEN" --label sluice --workload "profile-$rate" \
        --sub "http://127.0.0.1:$sluice_port/bench/t%d" \
        --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' \
        --conns 5000 --rate "$rate" --duration 16 --pid "$sluice_pid" >"$work/lg.out" &
    local lg=$!
    pids+=("$lg")
    sleep 5 # ramp (2.5 s) + settle (1 s) + margin
    perf record -F 499 -e cpu-clock --call-graph dwarf,16384 -p "$sluice_pid" \
        -o "$data" -- sleep 10 2>"$work/perf.log" || { cat "$work/perf.log" >&2; exit 1; }
    wait "$lg" || true
    forget_pid "$lg"
    cat "$work/lg.out"
    echo "== self time by object"
    perf report -i "$data" --no-children --stdio --sort dso -g none 2>/dev/null \
        | grep '%' | grep -v '^#' | head -8
    echo "== top symbols by self time"
    perf report -i "$data" --no-children --stdio --sort dso,symbol -g none \
        2>/dev/null | grep '%' | grep -v '^#' | head -30
    echo "== inclusive time of sluice's and libevent's functions"
    perf report -i "$data" --children --stdio --sort symbol -g none \
        2>/dev/null | grep '%' | grep -v '^#' | head -40
    if [ "${KEEP:-0}" = 1 ]; then
        echo "perf data: $data (perf report -i $data)"
    fi
}

# Syscalls of each server under W1 (strace -c for 5 s of the publishing
# phase). strace slows the server down: only the counts mean something.
run_syscalls() {
    command -v strace >/dev/null || { echo "bench.sh: strace missing" >&2; exit 1; }
    local server pid lg
    for server in sluice nchan; do
        if [ $server = sluice ]; then
            start_redis
            start_sluice bench
            pid=$sluice_pid
            "$LOADGEN" --label sluice --workload W1-strace --conns 5000 --rate 10 \
                --duration 12 --sub "http://127.0.0.1:$sluice_port/bench/t%d" \
                --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' \
                --pid "$pid" >"$work/lg.out" &
        else
            start_nchan
            pid=$nginx_worker
            "$LOADGEN" --label nchan --workload W1-strace --conns 5000 --rate 10 \
                --duration 12 --sub "http://127.0.0.1:$nginx_port/sub/t%d" \
                --pub "http://127.0.0.1:$nginx_port" --pub-topic '/pub/t%d' \
                --pid "$pid" >"$work/lg.out" &
        fi
        lg=$!
        pids+=("$lg")
        sleep 6
        timeout -s INT 5 strace -c -p "$pid" -o "$work/strace.out" 2>/dev/null || true
        wait "$lg" || true
        forget_pid "$lg"
        echo "== $server: syscalls during 5 s of W1"
        grep -v '^RESULT' "$work/lg.out"
        head -12 "$work/strace.out"
        if [ $server = sluice ]; then
            stop_pid "$sluice_pid"
            stop_pid "$redis_pid"
        else
            stop_pid "$nginx_pid"
        fi
    done
}

run_full() {
    print_env
    command -v "$NGINX" >/dev/null && [ -f "$NCHAN_MODULE" ] || {
        echo "bench.sh: nginx or $NCHAN_MODULE missing" >&2; exit 1; }
    local d=$DURATION
    case ",$workloads," in *,W1,*)
        echo "== W1"
        measure sluice W1 bench --conns 5000 --rate 10 --duration "$d"
        measure nchan W1 t --conns 5000 --rate 10 --duration "$d"
    esac
    case ",$workloads," in *,W2,*)
        echo "== W2"
        measure sluice W2 bench --conns 5000 --rate 50 --duration "$d"
        measure nchan W2 t --conns 5000 --rate 50 --duration "$d"
    esac
    case ",$workloads," in *,IDLE,*)
        echo "== IDLE"
        measure sluice IDLE bench --conns 19000 --idle 5
        measure nchan IDLE t --conns 19000 --idle 5
    esac
    case ",$workloads," in *,W4,*)
        echo "== W4"
        local n
        for n in 1000 10000; do
            measure sluice "W4-$((n / 1000))k" dev --conns "$n" --topics "$n" \
                --rate 5000 --duration "$d"
            measure nchan "W4-$((n / 1000))k" dev --conns "$n" --topics "$n" \
                --rate 5000 --duration "$d" --pub-conns 8
        done
    esac
    print_table
}

# W1 and W2 on one sluice and on three replicas, then the ingest rate.
run_replicas() {
    print_env
    local d=$DURATION
    echo "== W1"
    measure sluice W1 bench --conns 5000 --rate 10 --duration "$d"
    measure replicas W1 bench --conns 5000 --rate 10 --duration "$d"
    echo "== W2"
    measure sluice W2 bench --conns 5000 --rate 50 --duration "$d"
    measure replicas W2 bench --conns 5000 --rate 50 --duration "$d"
    echo "== INGEST"
    wait_quiet
    ingest_once "${INGEST_RATE:-100000}" 3 >/dev/null
    print_replica_table
}

# W1 and W2 over the three transports, on sluice and on nchan.
run_transports() {
    print_env
    command -v "$NGINX" >/dev/null && [ -f "$NCHAN_MODULE" ] || {
        echo "bench.sh: nginx or $NCHAN_MODULE missing" >&2; exit 1; }
    echo "openssl: $(openssl version | awk '{print $2}'), nghttp2 $(pkg-config --modversion libnghttp2 2>/dev/null || echo '?')"
    make_cert
    local w t rate
    for w in W1 W2; do
        rate=10; [ "$w" = W2 ] && rate=50
        for t in h1 h1-tls h2; do
            echo "== $w over $(transport_title $t)"
            transport=$t
            measure sluice "$w-$t" bench --conns "$STREAMS" --rate "$rate" --duration "$DURATION"
            measure nchan "$w-$t" t --conns "$STREAMS" --rate "$rate" --duration "$DURATION"
        done
    done
    transport=h1
    print_transport_table
}

# A few seconds: three replicas must deliver everything exactly once, and
# the log must take a small burst whole.
run_replicas_smoke() {
    local out rc=0 p pidargs=() ports
    start_redis
    start_replicas 3
    for p in "${replica_pids[@]}"; do pidargs+=(--pid "$p"); done
    ports=$(IFS=,; echo "${replica_ports[*]}")
    out=$(timeout 25 "$LOADGEN" --label replicas --workload smoke \
        --sub "http://127.0.0.1:${replica_ports[0]}/bench/t%d" --sub-ports "$ports" \
        --pub "redis://127.0.0.1:$redis_port" --pub-topic 't%d' \
        --conns 300 --rate 20 --duration 2 --drain 3 "${pidargs[@]}" \
        --check) || rc=$?
    echo "$out"
    stop_replicas
    stop_pid "$redis_pid"
    if [ "$rc" != 0 ]; then
        echo "bench.sh --replicas-smoke: FAILED (loadgen status $rc); sluice log:" >&2
        tail -20 "$work/sluice.log" >&2
        exit 1
    fi
    out=$(ingest_once 2000 1)
    echo "$out"
    grep -Eq ' published=([1-9][0-9]*) appended=\1 ' <<<"$out" || {
        echo "bench.sh --replicas-smoke: FAILED (the log did not take every event published)" >&2
        tail -20 "$work/sluice.log" >&2
        exit 1
    }
    echo "bench.sh --replicas-smoke: ok"
}

case "$mode" in
    smoke) run_smoke ;;
    replicas) run_replicas ;;
    replicas-smoke) run_replicas_smoke ;;
    profile) print_env; run_profile ;;
    syscalls) print_env; run_syscalls ;;
    transports) run_transports ;;
    transports-smoke) run_transports_smoke ;;
    full) run_full ;;
esac
