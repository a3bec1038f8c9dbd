#!/usr/bin/env bash
# Set up (idempotent) and build the release binaries; links ./bin/robarch.
# Two cargo invocations on purpose: `robarch` (the control plane) is built without libtorch, and
# cargo would unify the `torch` feature into it if both packages were built at once.
source "$(dirname "$0")/env.sh"
cargo build --release --locked -p robarch --bins
cargo build --release --locked -p robarch-worker --bins
mkdir -p "$ROOT/bin" && ln -sfn "$ROBARCH_BIN" "$ROOT/bin/robarch"
