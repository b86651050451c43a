#!/usr/bin/env bash
# `load hold` against one reference server binary, server on core 0 and harness on core 1:
#   pair.sh <tippen-server binary> <label> [visitors=100000] [sockets=0]
# (LOAD: the harness binary; GRACE: the server's visible grace in ms, 900000 for a million
# visitors, whose run outlasts the real 60 s). How this folder's files were made, the release
# binaries of 26cd3af ("before") and of the commit after it ("after"), one after the other:
#   pair.sh before/tippen-server before-1 100000   (and -2, -3; then after-1..3)
#   GRACE=900000 pair.sh before/tippen-server 1m-before 1000000   (then 1m-after)
set -euo pipefail
bin=$1; label=$2; n=${3:-100000}; sockets=${4:-0}
load=${LOAD:-${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}/release/load}
port=18931
tmp=$(mktemp -d)
TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 TIPPEN_MAX_VISITORS_PER_SITE=10000000 \
  TIPPEN_VISIBLE_GRACE_MS=${GRACE:-60000} TIPPEN_MAX_SOCKETS_PER_SITE=100000 TIPPEN_MAX_SOCKETS_PER_ADDRESS=100000 RUST_LOG=warn taskset -c 0 "$bin" --listen "127.0.0.1:$port" --db "$tmp/hold.db" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
taskset -c 1 "$load" hold --name "$label" --http "http://127.0.0.1:$port" --pid "$pid" --visitors "$n" --sockets "$sockets" --out "hold-$label.json" >/dev/null 2>&1 || echo "hold failed"
kill $pid; wait $pid 2>/dev/null || true
rm -rf "$tmp"
python3 - "hold-$label.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
print(sys.argv[1], 'held', d['held'], 'errors', d['errors'], 'rss', d['rss_before'], d['rss_half'], d['rss_held'], 'avg %.0f' % d['bytes_per_visitor'], 'marginal %.0f' % d['marginal_bytes_per_visitor'], 'socket %.0f' % d['bytes_per_socket'])
PY
