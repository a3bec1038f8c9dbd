#!/usr/bin/env bash
# Time `robarch report` from a warm cache on a generated study of the paper's size (20 architectures
# × 10 attacks × 2 splits, sparsity, bounds, histories, correlation): rendered from the cached
# inputs, and copied from a cached report entry; prints medians and their ratios measured in one run.
# Usage: scripts/bench-report.sh [--runs 5] [--keep DIR]   (--keep: copy the generated report to DIR)
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/build.sh" >/dev/null
cargo bench --locked -p robarch-worker --bench report -- "$@"
