#!/usr/bin/env bash
# Set up, build, and run the quickstart pipeline (embedded digits data, CPU minutes).
"$(dirname "$0")/build.sh"
source "$(dirname "$0")/env.sh"
exec "$ROBARCH_BIN" run pipelines/quickstart.yaml "$@"
