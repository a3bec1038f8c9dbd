#!/usr/bin/env bash
# Set up (idempotent) and build the release binary; links it as ./bin/robarch.
source "$(dirname "$0")/env.sh"
cargo build --release --locked --bins
mkdir -p "$ROOT/bin" && ln -sfn "$ROBARCH_BIN" "$ROOT/bin/robarch"
