#!/usr/bin/env bash
# Transition → dashboard latency, one run: page views of new visitors posted to a reference
# server (release build), each timed until a dashboard hears its VISITOR_UPDATE, on
#   1. one replica on SQLite (request and dashboard on it),
#   2. one replica on Redis (request and dashboard on it; its own writes reach its dashboards
#      through the Redis bus too),
#   3. two replicas on Redis (request to one, dashboard on the other).
# Every server, redis-server and the client share this machine's cores.
#
#   scripts/bench-replicas.sh [count=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
count=${1:-2000}
command -v redis-server >/dev/null || { echo "needs redis-server (scripts/install.sh redis)" >&2; exit 1; }
cargo build -q --release -p tippen-server -p tippen-benches --bin tippen-server --bin transition_latency
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_port "$rport"
start() { # port db [--redis url]
  RUST_LOG=warn TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 \
    "$CARGO_TARGET_DIR/release/tippen-server" --listen "127.0.0.1:$1" --db "$tmp/$2" "${@:3}" >"$tmp/$2.log" 2>&1 &
  pids+=($!)
  wait_port "$1"
}
p1=$(free_port); start "$p1" sqlite.db
p2=$(free_port); start "$p2" r1.db --redis "redis://127.0.0.1:$rport"
p3=$(free_port); start "$p3" r2.db --redis "redis://127.0.0.1:$rport"
lat="$CARGO_TARGET_DIR/release/transition_latency"
echo "machine: $(nproc) cores shared by the servers, redis-server and the client; $count transitions each"
"$lat" "http://127.0.0.1:$p1" "http://127.0.0.1:$p1" "$count" "one replica, SQLite" | tee "$tmp/a"
"$lat" "http://127.0.0.1:$p2" "http://127.0.0.1:$p2" "$count" "one replica, Redis" | tee "$tmp/b"
"$lat" "http://127.0.0.1:$p2" "http://127.0.0.1:$p3" "$count" "two replicas, Redis, cross-replica" | tee "$tmp/c"
p99() { sed -E 's/.*p99=([0-9.]+).*/\1/' "$1"; }
p50() { sed -E 's/.*p50=([0-9.]+).*/\1/' "$1"; }
awk -v a="$(p50 "$tmp/a")" -v b="$(p50 "$tmp/b")" -v c="$(p50 "$tmp/c")" \
    -v x="$(p99 "$tmp/a")" -v y="$(p99 "$tmp/b")" -v z="$(p99 "$tmp/c")" 'BEGIN {
  printf "ratios to one replica on SQLite: p50 Redis %.2fx, cross-replica %.2fx; p99 Redis %.2fx, cross-replica %.2fx\n", b/a, c/a, y/x, z/x }'
