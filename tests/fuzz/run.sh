#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets with clang and run each
# for FUZZ_SECONDS (default 10) from its committed seed corpus. New inputs
# go to a scratch directory, not into the repository.
#   FUZZ_SECONDS=600 tests/fuzz/run.sh      a longer run by hand
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-10}
build=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$build" -DSLUICE_FUZZ=ON -DSLUICE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets=(config route sse query auth http)
cmake --build "$build" -j"$(nproc)" \
  --target "${targets[@]/#/fuzz_}" >/dev/null
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  if "$build/tests/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$scratch/$t-" \
      "$scratch/$t" "tests/fuzz/corpus/$t" >"$scratch/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" |
      grep -o '[0-9]*$' || echo '?')
    echo "fuzz_$t: ok, $runs executions in ${seconds}s"
  else
    echo "fuzz_$t: FAILED"
    tail -40 "$scratch/$t.log"
    for a in "$scratch/$t"-*; do
      [ -f "$a" ] && echo "input ($a): $(base64 -w0 "$a")"
    done
    status=1
  fi
done
exit $status
