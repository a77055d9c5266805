#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the toolchains the plugin tests need
# (wasm32-wasip2, componentize-py, jco/componentize-js), builds every binary, runs every test.
# The end-to-end tests start the real binaries over real HTTPS; the real-payload corpus in
# ../shared/fixtures is used when it is beside the clone (its tests say so when it is not).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/plugin-toolchains.sh
# The deploy tests' validators (tests/e2e/deploy/validators.rs): the Kubernetes API schemas
# and a CEL interpreter for the webhook's matchConditions. They also need kubectl and make.
if ! python3 -c 'import celpy, kubernetes_validate' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==1.37.0" "cel-python==0.5.0"
fi
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast "$@"
