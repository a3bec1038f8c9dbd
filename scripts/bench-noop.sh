#!/usr/bin/env bash
# The no-op benchmark: a generated ~500-stage study pipeline with paper-size weights (WRN-34-10,
# WRN-28-10, ResNet-50, ResNet-18, VGG-16-BN at their CIFAR presets; tiny data, cheap attacks) is
# run once, then robarch's no-op rerun is timed against `snakemake -n` and `dvc status` on the same
# DAG and files; planning time is taken at 100, 1,000 and 10,000 stages. Medians of N whole-process
# runs, all taken in this one run (scripts/bench_noop.py says how each figure is made).
# Usage: scripts/bench-noop.sh [--runs N] [--jobs J] [--baseline OLD_ROBARCH] [--work DIR]
# --baseline also times the first run of another robarch binary (e.g. an older build) on the
# same pipeline. Snakemake and DVC go into a bench-only virtualenv (ROBARCH_BENCH_VENV, default
# ~/.cache/robarch-bench-venv), never into the project's .venv.
"$(dirname "$0")/build.sh" >/dev/null
source "$(dirname "$0")/env.sh"
VENV="${ROBARCH_BENCH_VENV:-$HOME/.cache/robarch-bench-venv}"
if ! "$VENV/bin/snakemake" --version >/dev/null 2>&1 || ! "$VENV/bin/dvc" --version >/dev/null 2>&1; then
  echo "==> installing snakemake and dvc into $VENV (bench only, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check snakemake==9.27.1 dvc==3.67.1
fi
args=("$@")
if [[ " $* " != *" --work "* ]]; then
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  args+=(--work "$work")
fi
echo "snakemake $("$VENV/bin/snakemake" --version), $("$VENV/bin/dvc" --version | head -1 | sed 's/^/dvc /'), $(nproc) cores"
python3 "$ROOT/scripts/bench_noop.py" --robarch "$ROBARCH_BIN" --venv "$VENV" "${args[@]}"
