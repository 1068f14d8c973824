#!/usr/bin/env bash
# include_graph.sh - the include edges between top-level folders, with
# counts: "lib -> config (9)" means nine #include lines in lib/ name a
# header in config/. The layers are config <- lib <- adapters, auth <-
# bridge; this prints nothing that points the other way (see README,
# "How an event flows"), and exits 1 if it does.
set -euo pipefail
cd "$(dirname "$0")/.."
rank() { case $1 in config) echo 0;; lib) echo 1;; adapters|auth) echo 2;; bridge) echo 3;; *) echo 9;; esac; }
status=0
for d in config lib adapters auth bridge; do
  while read -r n target; do
    [ "$target" = "$d" ] && continue
    echo "$d -> $target ($n)"
    if [ "$(rank "$target")" -ge "$(rank "$d")" ]; then
      echo "  ^ points up or sideways: $d must not include $target" >&2
      status=1
    fi
  done < <(grep -ho '#include "[a-z_]*/' "$d"/*.[ch] | sed 's/#include "//; s#/##' | sort | uniq -c)
done
exit $status
