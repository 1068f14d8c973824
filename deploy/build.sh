#!/usr/bin/env bash
# deploy/build.sh - install what is missing (Debian 12, as root) and build
# sluice into ./build. Used by the README's demo and test commands and by CI.
#   deploy/build.sh            release build in ./build
#   BUILD_DIR=x CMAKE_ARGS=".." deploy/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config clang libclang-rt-14-dev
  libevent-dev libhiredis-dev libmosquitto-dev libyaml-dev libjwt-dev
  libjansson-dev zlib1g-dev libssl-dev openssl libnghttp2-dev libcmocka-dev
  python3-h2 python3-hpack
  redis-server redis-tools mosquitto mosquitto-clients curl ca-certificates)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
# Node.js (tests, demo publisher): Debian's, unless a node is already there.
command -v node >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build.sh: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "build.sh: run as root (or install the packages above)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

build_dir=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DSLUICE_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
