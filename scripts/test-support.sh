#!/usr/bin/env bash
# The support triggers' browser end-to-end test (issue 6): the in-app tracker on a test app
# page, the dashboard's "Needs help" panel and Slack delivery to a local receiver, in headless
# Chromium. tests/browser/support.mjs starts its own tippen-server (ports 18800-18802 unless
# TIPPEN_SUPPORT_PORT is set) with the Slack webhook pointing at its receiver, and stops it.
#
# Needs chromium and tests/browser's npm packages: scripts/install.sh browser (run here; it
# does nothing when they are there).
set -euo pipefail
# Fixed ports: one run at a time on a machine (several checkouts may test at once).
if [ -z "${TIPPEN_SUPPORT_LOCKED:-}" ] && command -v flock >/dev/null; then
  export TIPPEN_SUPPORT_LOCKED=1
  exec flock /tmp/tippen-support.lock "$0" "$@"
fi
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
artifacts="${TIPPEN_ARTIFACTS:-$root/test-artifacts}"
mkdir -p "$artifacts"
port="${TIPPEN_SUPPORT_PORT:-18800}"

scripts/install.sh browser
cargo build -q -p tippen-server

node_pid=
cleanup() { if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
TIPPEN_SERVER_BIN="$CARGO_TARGET_DIR/debug/tippen-server" \
  TIPPEN_PORT="$port" TIPPEN_SLACK_PORT="$((port + 1))" TIPPEN_APP_PORT="$((port + 2))" \
  TIPPEN_ARTIFACTS="$artifacts" \
  node tests/browser/support.mjs &
node_pid=$!
wait "$node_pid"
