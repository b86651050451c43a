#!/usr/bin/env bash
# Tests the Cloudflare Workers host (tippen-worker) under workerd, through `wrangler dev --local`:
#
#   1. installs what is missing: wasm-bindgen-cli 0.2.130 and worker-build 0.8.7 (cargo install
#      into ~/.cache/tippen/tools), the pinned npm packages of examples/worker (npm ci);
#   2. builds the Worker with worker-build (wasm-bindgen, wasm-opt and esbuild from the pinned
#      local copies: nothing is fetched from GitHub);
#   3. starts `wrangler dev --local` with a fresh --persist-to and runs, against it, the store
#      conformance suite on Durable Object storage (test route), the black-box conformance suite
#      (tippen-conformance, the same binary the other hosts pass), removal by the alarm over a
#      real dashboard WebSocket, the visitor channel (/ws/visitor), /api/video-call against a
#      stand-in provider and support alerts to a stand-in Slack webhook (worker::Fetch), and
#      two-site isolation (two Durable Objects);
#   4. starts a second `wrangler dev` with an enrichment provider (a stand-in IPinfo the check
#      runs) and checks a visitor's company arrives over the dashboard socket, and that the
#      other site's visitor from the same address is served from the shared KV cache;
#   5. restarts wrangler on the same --persist-to and checks a visitor inside its window is
#      listed again;
#   6. prints the gzip size of the wasm bundle.
#
# Every wrangler it starts is stopped by its pid, also on failure. Ports: 8801-8803 (HTTP),
# 8805 (stand-in video provider), 8806 (stand-in Slack webhook), 8811-8813 (inspector);
# enrichment: 8820 (HTTP), 8821 (inspector), 8822 (stand-in IPinfo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
artifacts="$root/test-artifacts"
mkdir -p "$artifacts"
step() { printf '\n=== worker: %s (%ss)\n' "$1" "$SECONDS"; }

tools="$HOME/.cache/tippen/tools"
example="$root/examples/worker"

step "toolchain"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -q ' 0.2.130'; then
  # Without --locked: with it, resolution fails on a yanked webpki-roots (hosts.md).
  cargo install --root "$tools" wasm-bindgen-cli --version 0.2.130
fi
if ! "$tools/bin/worker-build" --version 2>/dev/null | grep -q '0.8.7'; then
  cargo install --root "$tools" worker-build --version 0.8.7 --locked
