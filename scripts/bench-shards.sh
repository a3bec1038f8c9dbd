#!/usr/bin/env bash
# Sharding's overhead: one evaluation as one stage against 4 shards and their merge, alternately,
# medians of --runs (default 3), all taken in this one run; and the merge stage's time for 10,000
# points. scripts/bench_shards.py says how each figure is made.
# Usage: scripts/bench-shards.sh [--runs N] [--work DIR]
"$(dirname "$0")/build.sh" >/dev/null
source "$(dirname "$0")/env.sh"
args=("$@")
if [[ " $* " != *" --work "* ]]; then
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  args+=(--work "$work")
fi
echo "$(nproc) cores"
python3 "$ROOT/scripts/bench_shards.py" --robarch "$ROBARCH_BIN" "${args[@]}"
