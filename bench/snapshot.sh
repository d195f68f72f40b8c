#!/usr/bin/env bash
# Builds a release snapshot of this package outside the working tree, for
# benchmarking while the checkout holds a debug build or is being edited:
#   bash bench/snapshot.sh [DEST [REV]]   (default /tmp/uhura-bench-snapshot)
#   node bench/run.js --ours=DEST
# Copies the sources (the working tree, or git revision REV, e.g. HEAD) to
# DEST/src-copy, builds there with cargo --release (its own target directory,
# or $CARGO_TARGET_DIR if set, e.g. one shared by successive snapshots so only
# the crate itself rebuilds), and lays out DEST as a loadable package.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-/tmp/uhura-bench-snapshot}"
rev="${2:-}"
[ -n "$rev" ] && rev="$(git -C "$root" rev-parse --short "$rev")"
src="$dest/src-copy"
mkdir -p "$src"
# Only what the build and index.js need; the copy keeps its own target/ between runs.
rm -rf "$src/src" "$src/lib"
files="Cargo.toml Cargo.lock build.rs src lib index.js package.json"
if [ -n "$rev" ]; then
  git -C "$root" archive "$rev" $files | tar -C "$src" -xf -
else
  tar -C "$root" -cf - $files | tar -C "$src" -xf -
fi
# With a shared CARGO_TARGET_DIR, copied files keep their mtimes and may look
# older than the last snapshot's build: make them newer, so the crate is rebuilt.
[ -n "${CARGO_TARGET_DIR:-}" ] && find "$src/src" -type f -exec touch {} +
( cd "$src" && nice -n 10 cargo build --release --lib --offline --message-format=short 2>&1 | tail -5 )
so="${CARGO_TARGET_DIR:-$src/target}/release/libuhura.so"
test -f "$so"
cp "$src/index.js" "$src/package.json" "$dest/"
rm -rf "$dest/lib" && cp -r "$src/lib" "$dest/lib"
# index.js requires the `debug` package: resolve it from the checkout.
ln -sfn "$root/node_modules" "$dest/node_modules"
cp "$so" "$dest/uhura.node.tmp" && mv "$dest/uhura.node.tmp" "$dest/uhura.node"
if [ -n "$rev" ]; then
  echo "$rev" > "$dest/REVISION"
else
  echo "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) + working tree at $(date -u +%H:%M:%SZ)" > "$dest/REVISION"
fi
echo "snapshot: $dest ($(du -h "$dest/uhura.node" | cut -f1), $(cat "$dest/REVISION"))"
