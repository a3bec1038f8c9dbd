#!/usr/bin/env bash
# APGD-ℓ1 strength, robarch against fra31's APGDAttack, on models no test uses: the models of
# scripts/l1_strength/pipeline.yaml (3 architectures × standard and PGD-ℓ∞ training), trained once,
# attacked with evaluation seeds 0, 1, 2 on both sides. Prints a Markdown table: robust accuracy
# per model and attack, mean and spread over the seeds per side, and robarch − fra31.
# Usage: scripts/l1-strength.sh [WORKDIR]  (default ~/.cache/robarch-l1-strength; rerunning reuses
# its cache, so only what changed is recomputed)
source "$(dirname "$0")/env.sh"
bash "$ROOT/scripts/build.sh" >&2
BIN="$CARGO_TARGET_DIR/release/robarch"
WORK="${1:-$HOME/.cache/robarch-l1-strength}"
SEEDS=(0 1 2)
mkdir -p "$WORK"
cd "$WORK"
for s in "${SEEDS[@]}"; do
  # One pipeline per evaluation seed; the trained models are the same stages in all of them.
  sed -e "s/^name: l1-strength$/name: l1-strength-s$s/" \
      -e "s/^  splits: \[test\]$/  seed: $s\n  splits: [test]/" \
      "$ROOT/scripts/l1_strength/pipeline.yaml" > "s$s.yaml"
  grep -q "^  seed: $s$" "s$s.yaml" || { echo "error: could not set evaluation.seed in s$s.yaml" >&2; exit 1; }
  echo "==> robarch, evaluation seed $s" >&2
  "$BIN" run "s$s.yaml" > "run-s$s.log"
done
rm -rf export
for stage in $("$BIN" dag s0.yaml | awk '$2 ~ /^train\// {print $2}'); do
  IFS=/ read -r _ _ model training <<< "$stage"
  "$BIN" export s0.yaml "$stage" --to "export/$model-$training" > /dev/null
done
entry=$("$BIN" explain --format json s0.yaml prepare/digits |
  "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])')
"$ROOT/.venv/bin/python" "$ROOT/scripts/l1_strength.py" "$WORK" "$entry/data.safetensors" "${SEEDS[@]}"
