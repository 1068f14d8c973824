#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets with clang and run each
# for FUZZ_SECONDS (default 10) from its committed seed corpus. By default
# new inputs go to a scratch directory, not into the repository (the CI
# mode). See tests/fuzz/README.md.
#   FUZZ_SECONDS=600 tests/fuzz/run.sh                a longer run by hand
#   FUZZ_SECONDS=600 FUZZ_MERGE=1 tests/fuzz/run.sh   ... that keeps what it
#       found: the committed corpus and the new inputs are merged with
#       -set_cover_merge=1 (a minimising -merge) into
#       tests/fuzz/corpus/<name>/, ready to commit
#   FUZZ_TARGETS="journal auth" tests/fuzz/run.sh     only these targets
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-10}
build=${FUZZ_BUILD_DIR:-build-fuzz}
merge=${FUZZ_MERGE:-0}
CC=clang cmake -S . -B "$build" -DSLUICE_FUZZ=ON -DSLUICE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
read -r -a targets <<<"${FUZZ_TARGETS:-config route sse query auth http journal stream_fields headers cors h2}"
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
      # Minimising merge (greedy set cover) of the committed corpus and
      # the new inputs into an empty directory: it keeps the smallest set
      # of inputs that has all their coverage.
      mkdir -p "$scratch/$t.merged"
      "$build/tests/fuzz_$t" -set_cover_merge=1 -timeout=10 \
        -rss_limit_mb=2048 "$scratch/$t.merged" "$corpus" "$scratch/$t" \
        >"$scratch/$t.merge.log" 2>&1
      # Named seeds stay; SHA-1-named inputs (from earlier merges) that
      # the new set does not keep go; kept inputs not yet committed come.
      for f in "$corpus"/*; do
        name=$(basename "$f")
        [[ $name =~ ^[0-9a-f]{40}$ ]] || continue
        [ -f "$scratch/$t.merged/$name" ] || rm -f "$f"
      done
      have=$(find "$corpus" -type f -exec sha1sum {} + | cut -c1-40)
      for f in "$scratch/$t.merged"/*; do
        [ -f "$f" ] || continue
        sum=$(sha1sum "$f" | cut -c1-40)
        grep -qx "$sum" <<<"$have" || cp "$f" "$corpus/$sum"
      done
      after=$(find "$corpus" -type f | wc -l)
      echo "fuzz_$t: corpus $before -> $after files" \
        "($(du -s --apparent-size --block-size=1 "$corpus" | cut -f1) bytes)"
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
