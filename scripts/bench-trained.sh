# Sourced (after env.sh) by the benchmarks that run on trained models: builds robarch, trains the
# models of scripts/bench_attacks.yaml once into ~/.cache/robarch-bench-attacks (a rerun finds them
# cached), and defines
#   BENCH_DATA          the prepared digits' data.safetensors (the test images attacked);
#   bench_model ARCH    the directory of ARCH's trained cache entry (a model for --models).
bash "$ROOT/scripts/build.sh" >&2
BENCH_WORK="$HOME/.cache/robarch-bench-attacks"
mkdir -p "$BENCH_WORK"
cp "$ROOT/scripts/bench_attacks.yaml" "$BENCH_WORK/p.yaml"
echo "==> training the benchmark models (once; cached in $BENCH_WORK)" >&2
(cd "$BENCH_WORK" && "$ROBARCH_BIN" run p.yaml >run.log)
bench_entry() {
  (cd "$BENCH_WORK" && "$ROBARCH_BIN" explain --format json p.yaml "$1") |
    "$ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["entry"])'
}
BENCH_DATA="$BENCH_WORK/$(bench_entry prepare/digits)/data.safetensors"
bench_model() { echo "$BENCH_WORK/$(bench_entry "train/digits/$1/pgd-linf")"; }
