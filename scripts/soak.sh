#!/usr/bin/env bash
# The soak (issue 17): the release reference server under real traffic mixed with abuse for
# [seconds] (default 600), from benches/src/bin/soak.rs. Prints a JSON report (also written to
# target's soak.json) and exits non-zero on any 5xx, a failed legitimate request or a dead server.
#
#   scripts/soak.sh [seconds=600] [extra soak flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
secs=${1:-600}
shift || true
cargo build -q --release -p tippen-server -p tippen-benches --bin tippen-server --bin soak
exec "$CARGO_TARGET_DIR/release/soak" --server "$CARGO_TARGET_DIR/release/tippen-server" \
  --secs "$secs" --out "$CARGO_TARGET_DIR/soak.json" "$@"
