#!/bin/sh
# Like the official image's docker-entrypoint.sh: redis-server started
# without a config file gets --protected-mode no (the container network
# is its protection).
set -e
if [ "$1" = redis-server ] && [ "${2#-}" != "$2" -o $# -eq 1 ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
