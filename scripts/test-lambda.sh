#!/usr/bin/env bash
# Tests tippen-lambda for real on this machine: moto (DynamoDB), `cargo lambda watch` (the
# three functions), the API Gateway WebSocket stand-in (tests/apigw-ws) and a periodic
# invoker of the scheduled function. Runs the DynamoDB store suite + concurrency test against
# moto, then the black-box conformance suite (HTTP through the function URL endpoint,
# WebSockets through the stand-in). Stops every process it started, by pid, also on failure.
#
# Installs when missing (pinned): cargo-lambda 1.9.2 and moto[server] 5.2.1 (pip), the
# stand-in's npm packages (package-lock.json).
#
# Ports: 9100 (cargo lambda watch), 9101 (stand-in), 5100 (moto); override with
# TIPPEN_LAMBDA_PORT, TIPPEN_STANDIN_PORT, TIPPEN_MOTO_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
artifacts="$root/test-artifacts/lambda"
mkdir -p "$artifacts"
step() { printf '\n=== lambda: %s (%ss)\n' "$1" "$SECONDS"; }

lambda_port="${TIPPEN_LAMBDA_PORT:-9100}"
standin_port="${TIPPEN_STANDIN_PORT:-9101}"
moto_port="${TIPPEN_MOTO_PORT:-5100}"
visible_ms=2000
hidden_ms=5000

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    # cargo lambda watch runs the functions as its children: stop the whole group we made.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
# Starts "$@" in its own process group (so its children stop with it); records its pid.
start() {
  local log=$1
  shift
  setsid "$@" >"$artifacts/$log" 2>&1 &
  pids+=("$!")
}
wait_for() {
  local what=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up at $url; its log:" >&2
  return 1
}

step "tools"
if ! cargo lambda --version 2>/dev/null | grep -q '^cargo-lambda 1\.9\.2'; then
  pip install --quiet "cargo-lambda==1.9.2"
fi
if ! moto_server --help >/dev/null 2>&1 || ! python3 -c 'import flask, flask_cors' 2>/dev/null; then
  pip install --quiet "moto[server]==5.2.1"
fi
if [ ! -d tests/apigw-ws/node_modules ] || [ tests/apigw-ws/package-lock.json -nt tests/apigw-ws/node_modules ]; then
  (cd tests/apigw-ws && npm ci --no-audit --no-fund --loglevel=error)
fi

step "clippy (tippen-lambda, every feature)"
cargo clippy -p tippen-lambda -p tippen-lambda-example --all-targets --all-features -- -D warnings

step "build the functions and the conformance runner (once)"
cargo build -p tippen-lambda-example --bins
cargo build -p tippen-conformance
cargo test -p tippen-lambda --features moto-tests --no-run

step "moto (DynamoDB) on 127.0.0.1:$moto_port"
start moto.log moto_server -H 127.0.0.1 -p "$moto_port"
wait_for moto "http://127.0.0.1:$moto_port/moto-api/"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

step "DynamoDB store: conformance suite + concurrency test against moto"
TIPPEN_DYNAMODB_ENDPOINT="http://127.0.0.1:$moto_port" \
  cargo test -p tippen-lambda --features moto-tests -- --nocapture

step "cargo lambda watch on 127.0.0.1:$lambda_port, stand-in on 127.0.0.1:$standin_port"
sites='[{"id":"legacy","name":"Legacy","legacyKey":"legacy_key"},{"id":"a","name":"Site A","publicKey":"pk_a","secretKey":"sk_a"},{"id":"b","name":"Site B","publicKey":"pk_b","secretKey":"sk_b"}]'
env_file="$artifacts/functions.env"
cat >"$env_file" <<EOF
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_REGION=us-east-1
AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$moto_port
AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$standin_port
TIPPEN_TABLE=tippen-conformance
TIPPEN_WS_ENDPOINT=http://127.0.0.1:$standin_port/local
TIPPEN_WS_FUNCTION=tippen-ws
TIPPEN_SITES=$sites
TIPPEN_VISIBLE_GRACE_MS=$visible_ms
TIPPEN_HIDDEN_GRACE_MS=$hidden_ms
TIPPEN_HEARTBEAT_MS=1000
RUST_LOG=warn
EOF
# On AWS the deployment creates the table (template.yaml); here the admin binary does.
AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$moto_port" TIPPEN_TABLE=tippen-conformance \
  "$CARGO_TARGET_DIR/debug/tippen-create-table"
start watch.log bash -c "cd examples/lambda && exec cargo lambda watch --ignore-changes --disable-cors \
  --concurrency 8 -A 127.0.0.1 -P $lambda_port --env-file '$env_file'"
start standin.log env STANDIN_PORT="$standin_port" STANDIN_INVOKE_URL="http://127.0.0.1:$lambda_port" \
  STANDIN_FUNCTION=tippen-ws STANDIN_STAGE=local node tests/apigw-ws/standin.mjs
fn_url="http://127.0.0.1:$lambda_port/lambda-url/tippen-http"
wait_for "cargo lambda watch" "http://127.0.0.1:$lambda_port/"
wait_for "the stand-in" "http://127.0.0.1:$standin_port/"
# The first request starts the function (cold start): wait until it answers.
for _ in $(seq 1 300); do
  curl -fsS "$fn_url/" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$fn_url/" >/dev/null || { echo "the HTTP function does not answer" >&2; cat "$artifacts/watch.log" >&2; exit 1; }

# EventBridge runs the scheduled function every minute on AWS. The conformance suite's
# graces are 2 s / 5 s and it expects VISITOR_REMOVED within 1.5 s of a grace ending, so
# here the same function is invoked through the Invoke API every 300 ms instead. Reads
# never depend on it: the core filters expired visitors lazily.
start sweeper.log bash -c "while :; do curl -s -o /dev/null -X POST -d '{}' \
  http://127.0.0.1:$lambda_port/2015-03-31/functions/tippen-sweep/invocations; sleep 0.3; done"

step "conformance suite against the Lambda host"
TIPPEN_BASE_URL="$fn_url" \
TIPPEN_DASHBOARD_WS_URL="ws://127.0.0.1:$standin_port/?role=dashboard" \
TIPPEN_LEGACY_KEY=legacy_key TIPPEN_PUBLIC_KEY=pk_a TIPPEN_SECRET_KEY=sk_a \
TIPPEN_OTHER_PUBLIC_KEY=pk_b TIPPEN_OTHER_SECRET_KEY=sk_b \
TIPPEN_VISIBLE_GRACE_MS=$visible_ms TIPPEN_HIDDEN_GRACE_MS=$hidden_ms \
  "$CARGO_TARGET_DIR/debug/tippen-conformance" | tee "$artifacts/conformance.txt"

step "lambda host passed"
