#!/usr/bin/env bash
# The open-loop load harness (benches/load, issue 18) against the Workers host under
# `wrangler dev --local` (workerd on this machine): LOCAL numbers of one site's Durable Object
# on loopback, not Cloudflare's. workerd (with wrangler's node) on core 0, the harness on core
# 1 (taskset), visit history in local D1. Real timings by default (compress 1: 30 s heartbeats,
# 60 s expiry): one object under wrangler dev answers a few hundred requests a second at most,
# and with scripts/load-bench.sh's 10x compression the ingest figure's 2,000 visitors expire
# before their next heartbeat comes round. Run scripts/test-worker.sh first: it installs the
# tools and builds the bundle used here.
#
#   scripts/load-bench-worker.sh [levels=250,500,1000,2000] [step_secs=20] [compress=1]
#
# Writes benches/load/results/worker/worker.json and, with the other servers' JSON of the
# last scripts/load-bench.sh run when present, table.md and load.svg beside it. Ports:
# TIPPEN_LOAD_WORKER_PORT (default 18911) and the next one (the inspector).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
levels=${1:-250,500,1000,2000}
step=${2:-20}
compress=${3:-1}
port=${TIPPEN_LOAD_WORKER_PORT:-18911}
out=${TIPPEN_LOAD_OUT:-benches/load/results}/worker
example="$root/examples/worker"
[ -f "$example/build/index_bg.wasm" ] || { echo "build the Worker first: scripts/test-worker.sh" >&2; exit 1; }
command -v taskset >/dev/null || {
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q util-linux
}
cargo build -q --release -p tippen-benches --bin load
bin="$CARGO_TARGET_DIR/release"
if [ "$(nproc)" -ge 2 ]; then server_pin=(taskset -c 0); harness_pin=(taskset -c 1); else server_pin=(); harness_pin=(); fi

tmp=$(mktemp -d "${TIPPEN_LOAD_WORKER_TMP:-/tmp}/tippen-worker-load.XXXXXX")
mkdir -p "$out"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_LOG_PATH="$tmp/logs"
wrangler() { (cd "$example" && node node_modules/wrangler/bin/wrangler.js "$@"); }
wrangler d1 migrations apply tippen-history-test --local -c wrangler.test.toml \
  --persist-to "$tmp/state" >"$tmp/d1.log" 2>&1 || { cat "$tmp/d1.log" >&2; exit 1; }

heartbeat_ms=$((30000 / compress))
grace_ms=$((60000 / compress))
linger_ms=$((2000 / compress))
(cd "$example" && exec "${server_pin[@]}" node node_modules/wrangler/bin/wrangler.js dev \
  -c wrangler.test.toml --local --ip 127.0.0.1 --port "$port" --inspector-port $((port + 1)) \
  --persist-to "$tmp/state" --show-interactive-dev-session=false --log-level warn \
  --var "TIPPEN_HEARTBEAT_MS:$heartbeat_ms" --var "TIPPEN_VISIBLE_GRACE_MS:$grace_ms" \
  --var "TIPPEN_HIDDEN_GRACE_MS:$((grace_ms * 2))" --var "TIPPEN_LEAVE_LINGER_MS:$linger_ms" \
  --var TIPPEN_RATE_LIMIT_PER_IP:0 --var TIPPEN_RATE_LIMIT_PER_KEY:0 \
  --var TIPPEN_MAX_VISITORS_PER_SITE:10000000) >"$tmp/wrangler.log" 2>&1 &
wrangler_pid=$!
trap 'kill -TERM $wrangler_pid 2>/dev/null; wait $wrangler_pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/" >/dev/null || { cat "$tmp/wrangler.log" >&2; exit 1; }
# The process that runs the Worker and its Durable Objects: workerd, below wrangler.
descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
workerd=""
for p in $(descendants "$wrangler_pid"); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = workerd ] && { workerd=$p; break; }
done
[ -n "$workerd" ] || { echo "no workerd process under wrangler ($wrangler_pid)" >&2; exit 1; }
echo "== uptime before: $(uptime)"
echo "== tippen on wrangler dev --local (workerd pid $workerd), one site's Durable Object"
"${harness_pin[@]}" "$bin/load" run --name "tippen (wrangler dev, local)" --kind tippen \
  --http "http://127.0.0.1:$port" --pid "$workerd" --key legacy_key_0123456789abcd \
  --linger-ms 2000 --levels "$levels" --step-secs "$step" --compress "$compress" --out "$out/worker.json"
echo "== uptime after: $(uptime)"
others=()
for f in tippen bare socketio; do
  [ -f "benches/load/results/$f.json" ] && others+=("benches/load/results/$f.json")
done
"$bin/load" report --out-dir "$out" "${others[@]}" "$out/worker.json"
echo "wrote $out/worker.json, $out/table.md and $out/load.svg"
