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

# --- PostgreSQL (the `--store postgres://…` backend's tests) ------------------------------
# Throwaway PostgreSQL clusters in temporary directories on free loopback ports, stopped on
# exit: one shared by the tests (each creates its own databases), one that the outage test
# stops and starts. initdb/pg_ctl refuse to run as root (CI runs as root): they run as the
# `postgres` user that Debian's package creates. The tests read LOGISTIS_TEST_POSTGRES and
# LOGISTIS_TEST_POSTGRES_OUTAGE (admin URLs) and LOGISTIS_TEST_POSTGRES_OUTAGE_CTL (a script
# taking stop|start); without them they say they are skipped, and under CI they fail.
postgres_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
POSTGRES_DIRS=()
# start_postgres VARIABLE: start a cluster, export its URL as VARIABLE and its control
# script as VARIABLE_CTL.
start_postgres() {
    local variable=$1 bin dir port as=()
    bin=$(postgres_bin)
    if [ -z "$bin" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin=$(postgres_bin)
    fi
    dir=$(mktemp -d -t logistis-pg.XXXXXX)
    POSTGRES_DIRS+=("$dir")
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    cat > "$dir/ctl" <<CTL
#!/usr/bin/env bash
# stop|start the test PostgreSQL in $dir
set -euo pipefail
case "\$1" in
    stop) ${as[*]} "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null ;;
    start) ${as[*]} "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-k $dir -c listen_addresses=127.0.0.1 -p $port -c max_connections=300" start >/dev/null ;;
esac
CTL
    chmod 755 "$dir/ctl"
    "$dir/ctl" start
    export "$variable=postgres://postgres@127.0.0.1:$port/postgres"
    export "${variable}_CTL=$dir/ctl"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') for the tests on 127.0.0.1:$port ($variable)"
}
stop_postgres() {
    local dir
    for dir in "${POSTGRES_DIRS[@]}"; do
        "$dir/ctl" stop 2>/dev/null || true
        rm -rf "$dir"
    done
}
if [ -z "${LOGISTIS_TEST_POSTGRES:-}" ]; then
    trap 'stop_postgres; rm -f "$skipped_log"' EXIT
    start_postgres LOGISTIS_TEST_POSTGRES
    start_postgres LOGISTIS_TEST_POSTGRES_OUTAGE
fi
# --- end PostgreSQL ------------------------------------------------------------------------

cargo build --workspace --bins --quiet
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
# The end-to-end suites again with every server on PostgreSQL (a fresh database each): both
# backends must give the same answers. (Filters over the same build as above, so the unit
# tests of those names run again too; `--test e2e` alone would rebuild with other features.)
if [ "$#" -eq 0 ]; then
    LOGISTIS_E2E_STORE=postgres cargo test --workspace --no-fail-fast -- \
        admission:: query:: history:: cli:: durability:: sink locks:: || status=$?
fi

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
