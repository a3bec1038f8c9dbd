#!/usr/bin/env bash
# What a worker saves by receiving its stage described whole: planning a generated 1,003-stage
# pipeline to find one stage (what every worker and Slurm job did before) against reading the
# stage's task line and rebuilding it (now). Medians of N in-process runs, measured in this run.
# Usage: scripts/bench-tasks.sh [--runs N]
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec cargo bench --locked -p robarch-worker --bench tasks -- "$@"
