#!/usr/bin/env bash
# PGD-AT (ℓ∞, 10 steps) training images/s, robarch's training loop vs a plain PyTorch loop on the
# same models (ResNet-18, ViT CIFAR presets by default), batch and threads, as ratios measured in
# one run (CUDA when present), and robarch training the same network as a TorchScript module
# (`arch: torchscript, train: true`): ratios scripted/native and scripted/PyTorch.
# Usage: scripts/bench-train.sh [--arch resnet18,vit] [--preset cifar|imagenet] [--batch 128]
#        [--iters 3] [--steps 10] [--threads N] [--device cpu|cuda]
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench train -- "$@"
