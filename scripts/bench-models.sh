#!/usr/bin/env bash
# Forward+backward images/s of each architecture's paper presets, robarch vs the same network in
# PyTorch on this machine (CUDA when present), as ratios measured in one run.
# Usage: scripts/bench-models.sh [--arch a,b] [--preset cifar|imagenet|all] [--batch 128]
#        [--iters 3] [--threads N] [--device cpu|cuda] [--channels-last on|off]
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench models -- "$@"
