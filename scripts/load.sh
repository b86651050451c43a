#!/usr/bin/env bash
# Load comparison: POST /track/visitor heartbeats against the reference server (axum + SQLite,
# release build) and against a bare axum handler parsing the same JSON, same machine, same
# run, with wrk. Prints both req/s figures and their ratio.
#
#   scripts/load.sh [duration_seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
dur=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
cargo build -q --release -p tippen-server -p tippen-benches --bin tippen-server --bin bare_axum
tmp=$(mktemp -d)
RUST_LOG=warn TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 "$CARGO_TARGET_DIR/release/tippen-server" --listen 127.0.0.1:18801 --db "$tmp/load.db" >"$tmp/server.log" 2>&1 &
s1=$!
"$CARGO_TARGET_DIR/release/bare_axum" 127.0.0.1:18802 >/dev/null 2>&1 &
s2=$!
trap 'kill $s1 $s2 2>/dev/null; rm -rf "$tmp"' EXIT
for port in 18801 18802; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
cat >"$tmp/hb.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tippen-API-Key"] = "demo_api_key"
local n = 0
request = function()
  n = n + 1
  local i = n % 2000
  local body = string.format('{"event":"heartbeat","visitor":{"visitorId":"visitor_1729080000000_%06d","tabId":"tab_1","url":"https://shop.example.com/products/item-%d","timestamp":"2025-10-16T12:00:00Z","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","visibility":"visible"},"website":"shop.example.com"}', i, i)
  return wrk.format(nil, "/track/visitor", nil, body)
end
LUA
run() { wrk -t1 -c"$conns" -d"${dur}s" -s "$tmp/hb.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
run http://127.0.0.1:18801 >/dev/null   # warm-up: creates the 2000 visitors
tippen=$(run http://127.0.0.1:18801)
bare=$(run http://127.0.0.1:18802)
echo "tippen (reference server, SQLite): $tippen req/s"
echo "bare axum (same JSON, same body):  $bare req/s"
awk -v a="$tippen" -v b="$bare" 'BEGIN { printf "ratio: %.1f %%\n", 100 * a / b }'
