#!/usr/bin/env bash
# Runs every test of tippen: static checks, the wasm32 build of the core, the workspace's
# tests (core unit/golden/property tests, store conformance on memory and SQLite, the
# black-box HTTP + WebSocket conformance suite against the axum host on a real socket, the
# restart test) and the browser end-to-end test in headless Chromium.
#
# Installs what it needs when missing: the wasm32 target, rustfmt/clippy, Debian's chromium,
# the npm packages of tests/browser. Reuses a target dir outside the clone
# (CARGO_TARGET_DIR, default ~/.cache/tippen/target) so repeated runs build incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
artifacts="$root/test-artifacts"
mkdir -p "$artifacts"
step() { printf '\n=== %s (%ss)\n' "$1" "$SECONDS"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
command -v cargo-clippy >/dev/null || rustup component add clippy
command -v rustfmt >/dev/null || rustup component add rustfmt
if ! command -v chromium >/dev/null || ! command -v curl >/dev/null; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver curl
fi
if [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tippen-core for wasm32-unknown-unknown"
cargo build -q -p tippen-core --target wasm32-unknown-unknown

step "workspace tests"
cargo test --workspace

step "browser end-to-end (headless Chromium)"
cargo build -q -p tippen-server
db_dir=$(mktemp -d)
port=18787
TIPPEN_VISIBLE_GRACE_MS=3000 TIPPEN_HIDDEN_GRACE_MS=8000 TIPPEN_HEARTBEAT_MS=1000 RUST_LOG=warn \
  TIPPEN_INVITE_TTL_MS=4000 TIPPEN_VIDEO_PROVIDER_URL="http://127.0.0.1:18790/video" \
  "$CARGO_TARGET_DIR/debug/tippen-server" --listen "127.0.0.1:$port" --db "$db_dir/tippen.db" \
  >"$artifacts/e2e-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$db_dir"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
TIPPEN_BASE_URL="http://127.0.0.1:$port" TIPPEN_KEY=demo_api_key TIPPEN_ARTIFACTS="$artifacts" \
  TIPPEN_VISIBLE_GRACE_MS=3000 TIPPEN_HIDDEN_GRACE_MS=8000 \
  TIPPEN_INVITE_TTL_MS=4000 TIPPEN_VIDEO_PROVIDER_PORT=18790 \
  node tests/browser/e2e.mjs

step "support triggers end-to-end (headless Chromium, local Slack receiver)"
scripts/test-support.sh

step "Cloudflare Workers host under wrangler dev"; scripts/test-worker.sh

step "AWS Lambda host under cargo lambda watch, DynamoDB on moto"; scripts/test-lambda.sh

step "all tests passed"
