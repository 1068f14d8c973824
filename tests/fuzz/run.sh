#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets with clang and run each
# for FUZZ_SECONDS (default 10) from its committed seed corpus. By default
# new inputs go to a scratch directory, not into the repository (the CI
# mode). See tests/fuzz/README.md.
#   FUZZ_SECONDS=600 tests/fuzz/run.sh                a longer run by hand
#   FUZZ_SECONDS=600 FUZZ_MERGE=1 tests/fuzz/run.sh   ... that keeps what it
#       found: the coverage-increasing inputs are merged (-merge=1, which
#       minimises) into tests/fuzz/corpus/<name>/, ready to commit
#   FUZZ_TARGETS="journal auth" tests/fuzz/run.sh     only these targets
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-10}
build=${FUZZ_BUILD_DIR:-build-fuzz}
merge=${FUZZ_MERGE:-0}
CC=clang cmake -S . -B "$build" -DSLUICE_FUZZ=ON -DSLUICE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
read -r -a targets <<<"${FUZZ_TARGETS:-config route sse query auth http journal stream_fields headers}"
cmake --build "$build" -j"$(nproc)" \
  --target "${targets[@]/#/fuzz_}" >/dev/null
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  corpus="tests/fuzz/corpus/$t"
  mkdir -p "$scratch/$t" "$corpus"
  if "$build/tests/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$scratch/$t-" \
      "$scratch/$t" "$corpus" >"$scratch/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" |
      grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$scratch/$t.log" | tail -1 || true)
    echo "fuzz_$t: ok, $runs executions in ${seconds}s (${cov:-cov: ?})"
    if [ "$merge" = 1 ]; then
      before=$(find "$corpus" -type f | wc -l)
      # Minimising merge of the committed corpus and the new inputs: only
      # inputs that add coverage are kept, the seeds first.
      mkdir -p "$scratch/$t.merged"
      "$build/tests/fuzz_$t" -merge=1 -timeout=10 -rss_limit_mb=2048 \
        "$scratch/$t.merged" "$corpus" "$scratch/$t" \
        >"$scratch/$t.merge.log" 2>&1
      # Keep the named seeds; add the merged inputs (named by their sha1).
      for f in "$scratch/$t.merged"/*; do
        [ -f "$f" ] || continue
        cmp -s "$f" "$corpus/$(basename "$f")" 2>/dev/null && continue
        found=0
        for s in "$corpus"/*; do
          cmp -s "$f" "$s" && { found=1; break; }
        done
        [ $found = 1 ] || cp "$f" "$corpus/"
      done
      after=$(find "$corpus" -type f | wc -l)
      echo "fuzz_$t: corpus $before -> $after files ($(du -sh "$corpus" | cut -f1))"
    fi
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
