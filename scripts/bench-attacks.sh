#!/usr/bin/env bash
# Attack images/s, robarch against torchattacks PGD-20 and fra31 AutoAttack's APGD-CE, APGD-T and
# AutoAttack standard on several models at equal batch and threads: medians, ranges and ratios.
# Usage: scripts/bench-attacks.sh [--models M1,M2,...] [--n 128] [--batch 128] [--threads N]
#        [--repeats 3] [--attacks pgd,apgd-ce,apgd-t,aa]
# A model is arch:preset[@image size] (fresh weights) or a train/... cache entry directory. Without
# --models: the three adversarially trained models of scripts/bench_attacks.yaml (trained once into
# ~/.cache/robarch-bench-attacks; a CNN, a transformer, ResNet-18 at its CIFAR preset).
source "$(dirname "$0")/env.sh"
args=("$@")
if [[ " $* " != *" --models "* ]]; then
  bash "$ROOT/scripts/build.sh" >&2
  BIN="$CARGO_TARGET_DIR/release/robarch"
  WORK="$HOME/.cache/robarch-bench-attacks"
  mkdir -p "$WORK"
  cp "$ROOT/scripts/bench_attacks.yaml" "$WORK/p.yaml"
  (cd "$WORK" && "$BIN" run p.yaml > run.log)
  models=()
  for stage in $(cd "$WORK" && "$BIN" dag p.yaml | awk '$2 ~ /^train\// {print $2}'); do
    entry=$(cd "$WORK" && "$BIN" explain --format json p.yaml "$stage" |
      "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])')
    models+=("$WORK/$entry")
  done
  args+=(--models "$(IFS=,; echo "${models[*]}")")
fi
cargo bench --locked -p robarch-worker --bench attacks -- "${args[@]}"
