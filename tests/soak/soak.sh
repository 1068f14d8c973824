#!/usr/bin/env bash
# soak.sh - a long run of sluice under steady load, churn and broker
# restarts (not part of CI). What it does and how to read the CSV:
# tests/soak/README.md. The driver is tests/soak/soak.js.
#
#   tests/soak/soak.sh                     10 minutes, 5,000 streams
#   SOAK_SECONDS=180 tests/soak/soak.sh    3 minutes
#
# Environment (defaults): SLUICE_BIN (build/sluice of the repository),
# SOAK_SECONDS (600), SOAK_STREAMS (5000), SOAK_RATE (20 events/s),
# SOAK_CHANNELS (10), SOAK_CHURN_PCT (5), SOAK_CHURN_EVERY (10 s),
# SOAK_REDIS_RESTART_EVERY (120 s, 0 = never), SOAK_SAMPLE_EVERY (10 s),
# SOAK_CSV (soak-TIMESTAMP.csv in the current directory).
# Exit status 0 when every stream got every event exactly once and sluice
# stayed up and exited 0 on SIGTERM; 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SLUICE_BIN=${SLUICE_BIN:-$root/build/sluice}

[ -x "$SLUICE_BIN" ] || { echo "soak.sh: $SLUICE_BIN is not built (set SLUICE_BIN)" >&2; exit 1; }
for cmd in node redis-server; do
    command -v "$cmd" >/dev/null || { echo "soak.sh: $cmd is missing" >&2; exit 1; }
done

# 5,000 streams need 5,000 descriptors in this client and in sluice
# (which inherits the limit and raises its soft limit to the hard one).
ulimit -n "$(ulimit -Hn)"
need=$(( ${SOAK_STREAMS:-5000} + 200 ))
if [ "$(ulimit -n)" -lt "$need" ]; then
    echo "soak.sh: the open-file limit $(ulimit -n) is below $need; raise the hard limit" >&2
    exit 1
fi

exec node "$here/soak.js"
