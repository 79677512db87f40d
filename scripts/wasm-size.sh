#!/usr/bin/env bash
# Prints the size of a wasm module, raw and gzipped, and checks it imports nothing from `env`
# (which would mean native code leaked into the browser build).
set -euo pipefail
wasm=${1:?usage: wasm-size.sh FILE.wasm}
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf 'wasm module %s: %d bytes raw, %d bytes gzip -9\n' "$wasm" "$raw" "$gz"
if grep -aq $'\x03env' "$wasm"; then
  echo "error: $wasm imports from \"env\": native code leaked into the browser build" >&2
  exit 1
fi
