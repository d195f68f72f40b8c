#!/usr/bin/env bash
# Builds every fuzz target and runs each one briefly from its seeds (called by .ci/run).
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# A target dir of its own: sanitizer builds would evict the normal build's artifacts.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-target}"
runs="${FUZZ_CI_RUNS:-20000}"
# An unoptimised build without a sanitizer compiles fastest; this only checks that the
# targets build and run (the campaign itself: fuzz/README.md).
flags=(--dev --sanitizer none)
cargo +nightly fuzz build "${flags[@]}"
for t in framing peer session_merge lines; do
  # The grown corpus goes to a scratch dir: the committed seeds stay as they are.
  scratch="$(mktemp -d)"
  cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch" "corpus/$t" -- -runs="$runs" -max_total_time=5
  rm -rf "$scratch"
done
