#!/usr/bin/env bash
# Attack images/s, robarch against torchattacks PGD-20 and fra31 AutoAttack's APGD-CE, APGD-T and
# AutoAttack standard on several models at equal batch and threads, the two sides taking turns run
# by run: medians, ranges and paired ratios.
# Usage: scripts/bench-attacks.sh [--models M1,M2,...] [--data DATA] [--n 128] [--batch 128]
#        [--threads 1,2] [--repeats 3] [--attacks pgd,apgd-ce,apgd-t,aa] [--device cpu|cuda]
#        [--amp off,bf16] [--channels-last off,on]
# A model is arch:preset[@image size] (fresh weights) or a train/... cache entry directory; DATA a
# prepared data.safetensors whose test images are attacked (default: uniform noise). Without
# --models: the four adversarially trained models of scripts/bench_attacks.yaml (trained once into
# ~/.cache/robarch-bench-attacks; a CNN, a transformer, ResNet-18 and ConvNeXt at their CIFAR
# presets), at 1 and at 2 threads per side. With --device cuda both sides run on the
# GPU, in float32 and under bf16 autocast, channels-last off and on (every combination).
source "$(dirname "$0")/env.sh"
defaults=(--threads 1,2 --repeats 3)
[[ " $* " == *" --device cuda "* ]] && defaults+=(--amp off,bf16 --channels-last off,on)
if [[ " $* " == *" --models "* ]]; then
  exec cargo bench --locked -p robarch-worker --bench attacks -- "${defaults[@]}" "$@"
fi
source "$ROOT/scripts/bench-trained.sh"
# PGD-20 and APGD-CE on every model (128 test points and 5 repeats for the tiny ones, 32 points
# for the CIFAR presets, whose forward and backward pass costs ~10-100x theirs), and AutoAttack
# standard on the CNN (32 points): about 45 minutes on a 2-core CPU, not hours. Later flags
# override.
run() { cargo bench --locked -p robarch-worker --bench attacks -- "${defaults[@]}" \
  --data "$BENCH_DATA" "$@"; }
run --repeats 5 --attacks pgd,apgd-ce --models "$(bench_model densenet121),$(bench_model swin)" "$@"
run --n 32 --batch 32 --attacks pgd,apgd-ce --models "$(bench_model resnet18),$(bench_model convnext)" "$@"
run --n 32 --batch 32 --attacks aa --models "$(bench_model densenet121)" "$@"
