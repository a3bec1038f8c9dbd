#!/usr/bin/env bash
# What keeping freed memory in the worker's heap (src/torch/alloc.rs) is worth: robarch's PGD-20
# images/s (every step: all points take every step) with the worker's heap thresholds and with
# glibc's defaults (ROBARCH_HEAP=glibc), alternating, on the same models; prints the medians and
# their ratio. Usage: scripts/bench-heap.sh [--runs 2] [--models densenet121:tiny@16,...]
source "$(dirname "$0")/env.sh"
runs=2
models="densenet121:tiny@16,swin:tiny@16"
while [ $# -gt 0 ]; do
  case "$1" in
  --runs) runs=$2; shift 2 ;;
  --models) models=$2; shift 2 ;;
  *) echo "usage: scripts/bench-heap.sh [--runs N] [--models M1,M2]" >&2; exit 2 ;;
  esac
done
cargo bench --locked -p robarch-worker --bench attacks --no-run >&2
out=$(mktemp -d)
for i in $(seq 1 "$runs"); do
  for heap in kept glibc; do
    env_heap=()
    [ "$heap" = glibc ] && env_heap=(ROBARCH_HEAP=glibc)
    env "${env_heap[@]}" cargo bench --locked -p robarch-worker --bench attacks -- \
      --models "$models" --attacks pgd --threads 1 --repeats 3 --n 128 --batch 128 \
      2>/dev/null | grep "every step" >>"$out/$heap"
  done
done
"$ROOT/.venv/bin/python" - "$out" <<'PY'
import pathlib, re, statistics, sys
d = pathlib.Path(sys.argv[1])
rates = {}
for heap in ["kept", "glibc"]:
    for line in (d / heap).read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        rates.setdefault(cells[0], {}).setdefault(heap, []).append(float(cells[2].split()[0]))
print("| model | heap kept img/s | glibc defaults img/s | ratio |")
print("|---|---|---|---|")
for model, r in rates.items():
    k, g = statistics.median(r["kept"]), statistics.median(r["glibc"])
    print(f"| {model} | {k:.1f} ({min(r['kept']):.1f}–{max(r['kept']):.1f}) | {g:.1f} ({min(r['glibc']):.1f}–{max(r['glibc']):.1f}) | {k / g:.2f} |")
PY
