#!/usr/bin/env bash
# The real thing behind the store's disk-full unit test: the real `logistis` binary on a
# small tmpfs (needs root), reviews posted over HTTPS until the volume is full, space freed,
# and the server must take writes again by itself — no restart.
#
#   cargo build -p logistis && sudo scripts/disk-full.sh [path/to/logistis]
#
# Prints what /readyz (both ports) and /metrics say at each stage; exits non-zero when the
# store did not refuse writes while full or did not recover after space came back.
set -euo pipefail

bin=${1:-${CARGO_TARGET_DIR:-target}/debug/logistis}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build -p logistis" >&2; exit 2; }

work=$(mktemp -d)
mnt=$work/volume
mkdir -p "$mnt"
mount -t tmpfs -o size=64m tmpfs "$mnt"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  umount "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --self-signed --data-dir "$mnt/data" --webhook-listen 127.0.0.1:0 \
  --query-listen 127.0.0.1:0 --store-memory 8Mi >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q '^query: ' "$work/out" 2>/dev/null && break; sleep 0.1; done
webhook=$(sed -n 's/^webhook: //p' "$work/out")
query=$(sed -n 's/^query: //p' "$work/out")
ca=$(sed -n 's/^ca: //p' "$work/out")
base=${webhook%/validate}

# One real review with a big, incompressible annotation, a new uid each time.
review() {
  python3 - "$1" <<'EOF'
import json, os, sys
name = "cm-" + sys.argv[1]
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "disk-full-" + sys.argv[1], "operation": "CREATE",
    "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
    "resource": {"group": "", "version": "v1", "resource": "configmaps"},
    "namespace": "shop", "name": name, "userInfo": {"username": "alice"},
    "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"},
               "data": {"blob": os.urandom(48000).hex()}}}}))
EOF
}
post() { review "$1" | curl -s --cacert "$ca" -H 'content-type: application/json' --data-binary @- "$webhook"; }
show() {
  echo "--- $1"
  echo "query  /readyz: $(curl -s --cacert "$ca" -w ' (%{http_code})' "$query/readyz")"
  echo "webhook /readyz: $(curl -s --cacert "$ca" -w ' (%{http_code})' "$base/readyz")"
  curl -s --cacert "$ca" "$query/metrics" | grep -E '^logistis_store_(accepting_writes|size_bytes|volume_free_bytes|write_state_changes_total) '
  echo "recorded: $(curl -s --cacert "$ca" "$query/metrics" | sed -n 's/^logistis_admission_reviews_total{outcome="recorded"} //p')"
}

show "started"
free=$(df --output=avail -B1 "$mnt" | tail -1)
head -c $((free - 8*1024*1024)) /dev/zero >"$mnt/filler" || true
n=0
until [ "$(curl -s --cacert "$ca" -o /dev/null -w '%{http_code}' "$query/readyz")" = 503 ]; do
  n=$((n + 1)); post "$n" >/dev/null
  [ $n -lt 2000 ] || { echo "FAIL: the volume never filled" >&2; exit 1; }
done
for i in $(seq 20); do post "full-$i" | grep -q '"allowed":true' || { echo "FAIL: not allowed while full" >&2; exit 1; }; done
show "full after $n reviews (20 more answered while full)"

rm -f "$mnt/filler"
for _ in $(seq 100); do
  [ "$(curl -s --cacert "$ca" -o /dev/null -w '%{http_code}' "$query/readyz")" = 200 ] && break
  post "probe-$RANDOM" >/dev/null; sleep 0.2
done
post "after" >/dev/null
show "space freed"
[ "$(curl -s --cacert "$ca" -o /dev/null -w '%{http_code}' "$query/readyz")" = 200 ] || { echo "FAIL: no recovery" >&2; exit 1; }
kill -TERM "$pid"; wait "$pid" || true; pid=
echo "--- log (store lines)"; grep -E 'store' "$work/log" | cut -c1-240
echo "OK"
