#!/usr/bin/env bash
# Runs tippen's tests. With no option, every test of every host (what CI runs, .ci/run):
#
#   common   static checks (rustfmt, clippy on the whole workspace), the wasm32 build of the
#            core, the published crates' docs (rustdoc warnings denied) and packages
#            (`cargo package`, each verified by building it from its .crate; nothing is
#            uploaded), a check of the workspace with the minimum Rust version (rust-version in
#            Cargo.toml; TIPPEN_MSRV_CHECK=0 skips it), the tests of the crates no host owns
#            (tippen-core unit/golden/property tests and store conformance on memory,
#            tippen-http, tippen-conformance, benches);
#   axum     tippen-axum and the reference server's tests (the black-box HTTP + WebSocket
#            conformance suite on a real socket with every case — its stand-ins as the video
#            provider, Slack and IPinfo —, SQLite store conformance, the restart test),
#            tippen-redis's (store conformance, two connections racing on one visitor, the
#            bus: seq order, log replay and resync, the conformance suite split across two
#            replicas; on a real redis-server each test starts on a free port), the reference
#            server's on Redis (two real replicas, one killed with SIGKILL mid-run; rate
#            limits shared by both), the
#            embedding example's (examples/embed-axum: tippen under /tippen in an axum app with
#            its own routes and state, the conformance suite against that prefix), the
#            browser end-to-end test, the support triggers' end-to-end test
#            (scripts/test-support.sh) and the embedding example's pages (tests/browser/embed.mjs:
#            tracker and dashboard under /tippen) in headless Chromium;
#   worker   the Workers host under wrangler dev (scripts/test-worker.sh);
#   lambda   the Lambda host under cargo lambda watch with DynamoDB on moto
#            (scripts/test-lambda.sh).
#
# Options:
#   --host axum|worker|lambda   the common part, then only that host's part (repeatable)
#   --fast                      the inner loop: rustfmt, clippy, the common crates' tests and
#                               the axum host's crates' (tippen-axum, tippen-redis, the
#                               reference server; no wasm32 build, no browser, no other host)
#
# Installing is apart from testing: scripts/install.sh installs what the chosen parts need
# when it is missing (the Rust components; chromium, the browser tests' npm packages and
# redis-server for axum; wasm-bindgen-cli, worker-build and wrangler for worker; cargo-lambda,
# moto and cfn-lint for lambda), and does nothing when all is there. Reuses a target dir outside the
# clone (CARGO_TARGET_DIR, default ~/.cache/tippen/target) so repeated runs build
# incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tippen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
artifacts="$root/test-artifacts"
mkdir -p "$artifacts"
step() { printf '\n=== %s (%ss)\n' "$1" "$SECONDS"; }
usage() { echo "usage: scripts/test.sh [--fast] [--host axum|worker|lambda]..." >&2; exit 2; }

fast=false
hosts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=true ;;
    --host)
      [ $# -ge 2 ] || usage
      case "$2" in axum | worker | lambda) hosts+=("$2") ;; *) usage ;; esac
      shift
      ;;
    --host=*)
      case "${1#--host=}" in axum | worker | lambda) hosts+=("${1#--host=}") ;; *) usage ;; esac
      ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
  shift
