#!/usr/bin/env bash
# Peak memory of the controller's initial sync over big Secrets: creates
# COUNT Secrets of SIZE_KIB KiB (random data) in a namespace of the running
# test bed (once; kept for the next run), starts BINARY watching only that
# namespace, waits for /readyz and prints VmHWM (peak RSS) and VmRSS.
#
#   scripts/initial-list-rss.sh BINARY COUNT SIZE_KIB [controller flags...]
#   e.g. scripts/initial-list-rss.sh target/release/pod-reloader 1000 512
#        scripts/initial-list-rss.sh target/release/pod-reloader 200 1024 --initial-list=paged
#
# Needs `make testbed` (. .testbed/env). Not part of `make test` (it writes
# hundreds of MB to etcd); issue 15's figures come from it.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 count=$2 size_kib=$3
shift 3
# shellcheck disable=SC1091
. .testbed/env
ns="rss-${count}x${size_kib}k"

if ! kubectl get namespace "$ns" >/dev/null 2>&1; then
  kubectl create namespace "$ns" >/dev/null
  python3 - "$ns" "$count" "$size_kib" <<'EOF' | kubectl create -f - >/dev/null
import base64, json, os, sys
ns, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) * 1024
items = [{"apiVersion": "v1", "kind": "Secret",
          "metadata": {"name": f"big-{i:05d}", "namespace": ns},
          "data": {"blob": base64.b64encode(os.urandom(size)).decode()}} for i in range(count)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
EOF
fi
have=$(kubectl get secrets -n "$ns" --no-headers -o name | wc -l)
[ "$have" -ge "$count" ] || { echo "namespace $ns holds $have Secrets, want $count" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$binary" --namespaces="$ns" --listen-address="127.0.0.1:$port" "$@" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
start=$(date +%s.%N)
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done
ready=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
sleep 2
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
held=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^reloader_watched_resources_total\{kind="Secret"\}/ {print $2}')
awk -v c="$count" -v s="$size_kib" -v f="${*:-}" -v r="$ready" -v h="$held" -v hwm="$hwm" -v rss="$rss" \
  'BEGIN { printf "%s Secrets x %s KiB %s: ready in %ss, held %s, peak RSS (VmHWM) %.1f MiB, RSS 2 s later %.1f MiB\n", c, s, f, r, h, hwm / 1024, rss / 1024 }'
