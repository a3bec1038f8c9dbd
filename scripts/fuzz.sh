#!/usr/bin/env bash
# Fuzzes spec parsing and planning for SECONDS (default 600) with cargo fuzz (libFuzzer, nightly
# Rust), seeded with the project's pipelines and the bad-input corpus. Installs cargo-fuzz where it
# is missing. Findings go to fuzz/artifacts/spec/; the corpus it grows to fuzz/corpus/spec/.
source "$(dirname "$0")/env.sh"
SECONDS_TO_RUN="${1:-600}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list > /tmp/robarch-toolchains.$$
grep -q '^nightly' /tmp/robarch-toolchains.$$ || {
  echo "error: cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
rm -f /tmp/robarch-toolchains.$$
# Its own target directory: instrumented builds share nothing with the release build.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/robarch-fuzz-target}"
mkdir -p fuzz/corpus/spec
cp pipelines/*.yaml tests/corpus/bad/*.yaml fuzz/corpus/spec/ 2>/dev/null
# The target links the control-plane library (spec, plan: no libtorch). No sanitizer, for speed;
# coverage and debug assertions still apply.
cd fuzz && cargo +nightly fuzz run --sanitizer none spec corpus/spec -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=10 -print_final_stats=1
