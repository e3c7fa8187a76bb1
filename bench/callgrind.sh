#!/usr/bin/env bash
# Runs the server under callgrind when the bench starts it to serve, and
# as itself for the bench's admin commands (making the API key), so that
# the instructions a scenario costs can be counted: the count repeats for
# the same build and load, where times on a shared VM do not.
#
#   cargo build --release -p endusers
#   cargo run --release -p endusers-bench -- all --server bench/callgrind.sh \
#       --only webhooks --users 200 --seconds 5 --connections 8 --webhook-rates 200,400
#   callgrind_annotate bench/tmp/callgrind.<pid>.out | head -40
#
# CALLGRIND_SERVER names the binary to run (default: the workspace's release
# build); the counts land in bench/tmp/callgrind.<pid>.out. Keep the load
# small: under callgrind the server runs some fifty times slower.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
server="${CALLGRIND_SERVER:-$here/../target/release/endusers}"
for arg in "$@"; do
  if [ "$arg" = "serve" ]; then
    mkdir -p "$here/tmp"
    exec valgrind --tool=callgrind --log-file="$here/tmp/valgrind.%p.log" \
      --callgrind-out-file="$here/tmp/callgrind.%p.out" "$server" "$@"
  fi
done
exec "$server" "$@"
