#!/usr/bin/env bash
# before/after pair: the reference server before and after one change, same harness, one session
set -u
B=$HOME/.cache/tippen/target-load/release
for v in before after; do
  tmp=$(mktemp -d)
  echo "== $v: $(uptime)"
  TIPPEN_HEARTBEAT_MS=3000 TIPPEN_VISIBLE_GRACE_MS=6000 TIPPEN_LEAVE_LINGER_MS=200 TIPPEN_RATE_LIMIT_PER_IP=0 TIPPEN_RATE_LIMIT_PER_KEY=0 TIPPEN_MAX_VISITORS_PER_SITE=10000000 RUST_LOG=warn taskset -c 0 /tmp/tippen-server-$v --listen 127.0.0.1:18920 --db $tmp/load.db > $tmp/log 2>&1 &
  spid=$!
  sleep 1
  taskset -c 1 $B/load run --name "tippen $v" --kind tippen --http http://127.0.0.1:18920 --pid $spid --levels ${LEVELS:-1000,2000,5000,7500,10000,15000,20000} --step-secs 20 --out /tmp/pair-$v.json
  kill $spid; wait $spid 2>/dev/null
  rm -rf $tmp
done
echo "== end: $(uptime)"
