#!/usr/bin/env bash
# Installs what the tests need, skipping whatever is already there (so it is cheap to call
# before every run). scripts/test.sh and the host scripts call it; run it on its own to
# prepare a machine:
#
#   scripts/install.sh [rust|browser|redis|worker|lambda|all]...   (default: all)
#
#   rust     the wasm32-unknown-unknown target, rustfmt, clippy; the toolchain of the minimum
#            Rust version (rust-version in Cargo.toml; profile minimal, with the wasm32 target:
#            ~650 MB, ~15 s to download) unless TIPPEN_MSRV_CHECK=0
#   browser  Debian's chromium + chromium-driver, curl (apt), tests/browser's npm packages
#   redis    Debian's redis-server (apt), which tippen-redis's tests start on a free port
#   worker   wasm-bindgen-cli 0.2.130 and worker-build 0.8.7 (cargo install into
#            ~/.cache/tippen/tools; a first install takes ~20 min on 2 cores), the pinned npm
#            packages of examples/worker (wrangler, wasm-opt, esbuild)
#   lambda   cargo-lambda 1.9.2, moto[server] 5.2.1 and cfn-lint 1.51.0 (pip), the npm
#            packages of the API Gateway stand-in (tests/apigw-ws)
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
tools="$HOME/.cache/tippen/tools"

# npm ci in $1 when its node_modules is missing or older than its package-lock.json.
npm_ci() {
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules" ]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
  fi
}

install_rust() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  command -v cargo-clippy >/dev/null || rustup component add clippy
  command -v rustfmt >/dev/null || rustup component add rustfmt
  if [ "${TIPPEN_MSRV_CHECK:-1}" != 0 ]; then
    local msrv
    msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
    # rustup's own download server may be out of reach where only package registries are: then
    # the test command says it skips the minimum-version check rather than failing.
    if rustup toolchain list | grep -q "^$msrv-" || rustup toolchain install "$msrv" --profile minimal; then
      rustup target list --installed --toolchain "$msrv" | grep -qx wasm32-unknown-unknown ||
        rustup target add --toolchain "$msrv" wasm32-unknown-unknown ||
        echo "warning: could not add wasm32-unknown-unknown to Rust $msrv" >&2
    else
      echo "warning: could not install Rust $msrv (the minimum version); its check will be skipped" >&2
    fi
  fi
}

install_browser() {
  if ! command -v chromium >/dev/null || ! command -v curl >/dev/null; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver curl
  fi
  npm_ci tests/browser
}

install_redis() {
  if ! command -v redis-server >/dev/null; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  fi
}

install_worker() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -q ' 0.2.130'; then
    # Without --locked: with it, resolution fails on a yanked webpki-roots (hosts.md).
    cargo install --root "$tools" wasm-bindgen-cli --version 0.2.130
  fi
  if ! "$tools/bin/worker-build" --version 2>/dev/null | grep -q '0.8.7'; then
    cargo install --root "$tools" worker-build --version 0.8.7 --locked
  fi
  npm_ci examples/worker
}

install_lambda() {
  if ! cargo lambda --version 2>/dev/null | grep -q '^cargo-lambda 1\.9\.2'; then
    pip install --quiet "cargo-lambda==1.9.2"
  fi
  if ! python3 -c 'import moto, flask, flask_cors; assert moto.__version__ == "5.2.1"' 2>/dev/null; then
    pip install --quiet "moto[server]==5.2.1"
  fi
  if ! cfn-lint --version 2>/dev/null | grep -q '^cfn-lint 1\.51\.0'; then
    pip install --quiet "cfn-lint==1.51.0"
  fi
  npm_ci tests/apigw-ws
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(all)
for part in "${parts[@]}"; do
  case "$part" in
    rust) install_rust ;;
    browser) install_browser ;;
    redis) install_redis ;;
    worker) install_worker ;;
    lambda) install_lambda ;;
    all) install_rust; install_browser; install_redis; install_worker; install_lambda ;;
    *) echo "usage: scripts/install.sh [rust|browser|redis|worker|lambda|all]..." >&2; exit 2 ;;
  esac
done