done
if $fast && [ ${#hosts[@]} -gt 0 ]; then
  echo "--fast runs the axum tests only; leave out --host" >&2
  exit 2
fi
[ ${#hosts[@]} -gt 0 ] || $fast || hosts=(axum worker lambda)
runs() { local h; for h in "${hosts[@]}"; do [ "$h" = "$1" ] && return 0; done; return 1; }

# The crates no host owns, and each host's.
common_crates=(-p tippen-core -p tippen-http -p tippen-conformance -p tippen-benches)
# tippen-redis is the axum host's store for several replicas; its tests need redis-server.
axum_crates=(-p tippen-axum -p tippen-sqlite -p tippen-redis -p tippen-server -p tippen-embed-axum)
# The crates published to crates.io.
published_crates=(-p tippen-core -p tippen-http -p tippen-sqlite -p tippen-axum -p tippen-redis -p tippen-dynamodb -p tippen-lambda -p tippen-cloudflare -p tippen-worker)
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)

# The target dir outlives clones and grows with every toolchain, feature set and change; a full
# disk makes the linker die with SIGBUS. Below the floor, drop the incremental caches first, then
# the whole dir (the run is then a cold one, slower but whole).
free_gb() { df -Pk "$(dirname "$CARGO_TARGET_DIR")" | awk 'NR==2 {print int($4 / 1048576)}'; }
mkdir -p "$CARGO_TARGET_DIR"
floor_gb="${TIPPEN_DISK_FLOOR_GB:-20}"
if [ "$(free_gb)" -lt "$floor_gb" ]; then
  echo "only $(free_gb) GB free: removing $CARGO_TARGET_DIR's incremental caches" >&2
  rm -rf "$CARGO_TARGET_DIR"/*/incremental "$CARGO_TARGET_DIR"/*/*/incremental
fi
if [ "$(free_gb)" -lt "$floor_gb" ]; then
  echo "still only $(free_gb) GB free: removing $CARGO_TARGET_DIR" >&2
  rm -rf "$CARGO_TARGET_DIR"
  mkdir -p "$CARGO_TARGET_DIR"
fi
echo "$(free_gb) GB free beside $CARGO_TARGET_DIR ($(du -sh "$CARGO_TARGET_DIR" | cut -f1) used by it)"

step "install what is missing"
$fast && export TIPPEN_MSRV_CHECK=0 # the fast mode checks no other toolchain
parts=(rust)
{ runs axum || $fast; } && parts+=(redis)
runs axum && parts+=(browser)
runs worker && parts+=(worker)
runs lambda && parts+=(lambda)
scripts/install.sh "${parts[@]}"

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

if $fast; then
  step "tests of the common crates and the axum host's (fast mode)"
  cargo test "${common_crates[@]}" "${axum_crates[@]}"
  step "fast checks passed"
  exit 0
fi

step "tippen-core for wasm32-unknown-unknown, and without its default features"
cargo build -q -p tippen-core --target wasm32-unknown-unknown
cargo clippy -q -p tippen-core --no-default-features -- -D warnings

step "docs of the published crates (rustdoc warnings denied: a broken intra-doc link fails)"
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps --all-features "${published_crates[@]}"

step "cargo package of the published crates (each built from its .crate; nothing is uploaded)"
# Together: each crate's tippen dependencies resolve to the others' fresh packages, which cargo
# serves from a local registry overlay; the rest come from crates.io. The verifying builds
# reuse the target dir. Cargo takes registry crates to be immutable: it unpacks the overlay's
# tippen crates into $CARGO_HOME/registry/src once and never rebuilds them, so a later run
# would verify each crate against the first run's packages of its tippen dependencies (seen:
# a function added to tippen-core and used by tippen-http failed to resolve). Forget them first:
# the unpacked sources (shared by every checkout on the machine, hence the lock) and what this
# target dir built from them.
(
  flock 8
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tippen-*
  for dep_info in $(grep -l "registry/src/[^ ]*/tippen-" "$CARGO_TARGET_DIR"/debug/deps/tippen_*.d 2>/dev/null); do
    hash=${dep_info##*-}
    hash=${hash%.d}
    rm -rf "$CARGO_TARGET_DIR"/debug/.fingerprint/tippen-*-"$hash" "$CARGO_TARGET_DIR"/debug/deps/*tippen_*-"$hash".*
  done
  # --allow-dirty: a run before committing packages the working tree.
  cargo package -q --allow-dirty "${published_crates[@]}"
) 8>/tmp/tippen-package.lock

if [ "${TIPPEN_MSRV_CHECK:-1}" != 0 ] &&
  ! rustup target list --installed --toolchain "$msrv" 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "the minimum Rust version, $msrv: SKIPPED — its toolchain could not be installed here (see above)"
elif [ "${TIPPEN_MSRV_CHECK:-1}" != 0 ]; then
  step "the minimum Rust version, $msrv: cargo check of the workspace and the wasm32 crates"
  cargo +"$msrv" check -q --workspace --all-targets --all-features
  cargo +"$msrv" check -q -p tippen-core -p tippen-cloudflare -p tippen-worker -p tippen-worker-example \
    --target wasm32-unknown-unknown
fi

step "tests of the common crates"
cargo test "${common_crates[@]}"

if runs axum; then
  step "axum: tippen-axum, tippen-redis (on redis-server) and the reference server (conformance suite, every case)"
  cargo test "${axum_crates[@]}"

  step "axum: browser end-to-end (headless Chromium)"
  cargo build -q -p tippen-server
  # Fixed ports: one browser run at a time on a machine (several checkouts may test at once).
  exec 9>/tmp/tippen-e2e.lock
  flock 9
  db_dir=$(mktemp -d)
  port=18787
  operator_token=op_browser_0123456789abcdef0123456789
  TIPPEN_VISIBLE_GRACE_MS=3000 TIPPEN_HIDDEN_GRACE_MS=8000 TIPPEN_HEARTBEAT_MS=1000 RUST_LOG=warn \
    TIPPEN_OPERATOR_TOKEN=$operator_token TIPPEN_INVITE_TTL_MS=4000 TIPPEN_VIDEO_PROVIDER_URL="http://127.0.0.1:18790/video" \
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
  step "axum: the dashboard's History, Companies and Analytics tabs (headless Chromium)"
  TIPPEN_BASE_URL="http://127.0.0.1:$port" TIPPEN_KEY=demo_api_key TIPPEN_ARTIFACTS="$artifacts" \
    node tests/browser/history.mjs
  step "axum: the dashboard's alerts: a rule, a marked live row, the Alerts tab, a Slack link (headless Chromium)"
  TIPPEN_BASE_URL="http://127.0.0.1:$port" TIPPEN_KEY=demo_api_key TIPPEN_ARTIFACTS="$artifacts" \
    node tests/browser/alerts.mjs
  step "axum: the operator's Command Center: sign-in, a site created, its counts, disabled, the audit log (headless Chromium)"
  TIPPEN_BASE_URL="http://127.0.0.1:$port" TIPPEN_OPERATOR_TOKEN=$operator_token TIPPEN_ARTIFACTS="$artifacts" \
    node tests/browser/command-center.mjs
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$db_dir"
  trap - EXIT
  flock -u 9

  step "axum: the tracker's privacy (headless Chromium, stand-in API)"
  node tests/browser/privacy.mjs

  step "axum: support triggers end-to-end (headless Chromium, local Slack receiver)"
  scripts/test-support.sh

  step "axum: the embedding example's pages under /tippen (headless Chromium)"
  cargo build -q -p tippen-embed-axum
  TIPPEN_EMBED_BIN="$CARGO_TARGET_DIR/debug/tippen-embed-axum" TIPPEN_ARTIFACTS="$artifacts" \
    node tests/browser/embed.mjs
fi

if runs worker; then
  step "worker: tippen-worker's native unit tests"
  cargo test -p tippen-cloudflare -p tippen-worker -p tippen-worker-example
  step "worker: the Cloudflare Workers host under wrangler dev"
  scripts/test-worker.sh
fi

if runs lambda; then
  step "lambda: tippen-lambda's unit tests"
  cargo test -p tippen-dynamodb -p tippen-lambda -p tippen-lambda-example
  step "lambda: the AWS Lambda host under cargo lambda watch, DynamoDB on moto"
  scripts/test-lambda.sh
fi

step "all tests passed (${hosts[*]:-fast})"
