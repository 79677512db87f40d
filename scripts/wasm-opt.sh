#!/usr/bin/env bash
# Shrinks a wasm module in place with binaryen's wasm-opt (npm package `binaryen`), caching the
# result by the hash of the input so that an unchanged module is not optimised twice.
#
#   scripts/wasm-opt.sh FILE.wasm CACHE_DIR [wasm-opt flags...]
set -euo pipefail
wasm=${1:?usage: wasm-opt.sh FILE.wasm CACHE_DIR [flags...]}
cache=${2:?usage: wasm-opt.sh FILE.wasm CACHE_DIR [flags...]}
shift 2
mkdir -p "$cache"
hash=$(sha256sum "$wasm" | cut -c1-64)
if [ ! -f "$cache/$hash.wasm" ]; then
  "$(dirname "$0")/../node_modules/.bin/wasm-opt" "$@" "$wasm" -o "$cache/$hash.wasm.tmp"
  mv "$cache/$hash.wasm.tmp" "$cache/$hash.wasm"
fi
cp "$cache/$hash.wasm" "$wasm"
