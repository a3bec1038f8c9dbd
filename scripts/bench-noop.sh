#!/usr/bin/env bash
# Times a no-op rerun of a pipeline (everything cached) against its first run, in one go.
# Usage: scripts/bench-noop.sh [PIPELINE] [RUNS]
source "$(dirname "$0")/env.sh"
pipeline="${1:-pipelines/quickstart.yaml}"; runs="${2:-5}"
cache="$(mktemp -d)"; trap 'rm -rf "$cache"' EXIT
t0=$(date +%s.%N)
"$ROBARCH_BIN" --cache "$cache/c" run "$pipeline" --reports "$cache/r" >/dev/null 2>&1
t1=$(date +%s.%N)
best=999
for _ in $(seq "$runs"); do
  s=$(date +%s.%N)
  "$ROBARCH_BIN" --cache "$cache/c" run "$pipeline" --reports "$cache/r" >/dev/null 2>&1
  e=$(date +%s.%N)
  best=$(python3 -c "print(min($best, $e - $s))")
done
python3 -c "first=$t1-$t0; print(f'first run {first:.2f}s; no-op rerun best of $runs {$best:.3f}s; ratio {first/$best:.0f}x')"
