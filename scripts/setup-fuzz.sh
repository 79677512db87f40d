#!/usr/bin/env bash
# Prerequisites of `make fuzz`, installed only when missing: a nightly toolchain (libFuzzer's
# instrumentation needs -Z flags) and cargo-fuzz from crates.io.
set -euo pipefail
CARGO_FUZZ_VERSION=0.13.1
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "setup-fuzz: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "setup-fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
