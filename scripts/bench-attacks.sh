#!/usr/bin/env bash
# Attack images/s, robarch vs torchattacks PGD-20 and fra31 AutoAttack's APGD-CE/APGD-T on the same
# model, data, batch and threads, as ratios measured in one run.
# Usage: scripts/bench-attacks.sh [--preset tiny|cifar] [--n 128] [--batch 128] [--threads N]
#        [--repeats 2] [--trained DIR]
source "$(dirname "$0")/env.sh"
cargo bench --locked -p robarch-worker --bench attacks -- "$@"
