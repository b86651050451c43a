#!/usr/bin/env bash
# The open-loop load comparison (issue 18): tippen's reference server (axum + SQLite, release),
# bare axum parsing the same JSON, and the socket.io 4.8 peer (benches/peers/), one after the
# other on the same harness (benches/load) in one run. Each server alone on core 0, the harness
# on core 1 (taskset; unpinned on a one-core machine). Writes one JSON per server, load.svg and
# table.md into benches/load/results/ (or $TIPPEN_LOAD_OUT).
#
#   scripts/load-bench.sh [levels=1000,2000,5000,7500,10000,15000,20000,30000,40000] [step_secs=20] [compress=10]
#
# levels: mean concurrent visitors, one step each; compress: every timing divided by it (a 30 s
# heartbeat becomes 3 s at 10; the servers get the same compressed heartbeat, expiry and
# linger). Then bytes per live visitor at scale (`load hold`): tippen and the peer, each
# restarted with real timings, made to hold TIPPEN_LOAD_HOLD live visitors at once (default
# 100000; 0 skips); tippen then opens TIPPEN_LOAD_SOCKETS visitor sockets (default 5000; 0
# skips) for what the tracker's open socket per tab costs. Ports: TIPPEN_LOAD_PORT (default 18901) and the next two. Installs what it
# needs: node and npm (apt) when missing, the peer's packages (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
levels=${1:-1000,2000,5000,7500,10000,15000,20000,30000,40000}
step=${2:-20}
compress=${3:-10}
port=${TIPPEN_LOAD_PORT:-18901}
out=${TIPPEN_LOAD_OUT:-benches/load/results}

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@"
}
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
command -v taskset >/dev/null || apt_install util-linux
(cd benches/peers && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q --release -p tippen-server -p tippen-benches --bin tippen-server --bin bare_axum --bin load
bin="$CARGO_TARGET_DIR/release"

if [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0)
  harness_pin=(taskset -c 1)
else
  server_pin=()
  harness_pin=()
fi
# A collapsed level leaves thousands of requests open, each on a connection of its own: room
# for them where the limit can be raised.
ulimit -n 65536 2>/dev/null || true
heartbeat_ms=$((30000 / compress))
grace_ms=$((60000 / compress))
linger_ms=$((2000 / compress))
tmp=$(mktemp -d)
mkdir -p "$out"
pid=""
stop() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}
# A harness failure (a server that died) is reported and the other servers still run.
harness() { "${harness_pin[@]}" "$bin/load" run --step-secs "$step" --compress "$compress" --levels "$levels" "$@" || echo "harness failed: $*" >&2; }

echo "== uptime before: $(uptime)"
echo "== tippen (reference server, SQLite)"
TIPPEN_HEARTBEAT_MS=$heartbeat_ms TIPPEN_VISIBLE_GRACE_MS=$grace_ms TIPPEN_LEAVE_LINGER_MS=$linger_ms \
  TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 TIPPEN_MAX_VISITORS_PER_SITE=10000000 \
  RUST_LOG=warn "${server_pin[@]}" "$bin/tippen-server" --listen "127.0.0.1:$port" --db "$tmp/load.db" \
  >"$tmp/tippen.log" 2>&1 &
pid=$!
wait_port "$port"
harness --name tippen --kind tippen --http "http://127.0.0.1:$port" --pid "$pid" --linger-ms 2000 --out "$out/tippen.json"
stop

echo "== bare axum (same JSON; ingest only)"
"${server_pin[@]}" "$bin/bare_axum" "127.0.0.1:$((port + 1))" >"$tmp/bare.log" 2>&1 &
pid=$!
wait_port $((port + 1))
harness --name "bare axum" --kind bare --http "http://127.0.0.1:$((port + 1))" --pid "$pid" --out "$out/bare.json"
stop

echo "== socket.io 4.8 peer (node $(node --version))"
PORT=$((port + 2)) GRACE_MS=$grace_ms "${server_pin[@]}" node benches/peers/server.js >"$tmp/peer.log" 2>&1 &
pid=$!
wait_port $((port + 2))
harness --name "socket.io 4.8" --kind socketio --http "http://127.0.0.1:$((port + 2))" --pid "$pid" --linger-ms 0 --out "$out/socketio.json"
stop

hold=${TIPPEN_LOAD_HOLD:-100000}
# Visitor sockets (/ws/visitor) tippen opens for the first of them once they are held: what the
# tracker's socket per tab adds (file descriptors: both ends stay under `ulimit -n`).
sockets=${TIPPEN_LOAD_SOCKETS:-5000}
holds=()
if [ "$hold" -gt 0 ]; then
  echo "== tippen holding $hold live visitors (real timings)"
  TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 TIPPEN_MAX_VISITORS_PER_SITE=10000000 \
    TIPPEN_MAX_SOCKETS_PER_SITE=100000 TIPPEN_MAX_SOCKETS_PER_ADDRESS=100000 RUST_LOG=warn "${server_pin[@]}" "$bin/tippen-server" --listen "127.0.0.1:$port" --db "$tmp/hold.db" \
    >"$tmp/tippen-hold.log" 2>&1 &
  pid=$!
  wait_port "$port"
  "${harness_pin[@]}" "$bin/load" hold --name tippen --http "http://127.0.0.1:$port" --pid "$pid" \
    --visitors "$hold" --sockets "$sockets" --out "$out/hold-tippen.json" && holds+=(--hold "$out/hold-tippen.json")
  stop
  echo "== socket.io 4.8 peer holding $hold live visitors (real timings)"
  PORT=$((port + 2)) "${server_pin[@]}" node benches/peers/server.js >"$tmp/peer-hold.log" 2>&1 &
  pid=$!
  wait_port $((port + 2))
  "${harness_pin[@]}" "$bin/load" hold --name "socket.io 4.8" --http "http://127.0.0.1:$((port + 2))" \
    --pid "$pid" --visitors "$hold" --out "$out/hold-socketio.json" && holds+=(--hold "$out/hold-socketio.json")
  stop
fi

echo "== uptime after: $(uptime)"
"$bin/load" report --out-dir "$out" "${holds[@]}" "$out/tippen.json" "$out/bare.json" "$out/socketio.json"
echo "wrote $out/load.svg and $out/table.md"
