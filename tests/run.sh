#!/usr/bin/env bash
# tests/run.sh - install what is missing, build, and run the whole suite:
# unit tests and integration tests (real redis-server, mosquitto, sluice,
# curl/eventsource clients and headless Chromium) in a normal build, then
# again under AddressSanitizer + UBSan (LeakSanitizer on), then a short
# libFuzzer run of every fuzz target. Debian 12, as root.
#   tests/run.sh                 everything
#   SKIP_SANITIZE=1 tests/run.sh skip the sanitizer pass (faster, local)
#   SKIP_FUZZ=1 tests/run.sh     skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/build.sh
# Browser tests need Debian's Chromium (playwright-core drives it); the
# replica tests a round-robin proxy (nginx), libfaketime (two processes
# at one instant) and Redis Sentinel. The tests start their own nginx and
# sentinels on free ports; the packages' services are not used (and do
# not start here: policy-rc.d or no init).
test_packages=(chromium nginx-light faketime redis-sentinel)
missing=()
for p in "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Where the install did start the packaged services, stop them.
  service redis-sentinel stop >/dev/null 2>&1 || true
  service nginx stop >/dev/null 2>&1 || true
fi
(cd tests && npm ci --no-audit --no-fund --loglevel=error)

# Brokers are started by the tests themselves on free ports; make sure the
# packaged services are not in the way.
export CTEST_OUTPUT_ON_FAILURE=1
echo "== tests (release build)"
ctest --test-dir build -j2 --timeout 300

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== tests under AddressSanitizer + UBSan"
  BUILD_DIR=build-asan CMAKE_ARGS="-DSLUICE_SANITIZE=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug" \
    deploy/build.sh
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -j2 --timeout 300
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzing (${FUZZ_SECONDS:-10}s per target)"
  tests/fuzz/run.sh
fi
