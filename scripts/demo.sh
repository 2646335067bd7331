#!/usr/bin/env bash
# make demo: the main job end to end on the local control plane.
# Starts the test bed, runs pod-reloader against it, applies a sample
# Deployment that uses a ConfigMap (reloader.stakater.com/auto: "true"),
# edits the ConfigMap and shows the rollout it caused.
#
# On the test bed's real node (containerd, runc, kubelet; testbed/node/node.sh)
# the Deployment's pod runs the sample app (testbed/sample-app), which prints
# GREETING; the demo shows the old pod terminating, the new pod Running and
# its log line with the new value, with the seconds each step took after the
# edit. NODE=auto (the default) uses the node when `node.sh check` says one
# can run on this machine and says why not otherwise; NODE=1 insists on it,
# NODE=0 shows the rollout as ReplicaSets on the control plane alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. testbed/lib.sh

started_here=0
testbed/testbed.sh status >/dev/null 2>&1 || started_here=1
controller_pid=
cleanup() {
  stop_child "$controller_pid"
  if [ "$started_here" = 1 ] && [ -z "${KEEP:-}" ]; then
    testbed/testbed.sh down >/dev/null
    echo "(test bed stopped; run with KEEP=1 to keep it and explore with: . .testbed/env)"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building pod-reloader"
cargo build -q -p pod-reloader
NODE=${NODE:-auto}
if [ "$NODE" = auto ]; then
  # kubelet and kube-scheduler are built on first use (a few minutes, cached).
  node_check=$(mktemp)
  if testbed/build-tools.sh kube-scheduler kubelet >"$node_check" 2>&1 &&
    timeout 300 testbed/node/node.sh check >"$node_check" 2>&1; then
    NODE=1
  else
    NODE=0
    echo "  no node on this machine, the rollout shows as ReplicaSets only: $(tail -n 1 "$node_check")"
  fi
  rm -f "$node_check"
fi
if [ "$NODE" = 1 ]; then testbed/build-tools.sh kube-scheduler kubelet; fi
export NODE
if [ "$NODE" = 1 ]; then
  step "Starting the local control plane and a node (containerd, runc, kubelet, kube-scheduler)"
else
  step "Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)"
fi
testbed/testbed.sh up
. .testbed/env
kubectl version 2>/dev/null | sed 's/^/  /'

if [ "$NODE" = 1 ]; then
  . testbed/node/demo-steps.sh
  demo_node_apply
else
step "Applying the sample workload (demo/sample.yaml)"
kubectl delete namespace pod-reloader-demo --ignore-not-found --wait=true >/dev/null
kubectl apply -f demo/sample.yaml
kubectl -n pod-reloader-demo rollout status deployment/web --timeout=5s >/dev/null 2>&1 || true
until [ "$(kubectl -n pod-reloader-demo get rs -l app=web -o name | wc -l)" -ge 1 ]; do sleep 0.2; done
fi

step "Starting pod-reloader (log: .testbed/logs/demo-controller.log)"
port=$(free_port)
"${CARGO_TARGET_DIR:-target}/debug/pod-reloader" --listen-address "127.0.0.1:$port" >.testbed/logs/demo-controller.log 2>&1 &
controller_pid=$!
# Until it is ready; if it exits first, its log says why.
wait_while_alive "$controller_pid" 1000000 0.2 curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" ||
  { cat .testbed/logs/demo-controller.log; exit 1; }
echo "  ready: it holds $(curl -s "http://127.0.0.1:$port/metrics" | awk '/^reloader_watched_resources_total\{kind="ConfigMap"\}/{print $2}') ConfigMap hashes and $(curl -s "http://127.0.0.1:$port/metrics" | awk '/^reloader_watched_resources_total\{kind="Deployment"\}/{print $2}') Deployment(s), no data"

step "Before: ReplicaSets of deployment/web"
kubectl -n pod-reloader-demo get rs -l app=web

if [ "$NODE" = 1 ]; then
  demo_node_edit
  exit 0
fi

step "Editing the ConfigMap: GREETING hello -> bonjour"
t0=$(now_ms)
kubectl -n pod-reloader-demo patch configmap greeting --type merge -p '{"data":{"GREETING":"bonjour"}}'
until [ "$(kubectl -n pod-reloader-demo get rs -l app=web -o name | wc -l)" -ge 2 ]; do
  [ $(( $(now_ms) - t0 )) -gt 30000 ] && { echo "no rollout within 30 s"; cat .testbed/logs/demo-controller.log; exit 1; }
  sleep 0.1
done
t1=$(now_ms)

step "After: a new ReplicaSet, $(( t1 - t0 )) ms after the edit"
kubectl -n pod-reloader-demo get rs -l app=web
step "What pod-reloader set on the pod template"
kubectl -n pod-reloader-demo get deployment web -o jsonpath='{range .spec.template.spec.containers[*].env[*]}{"  "}{.name}={.value}{"\n"}{end}'
printf '  (SHA-1 of "GREETING=bonjour": %s)\n' "$(printf 'GREETING=bonjour' | sha1sum | cut -d' ' -f1)"
step "The Event on the Deployment"
kubectl -n pod-reloader-demo get events --field-selector involvedObject.name=web,reason=Reloaded -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
step "The controller's log line"
grep -m1 '"reloaded"\|reloaded' .testbed/logs/demo-controller.log | sed 's/^/  /'
