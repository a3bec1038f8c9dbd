#!/usr/bin/env bash
# Set up, build, and run the whole test suite (unit + integration tests that drive the binary).
"$(dirname "$0")/build.sh"
source "$(dirname "$0")/env.sh"
exec cargo nextest run --release --locked --no-fail-fast "$@"
