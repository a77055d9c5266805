#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the toolchains the plugin tests need
# (wasm32-wasip2, componentize-py, jco/componentize-js), builds every binary, runs every test.
# The end-to-end tests start the real binaries over real HTTPS; the real-payload corpus in
# ../shared/fixtures is used when it is beside the clone (its tests say so when it is not).
#
# Tests that could not run all or part of what they check (no corpus, a validator missing)
# say so in a list after cargo's summary, so that a green run never hides a skip. The tree
# is left as it was: the JavaScript toolchain is installed with `npm ci` from the committed
# lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

./scripts/plugin-toolchains.sh
# The deploy tests' validators (tests/e2e/deploy/validators.rs): the Kubernetes API schemas
# and a CEL interpreter for the webhook's matchConditions. They also need kubectl and make.
if ! python3 -c 'import celpy, kubernetes_validate' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==1.37.0" "cel-python==0.5.0"
fi
# promtool checks the alerting rules of deploy/observability (tests/e2e/observability.rs).
if promtool="$(./scripts/promtool.sh)"; then
    export LOGISTIS_PROMTOOL="$promtool"
fi

skipped_log="$(mktemp)"
trap 'rm -f "$skipped_log"' EXIT
export LOGISTIS_SKIPPED_LOG="$skipped_log"

cargo build --workspace --bins --quiet
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

echo
if [ -s "$skipped_log" ]; then
    echo "SKIPPED (not run, or run only in part):"
    sort -u "$skipped_log" | sed 's/^/  /'
else
    echo "Nothing skipped."
fi
elapsed=$((SECONDS - started))
echo "scripts/test.sh: $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $((elapsed / 60))m$((elapsed % 60))s"
exit "$status"
