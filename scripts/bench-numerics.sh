#!/usr/bin/env bash
# The cost of `numerics: portable`: a pipeline (default: pipelines/quickstart.yaml) is run from an
# empty cache with `numerics: default` and with `numerics: portable`, alternating, N times each
# (same -j and --threads), and the median wall times and their ratio are printed. Every stage is
# computed each time (each run has its own cache); the reports are thrown away.
# Usage: scripts/bench-numerics.sh [--pipeline P] [--runs N] [-j J] [--threads T]
"$(dirname "$0")/build.sh" >/dev/null
source "$(dirname "$0")/env.sh"
pipeline="$ROOT/pipelines/quickstart.yaml"; runs=1; jobs="$(nproc)"; threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --pipeline) pipeline="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    -j) jobs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "usage: $0 [--pipeline P] [--runs N] [-j J] [--threads T]" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
for mode in default portable; do
  # The pipeline as written, with its `numerics:` line (if any) replaced by this mode's.
  grep -v '^numerics:' "$pipeline" > "$work/$mode.yaml"
  echo "numerics: $mode" >> "$work/$mode.yaml"
done
declare -A times
for ((i = 1; i <= runs; i++)); do
  for mode in default portable; do
    rm -rf "$work/cache" "$work/reports"
    start=$(date +%s.%N)
    "$ROBARCH_BIN" --cache "$work/cache" run "$work/$mode.yaml" -j "$jobs" --threads "$threads" \
      --reports "$work/reports" >/dev/null 2>"$work/$mode.err" ||
      { echo "error: the $mode run failed:" >&2; tail -5 "$work/$mode.err" >&2; exit 1; }
    end=$(date +%s.%N)
    took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    times[$mode]+="$took "
    echo "run $i, numerics: $mode: $took s" >&2
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
d=$(median "${times[default]}"); p=$(median "${times[portable]}")
echo "$(basename "$pipeline"), $runs run(s) each, -j $jobs --threads $threads, $(nproc) cores"
printf 'numerics: default   %8.1f s (median)\n' "$d"
printf 'numerics: portable  %8.1f s (median)\n' "$p"
printf 'portable / default  %8.2fx\n' "$(awk -v p="$p" -v d="$d" 'BEGIN { print p / d }')"
