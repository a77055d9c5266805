#!/usr/bin/env bash
# Run every fuzz target for a bounded time (not part of CI: ./scripts/fuzz.sh [SECONDS]).
#
# cargo-fuzz wants nightly for `-Zsanitizer=address`; this machine has stable Rust only.
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags, and the address sanitizer's
# runtime ships with the stable x86_64-unknown-linux-gnu toolchain, so this works on stable.
# Crashes land in fuzz/artifacts/TARGET/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…
# and add its input as a regression test beside the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
export RUSTC_BOOTSTRAP=1
# The instrumented build has its own target dir (it shares nothing with the normal one).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
status=0
for target in admission_review history_path store_keys plugins_yaml; do
    mkdir -p "fuzz/corpus/$target"
    echo "== $target ($SECONDS_PER_TARGET s)"
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -max_len=65536; then
        echo "!! $target found a crash: see fuzz/artifacts/$target/"
        status=1
    fi
done
exit "$status"
