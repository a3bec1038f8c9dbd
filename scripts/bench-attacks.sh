#!/usr/bin/env bash
# Attack images/s, robarch against torchattacks PGD-20 and fra31 AutoAttack's APGD-CE, APGD-T and
# AutoAttack standard on several models at equal batch and threads: medians, ranges and ratios.
# Usage: scripts/bench-attacks.sh [--models M1,M2,...] [--n 128] [--batch 128] [--threads N]
#        [--repeats 3] [--attacks pgd,apgd-ce,apgd-t,aa]
# A model is arch:preset[@image size] (fresh weights) or a train/... cache entry directory. Without
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
entry() {
  (cd "$WORK" && "$BIN" explain --format json p.yaml "train/digits/$1/pgd-linf") |
    "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])'
}
# The tiny models with every attack on 128 points; ResNet-18 at its CIFAR preset (a forward and
# backward pass ~100x the tiny models') with PGD and APGD-CE on 16 points, so that one run of the
# benchmark takes minutes, not hours, on a 2-core CPU. Later flags override these.
cargo bench --locked -p robarch-worker --bench attacks -- --threads 1 --repeats 3 \
  --models "$WORK/$(entry densenet121),$WORK/$(entry vit)" "$@"
cargo bench --locked -p robarch-worker --bench attacks -- --threads 1 --repeats 3 \
  --n 16 --batch 16 --attacks pgd,apgd-ce --models "$WORK/$(entry resnet18)" "$@"
