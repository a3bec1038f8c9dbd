#!/usr/bin/env bash
# Seconds the analyses (sparsity, layer norms, bounds) take on paper-size models on the CPU.
# Usage: scripts/bench-analysis.sh [--arch resnet18,vit] [--preset cifar|imagenet|all]
#        [--conv-grid 8] [--threads N]
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench analysis -- "$@"
