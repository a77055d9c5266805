#!/usr/bin/env bash
# Prints the path of a `promtool` (to check the PrometheusRule alerts in deploy/observability):
# the one on PATH, else the one from Debian's `prometheus` package, unpacked once into
# ~/.cache/logistis/prometheus without installing the package (and so without its service).
# Exits non-zero with a message when neither is possible (then the rule tests say SKIPPED).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    exit 0
fi
dir="${XDG_CACHE_HOME:-$HOME/.cache}/logistis/prometheus"
bin="$dir/usr/bin/promtool"
if [ ! -x "$bin" ]; then
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
        echo "promtool.sh: no promtool on PATH and no apt-get/dpkg to fetch Debian's" >&2
        exit 1
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update >/dev/null 2>&1 || true
        (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || {
            echo "promtool.sh: apt-get download prometheus failed" >&2
            exit 1
        }
    fi
    mkdir -p "$dir"
    dpkg -x "$tmp"/prometheus_*.deb "$dir"
fi
echo "$bin"
