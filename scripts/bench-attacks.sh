#!/usr/bin/env bash
# Attack images/s, robarch against torchattacks PGD-20 and fra31 AutoAttack's APGD-CE, APGD-T and
# AutoAttack standard on several models at equal batch and threads: medians, ranges and ratios.
# Usage: scripts/bench-attacks.sh [--models M1,M2,...] [--data DATA] [--n 128] [--batch 128] [--threads N]
#        [--repeats 3] [--attacks pgd,apgd-ce,apgd-t,aa]
# A model is arch:preset[@image size] (fresh weights) or a train/... cache entry directory; DATA a
# prepared data.safetensors whose test images are attacked (default: uniform noise). Without
# --models: the three adversarially trained models of scripts/bench_attacks.yaml (trained once into
# ~/.cache/robarch-bench-attacks; a CNN, a transformer, ResNet-18 at its CIFAR preset), one thread
# per side, 3 repeats.
source "$(dirname "$0")/env.sh"
if [[ " $* " == *" --models "* ]]; then
  exec cargo bench --locked -p robarch-worker --bench attacks -- "$@"
fi
bash "$ROOT/scripts/build.sh" >&2
BIN="$CARGO_TARGET_DIR/release/robarch"
WORK="$HOME/.cache/robarch-bench-attacks"
mkdir -p "$WORK"
cp "$ROOT/scripts/bench_attacks.yaml" "$WORK/p.yaml"
(cd "$WORK" && "$BIN" run p.yaml > run.log)
data=$(cd "$WORK" && "$BIN" explain --format json p.yaml prepare/digits |
  "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])')
entry() {
  (cd "$WORK" && "$BIN" explain --format json p.yaml "train/digits/$1/pgd-linf") |
    "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])'
}
# PGD-20 and APGD-CE on every model (128 test points for the tiny ones, 32 for ResNet-18 at its
# CIFAR preset, whose forward and backward pass costs ~100x theirs), and AutoAttack standard on
# the CNN (32 points): one run takes ~15 minutes on a 2-core CPU, not hours. Later flags override.
run() { cargo bench --locked -p robarch-worker --bench attacks -- --threads 1 --repeats 3 \
  --data "$WORK/$data/data.safetensors" "$@"; }
run --attacks pgd,apgd-ce --models "$WORK/$(entry densenet121),$WORK/$(entry swin)" "$@"
run --n 32 --batch 32 --attacks pgd,apgd-ce --models "$WORK/$(entry resnet18)" "$@"
run --n 32 --batch 32 --attacks aa --models "$WORK/$(entry densenet121)" "$@"
