#!/usr/bin/env bash
# PGD-AT (ℓ∞, 10 steps) and TRADES training images/s, robarch's training loop vs a plain PyTorch
# loop on the same models (the four of scripts/bench-attacks.sh at 16 px by default), batch, attack
# and threads, as ratios measured in one run (CUDA when present), with what the loader and its
# augmentation cost as a share of an epoch; with --scripted on, also robarch training the same
# network as a TorchScript module (`arch: torchscript, train: true`).
# Usage: scripts/bench-train.sh [--models arch:preset[@size],...] [--arch a,b --preset cifar]
#        [--methods pgd-at,trades] [--batch 128] [--iters 3] [--steps 10] [--threads 1,2]
#        [--device cpu|cuda] [--amp auto|bf16|off] [--channels-last auto|on|off] [--scripted off|on]
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench train -- "$@"