fi
if [ ! -d "$example/node_modules" ] || [ "$example/package-lock.json" -nt "$example/node_modules" ]; then
  (cd "$example" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi

step "build the Worker (worker-build --release, with the test routes)"
(
  cd "$example"
  WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen" \
    WASM_OPT_BIN="$example/node_modules/.bin/wasm-opt" \
    ESBUILD_BIN="$example/node_modules/.bin/esbuild" \
    "$tools/bin/worker-build" --release --features test-routes
)
wasm="$example/build/index_bg.wasm"
[ -f "$wasm" ] || { echo "no $wasm after the build" >&2; exit 1; }

# std's clock on wasm32-unknown-unknown panics with this message; the bundle must not contain
# a path to it (time comes from Date.now()).
if grep -q "time not implemented on this platform" "$wasm"; then
  echo "the wasm bundle references SystemTime/Instant (std's unsupported clock)" >&2
  exit 1
fi

cargo build -q -p tippen-conformance

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="$artifacts/wrangler-logs"
persist=$(mktemp -d)
state_file="$persist/restart-state.json"
wrangler_pid=""
stop_wrangler() {
  if [ -n "$wrangler_pid" ]; then
    kill -TERM "$wrangler_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$wrangler_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$wrangler_pid" 2>/dev/null || true
    wait "$wrangler_pid" 2>/dev/null || true
    wrangler_pid=""
  fi
}
trap 'stop_wrangler; rm -rf "$persist"' EXIT

# start_wrangler PORT INSPECTOR_PORT LOG [--var NAME:VALUE ...]
start_wrangler() {
  local port=$1 inspector=$2 log=$3
  shift 3
  (cd "$example" && exec node node_modules/wrangler/bin/wrangler.js dev -c wrangler.test.toml \
    --local --ip 127.0.0.1 --port "$port" --inspector-port "$inspector" \
    --persist-to "$persist/state" --show-interactive-dev-session=false "$@") >"$log" 2>&1 &
  wrangler_pid=$!
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1; then return 0; fi
    kill -0 "$wrangler_pid" 2>/dev/null || { cat "$log" >&2; echo "wrangler exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log" >&2
  echo "wrangler did not answer on port $port within 30 s" >&2
  exit 1
}

base=http://127.0.0.1:8801
step "wrangler dev --local on $base"
# The video provider and the Slack webhook are stand-ins the checks run on ports 8805, 8806.
start_wrangler 8801 8811 "$artifacts/wrangler-conformance.log" \
  --var TIPPEN_VIDEO_PROVIDER_URL:http://127.0.0.1:8805 \
  --var TIPPEN_SLACK_WEBHOOK_URL:http://127.0.0.1:8806/hook
export TIPPEN_BASE_URL=$base TIPPEN_VISIBLE_GRACE_MS=3000 TIPPEN_HIDDEN_GRACE_MS=6000  # as in wrangler.test.toml

step "store conformance suite on Durable Object storage"
node "$example/tests/checks.mjs" store-suite

step "black-box conformance suite (tippen-conformance) against wrangler dev"
TIPPEN_LEGACY_KEY=legacy_key TIPPEN_PUBLIC_KEY=pk_a TIPPEN_SECRET_KEY=sk_a \
  TIPPEN_OTHER_PUBLIC_KEY=pk_b TIPPEN_OTHER_SECRET_KEY=sk_b \
  "$CARGO_TARGET_DIR/debug/tippen-conformance"

step "visitor channel (/ws/visitor) on hibernatable sockets"
node "$example/tests/checks.mjs" visitor-channel

step "POST /api/video-call: the provider reached through worker::Fetch"
TIPPEN_VIDEO_PROVIDER_PORT=8805 node "$example/tests/checks.mjs" video-call

step "support alert to Slack through worker::Fetch"
TIPPEN_SLACK_PORT=8806 node "$example/tests/checks.mjs" slack

step "removal by the Durable Object alarm, seen over a real WebSocket"
node "$example/tests/checks.mjs" alarm

step "two sites are isolated (two Durable Objects)"
TIPPEN_PERSIST_DIR="$persist/state" node "$example/tests/checks.mjs" isolation
stop_wrangler

step "enrichment through worker::Fetch, the cache shared across sites in KV"
# wrangler dev --local passes a client-sent CF-Connecting-IP through (the check relies on
# it and fails if it did not), so the check picks the visitor's public address with it.
start_wrangler 8820 8821 "$artifacts/wrangler-enrichment.log" \
  --var TIPPEN_ENRICHMENT_PROVIDER:ipinfo --var TIPPEN_ENRICHMENT_API_KEY:test_token \
  --var TIPPEN_ENRICHMENT_BASE_URL:http://127.0.0.1:8822
TIPPEN_BASE_URL=http://127.0.0.1:8820 TIPPEN_ENRICHMENT_PORT=8822 \
  node "$example/tests/checks.mjs" enrichment
stop_wrangler

step "a wrangler restart keeps state (same --persist-to)"
# Long graces for this part, so the visitor is still inside its window after the restart.
long=(--var TIPPEN_VISIBLE_GRACE_MS:60000 --var TIPPEN_HIDDEN_GRACE_MS:120000)
start_wrangler 8802 8812 "$artifacts/wrangler-restart-1.log" "${long[@]}"
TIPPEN_BASE_URL=http://127.0.0.1:8802 TIPPEN_STATE_FILE="$state_file" \
  node "$example/tests/checks.mjs" restart-before
stop_wrangler
start_wrangler 8803 8813 "$artifacts/wrangler-restart-2.log" "${long[@]}"
TIPPEN_BASE_URL=http://127.0.0.1:8803 TIPPEN_STATE_FILE="$state_file" \
  node "$example/tests/checks.mjs" restart-after
stop_wrangler

step "bundle size"
printf 'wasm %s bytes, gzip -9 %s bytes; JS glue %s bytes\n' \
  "$(stat -c %s "$wasm")" "$(gzip -9c "$wasm" | wc -c)" "$(stat -c %s "$example/build/index.js")"

step "worker tests passed"
