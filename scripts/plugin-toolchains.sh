#!/usr/bin/env bash
# Installs what the plugin tests need to build guests in every language we ship:
# the wasm32-wasip2 Rust target, componentize-py (PyPI) and jco + componentize-js (npm).
# Idempotent and quiet on success; prints what failed otherwise.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
componentize_py_version="0.25.1"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run() {
    if ! "$@" >"$log" 2>&1; then
        echo "plugin-toolchains: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    run rustup target add wasm32-wasip2
fi

if [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "$componentize_py_version" ]; then
    run python3 -m pip install --quiet "componentize-py==$componentize_py_version"
fi

# Exactly the committed package-lock.json (`npm ci` never rewrites it, so the tree stays
# clean): jco and componentize-js pinned in package.json, with the preview2-shim override
# that jco 1.35 needs to read the source file. After changing package.json, refresh the lock
# with `npm install --prefix plugins/predicate-js` and commit it.
js="$root/plugins/predicate-js"
if [ ! -x "$js/node_modules/.bin/jco" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    run npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
fi
