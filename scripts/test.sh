#!/usr/bin/env bash
# Set up, build, and run the whole test suite (unit + integration tests that drive the binary).
"$(dirname "$0")/build.sh"
source "$(dirname "$0")/env.sh"
# The suite runs under cargo-nextest (one process per test: libtorch's thread settings and the
# tests' environment stay per test). A machine with only Rust gets it once, built from crates.io.
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo-nextest is not installed: installing it with cargo install (once, a few minutes)" >&2
    cargo install cargo-nextest --locked --version "$NEXTEST_VERSION" --target-dir "$(mktemp -d)"
fi
# The Slurm executor's tests run a real Slurm, of one node and of two (in namespaces of their own):
# installed here when it can be (root and apt-get), and then required; elsewhere those tests say
# they skipped (the two-node one also where namespaces cannot be created).
if bash "$(dirname "$0")/slurm-local.sh" install; then
    export ROBARCH_SLURM=required
else
    echo "warning: Slurm could not be installed: the Slurm executor's test will be skipped" >&2
fi
# The report's test compiles the LaTeX tables and renders the HTML page in headless Chromium:
# installed here when they can be (root and apt-get), and then required; elsewhere those checks
# say they skipped.
if bash "$(dirname "$0")/report-tools.sh" install; then
    export ROBARCH_REPORT_TOOLS=required
else
    echo "warning: pdflatex/poppler/Chromium could not be installed: the report's LaTeX and browser checks will be skipped" >&2
fi
# The library's unit tests with its tensor code, and the integration tests (the worker package's,
# which drive both binaries); `robarch` itself stays as build.sh built it, without libtorch.
exec cargo nextest run --release --locked --no-fail-fast --workspace --features robarch/torch \
    --lib --tests "$@"
