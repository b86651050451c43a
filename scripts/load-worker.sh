#!/usr/bin/env bash
# Tracking throughput of ONE Durable Object under wrangler dev --local (workerd) on loopback:
# wrk posts heartbeats of 2000 visitors of one site (so every request goes Worker -> the same
# Durable Object). Run scripts/test-worker.sh first (it installs the tools and builds the
# bundle this uses).
#
#   scripts/load-worker.sh [duration_seconds=10] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dur=${1:-10}
conns=${2:-32}
example="$root/examples/worker"
[ -f "$example/build/index_bg.wasm" ] || { echo "build the Worker first: scripts/test-worker.sh" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
tmp=$(mktemp -d)
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_LOG_PATH="$tmp/logs"
(cd "$example" && exec node node_modules/wrangler/bin/wrangler.js dev -c wrangler.test.toml \
  --local --ip 127.0.0.1 --port 8804 --inspector-port 8814 --persist-to "$tmp/state" \
  --show-interactive-dev-session=false --var TIPPEN_VISIBLE_GRACE_MS:600000 --log-level warn) \
  >"$tmp/wrangler.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 300); do curl -fsS http://127.0.0.1:8804/ >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$tmp/hb.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tippen-API-Key"] = "pk_a"
local n = 0
request = function()
  n = n + 1
  local i = n % 2000
  local body = string.format('{"event":"heartbeat","visitor":{"visitorId":"visitor_1729080000000_%06d","tabId":"tab_1","url":"https://shop.example.com/products/item-%d","timestamp":"2025-10-16T12:00:00Z","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","visibility":"visible"},"website":"shop.example.com"}', i, i)
  return wrk.format(nil, "/track/visitor", nil, body)
end
LUA
wrk -t1 -c"$conns" -d5s -s "$tmp/hb.lua" http://127.0.0.1:8804 >/dev/null   # warm-up: creates the visitors
wrk -t1 -c"$conns" -d"${dur}s" --latency -s "$tmp/hb.lua" http://127.0.0.1:8804 | tee "$tmp/wrk.out"
visitors=$(curl -fsS -H 'X-Tippen-API-Key: sk_a_0123456789abcdefghij' http://127.0.0.1:8804/api/visitors | grep -o '"visitorId"' | wc -l)
echo "one Durable Object (site a): $(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out") heartbeats/s; $visitors visitors listed"
