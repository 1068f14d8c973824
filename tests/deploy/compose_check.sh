#!/usr/bin/env bash
# tests/deploy/compose_check.sh - brings deploy/docker-compose.yml up on a
# Debian 12 machine that reaches Debian's archive but no image registry,
# and checks it end to end (tests/deploy/compose_check.js): SSE through
# Caddy, streams spread over sluice1 and sluice2, one ingest leader,
# kill -9 of the ingest leader's container and an exact Last-Event-ID
# resume through Caddy. A manual check (minutes, root, a Docker engine),
# not part of CI.
#
#   tests/deploy/compose_check.sh       up, check, down -v
#   KEEP=1 tests/deploy/compose_check.sh   leave the project running
#
# What it does, in order:
#   1. apt-get install docker.io docker-compose mmdebstrap nodejs if
#      missing; starts dockerd in the background when no engine answers
#      (and stops it at the end);
#   2. debian:12-slim when missing: mmdebstrap --variant=minbase bookworm,
#      then docker import;
#   3. the images the compose file names (redis:7-bookworm,
#      eclipse-mosquitto:2, node:20-bookworm-slim, caddy:2), when missing,
#      as stand-ins built FROM that base with Debian's packages
#      (tests/deploy/standins/*; node is Debian's 18, caddy Debian's 2.6.2);
#   4. docker-compose -p sluice-check up -d --build (sluice:local from
#      deploy/Dockerfile), Caddy's HTTPS on a free port (HTTPS_PORT);
#   5. node compose_check.js; then docker-compose down -v.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
deploy=$root/deploy
project=sluice-check
work=$(mktemp -d /tmp/sluice-compose-check.XXXXXX)
started_dockerd=
made_env=

cleanup() {
    set +e
    if [ "${KEEP:-0}" != 1 ]; then
        (cd "$deploy" && docker-compose -p "$project" down -v >/dev/null 2>&1)
        [ -n "$made_env" ] && rm -f "$deploy/.env"
        if [ -n "$started_dockerd" ]; then
            kill "$started_dockerd"
            wait "$started_dockerd" 2>/dev/null
        fi
        rm -rf "$work"
    else
        echo "compose_check: left running (project $project, work dir $work)" >&2
    fi
}
trap cleanup EXIT

missing=()
for p in docker.io docker-compose mmdebstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    dockerd >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect debian:12-slim >/dev/null 2>&1; then
    echo "compose_check: debian:12-slim from mmdebstrap" >&2
    mmdebstrap --variant=minbase bookworm "$work/rootfs.tar" >/dev/null
    docker import "$work/rootfs.tar" debian:12-slim >/dev/null
fi

for standin in redis:redis:7-bookworm mosquitto:eclipse-mosquitto:2 \
               node:node:20-bookworm-slim caddy:caddy:2; do
    dir=${standin%%:*}
    tag=${standin#*:}
    if ! docker image inspect "$tag" >/dev/null 2>&1; then
        echo "compose_check: stand-in $tag" >&2
        docker build -q -t "$tag" "$here/standins/$dir" >/dev/null
    fi
done

if [ ! -f "$deploy/.env" ]; then
    cp "$deploy/.env.example" "$deploy/.env"
    made_env=1
fi
https_port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport')
http_port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport')
export HTTPS_PORT=$https_port HTTP_PORT=$http_port
cd "$deploy"
docker-compose -p "$project" up -d --build
for _ in $(seq 120); do
    healthy=$(docker-compose -p "$project" ps | grep -c 'sluice[12]_1 .*(healthy)' || true)
    [ "$healthy" = 2 ] && break
    sleep 1
done
docker-compose -p "$project" ps
COMPOSE_PROJECT=$project HTTPS_PORT=$https_port node "$here/compose_check.js"
