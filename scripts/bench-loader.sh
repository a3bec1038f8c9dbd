#!/usr/bin/env bash
# Batch-assembly throughput (with augmentation) against one ResNet-18 training step, in one run.
# Usage: scripts/bench-loader.sh
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench loader
