#!/usr/bin/env bash
# End-to-end tests on the test bed's real node (testbed/node/node.sh):
# containerd + runc + kubelet + kube-scheduler run the pods, and the module
# runs in-cluster as users run it. Called by `make test` after the control
# plane is up (KUBECONFIG and PATH from .testbed/env); starts the node when it
# is not running and stops it again at the end.
#
#   0. preflight:  `node.sh check` (root, Debian packages, overlayfs, cgroups,
#                  a bridge, a network namespace, runc running a container).
#                  When it fails, the node cannot run on this machine: the
#                  tests print "SKIP ..." with its exact error and exit 0.
#   1. node:       up and Ready within 60 s (measured).
#   2. module:     the chart, rendered by Helm from the values addon-operator
#                  would pass (openapi defaults, the hooks' internal values,
#                  the image as `make images` builds it: testbed/node/controller-image.sh)
#                  with alerting on: a `Webhook` sink posting to a receiver
#                  on the node (tests/node/alert-receiver.py on the node's
#                  bridge address, which pods reach); applied for real; the
#                  controller pod runs under the rendered ServiceAccount and
#                  RBAC, reading the webhook URL from the mounted Secret
#                  (root:64535 0440 on the node, group by the pod's fsGroup):
#                  Running, Ready, 0 restarts; /healthz, /readyz and
#                  /metrics answer on the pod IP.
#   3. reloads:    against the in-cluster controller, workloads running the
#                  sample app (testbed/sample-app): a ConfigMap edit (envFrom,
#                  auto annotation) and a Secret edit (env, named annotation)
#                  each give a new Deployment pod Running whose log and
#                  environment (kubectl exec) hold the new value within 30 s;
#                  a StatefulSet and a DaemonSet are rolled the same way; a
#                  Deployment without annotations keeps its pod. A
#                  StatefulSet with updateStrategy OnDelete and 2 replicas
#                  gets both pods replaced, pod 1 first and pod 0 only once
#                  pod 1's replacement is Ready (snapshots every 0.2 s), one
#                  OnDeleteRestart Event per pod. A CronJob opted into
#                  the trigger (pod-reloader.deckhouse.io/cronjob-trigger)
#                  gets one Job at once (instantiate: manual, owned by the
#                  CronJob) whose pod logs the new value and completes; a
#                  CronJob without it gets its job template patched, no Job.
#                  Argo Rollouts, run by the real rollouts-controller
#                  (testbed/build-argo-rollouts.sh, its real CRDs, installed
#                  before the module): a Rollout with its own template gets
#                  a new revision whose pod logs the new value; a Rollout
#                  with workloadRef to a Deployment (replicas 0) gets
#                  spec.restartAt, the Deployment's template stays, and
#                  Argo's new pod logs the new value; old pods gone.
#   4. after:      the controller pod is still Ready with 0 restarts, counted
#                  the reloads in /metrics, and logged no 403/Forbidden.
#                  The receiver got exactly one alert per rolled workload
#                  (one for the ConfigMap edit's Deployment, with the exact
#                  message), none for the workload not rolled, and neither
#                  the alerts nor the controller's log hold the Secret's
#                  values or the webhook URL's path.
#
# Ends with "N passed, N failed" (", N skipped"); exits non-zero if anything
# failed. NODE_E2E_KEEP=1 keeps the namespaces and the node for a look;
# NODE_E2E_CONTROLLER=process skips the release image and the in-cluster
# part (and the alerts) and runs the reload cases against the debug binary.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=testbed/lib.sh
. "$ROOT/testbed/lib.sh"
if [[ -n ${TESTBED_STATE_DIR:-} ]]; then # as testbed.sh derives it
  TESTBED_DIR=$(cd "$(dirname "$TESTBED_STATE_DIR")" && pwd)/$(basename "$TESTBED_STATE_DIR")
fi
NODE_SH=$ROOT/testbed/node/node.sh
NS="pod-reloader-node-e2e"
MODULE_NS=d8-pod-reloader
NODE_NAME=testbed-node
ROLLOUT_LIMIT=30

# shellcheck source-path=SCRIPTDIR/..
. "$ROOT/tests/lib.sh"
WORK=$(mktemp -d)
STARTED_NODE=0
RENDER_APPLIED=0
RECEIVER_PID=""
ARGO_PID=""
ARGO_CRDS=() # the real Argo CRDs applied ("-f FILE" pairs), restored at the end

stop_receiver() {
  stop_child "$RECEIVER_PID"
  RECEIVER_PID=""
}

secs() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }
k() { timeout 150 kubectl --request-timeout=20s "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_receiver
  stop_child "$ARGO_PID"
  restore_argo_crds
  if [[ ${NODE_E2E_KEEP:-} != 1 ]]; then
    # While the node still runs, so that the pods really terminate.
    k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    if ((RENDER_APPLIED)); then
      k delete -f "$WORK/render.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    k wait --for=delete namespace "$NS" "$MODULE_NS" --timeout=30s >/dev/null 2>&1 || true
    if ((STARTED_NODE)); then
      timeout 120 "$NODE_SH" down >"$WORK/node-down.log" 2>&1 || { echo "stopping the node failed:"; indent <"$WORK/node-down.log"; }
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# The test bed serves Rollouts from its fixture CRD (testbed/crds, what the
# apiserver tests expect); this script replaces it with Argo's real CRDs and
# puts the fixture back at the end (the Rollouts in $NS go with the CRD's
# other versions: none), removing the other Argo CRDs it added.
restore_argo_crds() {
  ((${#ARGO_CRDS[@]})) || return 0
  k replace -f "$ROOT/testbed/crds/argo-rollouts.yaml" >/dev/null 2>&1 ||
    echo "restoring testbed/crds/argo-rollouts.yaml failed: run testbed/testbed.sh up to re-apply it"
  k delete --ignore-not-found --wait=false crd analysisruns.argoproj.io analysistemplates.argoproj.io \
    clusteranalysistemplates.argoproj.io experiments.argoproj.io >/dev/null 2>&1 || true
  ARGO_CRDS=()
}

# skip_all REASON: the node cannot run here; say so and stop (exit 0).
skip_all() {
  skip "node tests: $*"
  summary
  exit 0
}

# ------------------------------------------------------------------ 0. preflight
section "preflight"
if ! k version >"$WORK/version.log" 2>&1; then
  fail "test bed reachable (KUBECONFIG=${KUBECONFIG:-unset})"
  indent <"$WORK/version.log"
  summary
  exit 1
fi
# kubelet and kube-scheduler (testbed/tools/k8s-node), built if missing.
if ! "$ROOT/testbed/build-tools.sh" kube-scheduler kubelet >"$WORK/build.log" 2>&1; then
  fail "build kubelet and kube-scheduler (testbed/build-tools.sh)"
  tail -n 30 "$WORK/build.log" | indent
  summary
  exit 1
fi
if ! timeout 300 "$NODE_SH" check >"$WORK/check.log" 2>&1; then
  cat "$WORK/check.log"
  skip_all "a node cannot run on this machine: $(grep -m1 '^error: ' "$WORK/check.log" | sed 's/^error: //' || tail -n 1 "$WORK/check.log")"
fi
pass "preflight: $(tail -n 1 "$WORK/check.log")"

# ------------------------------------------------------------------ 1. node
section "node"
veths() { ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
veths >"$WORK/veths-before"
if "$NODE_SH" status >/dev/null 2>&1; then
  pass "node $NODE_NAME already running and Ready (reused)"
else
  t0=$(now_ms)
  if timeout 150 "$NODE_SH" up >"$WORK/node-up.log" 2>&1; then
    STARTED_NODE=1
    took=$(secs "$t0")
    if [[ ${took%.*} -lt 60 ]]; then
      pass "node $NODE_NAME Ready in ${took} s (< 60 s): $(grep -m1 'Ready in' "$WORK/node-up.log")"
    else
      fail "node $NODE_NAME Ready in ${took} s (limit 60 s)"
    fi
  else
    STARTED_NODE=1 # whatever part of it started must be stopped
    if grep -q "another test bed's node is running" "$WORK/node-up.log"; then
      skip_all "$(grep -m1 '^error: ' "$WORK/node-up.log" | sed 's/^error: //')"
    fi
    fail "node $NODE_NAME up and Ready"
    tail -n 60 "$WORK/node-up.log" | indent
    summary
    exit 1
  fi
fi

# ------------------------------------------------------------------ Argo Rollouts
# The real Argo Rollouts controller (testbed/build-argo-rollouts.sh: built
# from the Go module proxy, cached by version) and its real CRDs (the
# module's manifests/crds), installed before the module so that pod-reloader
# starts with Rollouts served (as the argo_rollouts hook would see them). The
# controller runs as a process with the test bed's admin credentials.
section "Argo Rollouts (the real controller and CRDs)"
ARGO_READY=0
t0=$(now_ms)
if ARGO_DIR=$(timeout 2400 "$ROOT/testbed/build-argo-rollouts.sh" 2>"$WORK/argo-build.log"); then
  pass "rollouts-controller $("$ARGO_DIR/bin/rollouts-controller" --version 2>/dev/null | head -n 1 || echo "$ARGO_DIR") ready in $(secs "$t0") s (testbed/build-argo-rollouts.sh; cached)"
  argo_crds=()
  for f in "$ARGO_DIR"/src/manifests/crds/*-crd.yaml; do argo_crds+=(-f "$f"); done
  ARGO_CRDS=("${argo_crds[@]}")
  if k apply --server-side --force-conflicts --field-manager=pod-reloader-node-e2e "${argo_crds[@]}" >"$WORK/argo-crds.log" 2>&1 &&
    k wait --for condition=Established --timeout=60s "${argo_crds[@]}" >>"$WORK/argo-crds.log" 2>&1; then
    ARGO_HEALTH_PORT=$(free_port)
    "$ARGO_DIR/bin/rollouts-controller" --kubeconfig "$KUBECONFIG" --leader-elect=false \
      --metricsport "$(free_port)" --healthzPort "$ARGO_HEALTH_PORT" >"$WORK/argo.log" 2>&1 &
    ARGO_PID=$!
    if wait_while_alive "$ARGO_PID" 120 0.5 curl -sf -o /dev/null "http://127.0.0.1:$ARGO_HEALTH_PORT/healthz"; then
      ARGO_READY=1
      pass "Argo Rollouts CRDs ($((${#argo_crds[@]} / 2)), from its manifests/crds) Established and rollouts-controller healthy in $(secs "$t0") s"
    else
      fail "rollouts-controller healthy within 60 s"
      tail -n 20 "$WORK/argo.log" | indent
    fi
  else
    fail "Argo Rollouts CRDs applied and Established"
    tail -n 20 "$WORK/argo-crds.log" | indent
  fi
else
  fail "build rollouts-controller (testbed/build-argo-rollouts.sh)"
  tail -n 20 "$WORK/argo-build.log" | indent
fi

# ------------------------------------------------------------------ alert receiver
# The alert webhook: a receiver on the node's InternalIP, the address of the
# pod bridge (testbed/node/README.md: pods reach the node and each other
# only). The module gets an IP-address URL, which the network_policy hook
# turns into an egress rule of its own (that address/32, that port). The test
# bed enforces no NetworkPolicy (the bridge CNI plugin has no policy
# support), so the rule is checked in the render, not by a blocked packet.
# The path stands for a token in a real webhook URL: it must never be logged.
section "alert receiver on the node"
NODE_IP=$(k get node "$NODE_NAME" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null)
ALERT_PATH=/hooks/T0K3N-node-e2e-must-not-leak
ALERTS=$WORK/alerts.jsonl
ALERT_URL=""
if [[ -z $NODE_IP ]]; then
  fail "the node's InternalIP (the pod bridge address) from the Node object"
else
  # Bounded: at most 50 requests of 64 KiB, and it stops by itself after
  # 15 minutes (cleanup stops it earlier).
  timeout 960 python3 "$HERE/alert-receiver.py" --bind "$NODE_IP" --port-file "$WORK/receiver.port" \
    --out "$ALERTS" --max-requests 50 --max-body 65536 --lifetime 900 >"$WORK/receiver.log" 2>&1 &
  RECEIVER_PID=$!
  for _ in $(seq 1 50); do [[ -s $WORK/receiver.port ]] && break; sleep 0.1; done
  if [[ -s $WORK/receiver.port ]]; then
    RECEIVER_PORT=$(<"$WORK/receiver.port")
    ALERT_URL="http://$NODE_IP:$RECEIVER_PORT$ALERT_PATH"
    pass "alert receiver listening on $NODE_IP:$RECEIVER_PORT (the node's InternalIP, pod bridge prnode0)"
  else
    fail "alert receiver listening on $NODE_IP"
    indent <"$WORK/receiver.log"
    stop_receiver
  fi
fi

# ------------------------------------------------------------------ helpers

# pod_log NS POD: the container log (kubectl logs; the CRI log file when the
# apiserver cannot reach the kubelet, e.g. a control plane started before
# it had --kubelet-client-certificate).
pod_log() {
  local ns=$1 pod=$2 uid f
  k -n "$ns" logs "$pod" 2>/dev/null && return 0
  uid=$(k -n "$ns" get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null) || return 1
  for f in "$TESTBED_DIR/node/pod-logs/${ns}_${pod}_${uid}"/*/*.log; do
    [[ -f $f ]] && sed -E 's/^[^ ]+ (stdout|stderr) [FP] //' "$f"
  done
}

# running_pods NS SELECTOR: "name uid" of the Running, non-terminating pods.
running_pods() {
  k -n "$1" get pods -l "$2" -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.uid} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null |
    awk 'NF == 2 {print $1, $2}'
}

# wait_new_pod NS SELECTOR OLD_UIDS LINE DEADLINE_MS: until a Running pod
# that is not one of OLD_UIDS logs LINE; prints its name.
wait_new_pod() {
  local ns=$1 sel=$2 old=$3 line=$4 deadline=$5 name uid
  while (( $(now_ms) < deadline )); do
    while read -r name uid; do
      [[ -z $name || " $old " == *" $uid "* ]] && continue
      if pod_log "$ns" "$name" 2>/dev/null | grep -qxF "$line"; then
        echo "$name"
        return 0
      fi
    done < <(running_pods "$ns" "$sel")
    sleep 0.2
  done
  return 1
}

uids() { running_pods "$1" "$2" | awk '{print $2}' | tr '\n' ' '; }

controller_pod() { # the Running, non-terminating controller pod (else any)
  local p
  p=$(running_pods "$MODULE_NS" app=pod-reloader | awk '{print $1; exit}')
  [[ -n $p ]] || p=$(k -n "$MODULE_NS" get pods -l app=pod-reloader -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
  echo "$p"
}

# ------------------------------------------------------------------ 2. module
section "the module in-cluster (chart rendered by Helm, the controller image of make images)"
CONTROLLER_READY=0
IMAGE_REF=""
t0=$(now_ms)
if [[ ${NODE_E2E_CONTROLLER:-} == process ]]; then
  # A quick run without the release image (its build can take half an hour
  # on a busy machine): the reload cases below run the debug controller as
  # a process instead; the in-cluster and alert checks are skipped.
  echo "skipping the in-cluster controller: NODE_E2E_CONTROLLER=process" >"$WORK/image.log"
  rc=3
else
  "$ROOT/testbed/node/controller-image.sh" >"$WORK/image.log" 2>&1
  rc=$?
fi
if ((rc == 0)); then
  read -r repo digest < <(tail -n 1 "$WORK/image.log")
  IMAGE_REF="$repo@$digest"
  pass "controller image built and imported in $(secs "$t0") s: $IMAGE_REF"
elif ((rc == 3)); then
  skip "the module in-cluster: $(grep -m1 -e '^error: ' -e '^skipping' "$WORK/image.log" | sed 's/^error: //')"
else
  fail "controller image built and imported (testbed/node/controller-image.sh)"
  tail -n 30 "$WORK/image.log" | indent
fi

render_module() {
  # Python with PyYAML for netpol_allows_receiver.
  local py=python3 venv=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/venv-module-tests
  if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    if ! "$venv/bin/python" -c 'import yaml' >/dev/null 2>&1; then
      python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'PyYAML>=6' || return 1
    fi
    py=$venv/bin/python
  fi
  PY=$py
  # Default settings except alerting: on, to the receiver on the node; the
  # image from this machine. The settings are spelled as a ModuleConfig
  # spells them (Deckhouse's CamelCase enum) and go through the hooks like
  # every other (moduletests' module-values: openapi defaults, then the
  # beforeHelm hooks), which translate `Webhook` for the controller.
  [[ -n $ALERT_URL ]] || { echo "no alert receiver"; return 1; }
  cat >"$WORK/case.yaml" <<EOF
internal:
  argoRolloutsEnabled: $( ((ARGO_READY)) && echo true || echo false)
settings:
  alerting:
    enabled: true
    webhook:
      url: "$ALERT_URL"
      sink: Webhook
      additionalInfo: node-e2e
global:
  modulesImages:
    registry:
      base: ${IMAGE_REF%@*}
    digests:
      podReloader:
        podReloader: "${IMAGE_REF#*@}"
EOF
  (cd "$ROOT" && cargo run -q -p pod-reloader-moduletests --bin module-values -- "$WORK/case.yaml") >"$WORK/values.yaml" || return 1
  helm template pod-reloader "$ROOT" --namespace "$MODULE_NS" -f "$WORK/values.yaml" >"$WORK/render.yaml" || return 1
  grep -q "image: $IMAGE_REF" "$WORK/render.yaml" || { echo "the render does not use $IMAGE_REF"; return 1; }
}

# netpol_allows_receiver: the rendered NetworkPolicy has an egress rule to
# exactly the receiver's address (/32) and port.
netpol_allows_receiver() {
  "${PY:-python3}" - "$WORK/render.yaml" "$NODE_IP/32" "$RECEIVER_PORT" <<'PYEOF'
import sys, yaml
render, cidr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [d for d in yaml.safe_load_all(open(render)) if d and d.get("kind") == "NetworkPolicy"]
rules = [r for d in docs for r in d["spec"].get("egress") or []]
want = {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]}
if want not in rules:
    print(f"no egress rule {want}; egress rules: {rules}")
    sys.exit(1)
PYEOF
}

apply_module() {
  # What a Deckhouse cluster has and the test bed lacks: the CRDs of the
  # optional objects (PodMonitor, PrometheusRule, VPA, dashboards), the
  # namespace d8-monitoring and the PriorityClass cluster-low.
  k apply --server-side --force-conflicts --field-manager=pod-reloader-node-e2e -f "$ROOT/tests/module/crds/" >/dev/null || return 1
  k wait --for condition=Established --timeout=60s -f "$ROOT/tests/module/crds/" >/dev/null || return 1
  cat <<EOF | k apply --server-side --field-manager=pod-reloader-node-e2e -f - >/dev/null || return 1
apiVersion: v1
kind: Namespace
metadata:
  name: d8-monitoring
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: cluster-low
value: 1000
description: As in Deckhouse (the chart's controller uses it).
EOF
  # A namespace left terminating by an earlier run would refuse the objects.
  if [[ $(k get namespace "$MODULE_NS" -o jsonpath='{.status.phase}' 2>/dev/null) == Terminating ]]; then
    k wait --for=delete namespace "$MODULE_NS" --timeout=60s >/dev/null 2>&1 || true
  fi
  RENDER_APPLIED=1
  k apply --server-side --force-conflicts --field-manager=pod-reloader-node-e2e -f "$WORK/render.yaml"
}

if [[ -n $IMAGE_REF ]]; then
  if render_module >"$WORK/render.log" 2>&1; then
    pass "render: module-values (openapi defaults + hooks, alerting on) and helm template, $(grep -c '^kind:' "$WORK/render.yaml") objects"
    if netpol_allows_receiver >"$WORK/netpol.log" 2>&1; then
      pass "render: the NetworkPolicy lets the controller reach the webhook: egress to $NODE_IP/32 port $RECEIVER_PORT (not enforced on the test bed: no policy-capable CNI plugin)"
    else
      fail "render: the NetworkPolicy lets the controller reach the webhook ($NODE_IP/32 port $RECEIVER_PORT)"
      indent <"$WORK/netpol.log"
    fi
    t0=$(now_ms)
    if apply_module >"$WORK/apply.log" 2>&1; then
      pass "apply the render for real ($(grep -c . "$WORK/apply.log") objects; CRD fixtures, d8-monitoring, PriorityClass cluster-low)"
      if k -n "$MODULE_NS" rollout status deployment/pod-reloader --timeout=120s >"$WORK/rollout.log" 2>&1; then
        CONTROLLER_READY=1
        pass "controller Deployment available in $(secs "$t0") s"
      else
        fail "controller Deployment available within 120 s"
        indent <"$WORK/rollout.log"
        k -n "$MODULE_NS" describe pods -l app=pod-reloader 2>&1 | tail -n 30 | indent
        pod=$(controller_pod)
        if [[ -n $pod ]]; then
          # A crash-looping container's last words are in the previous one.
          k -n "$MODULE_NS" logs "$pod" --previous --tail=30 2>/dev/null | indent ||
            k -n "$MODULE_NS" logs "$pod" --tail=30 2>&1 | indent
        fi
      fi
    else
      fail "apply the render for real"
      tail -n 30 "$WORK/apply.log" | indent
    fi
  else
    fail "render the chart (module-values, helm template)"
    tail -n 30 "$WORK/render.log" | indent
  fi
fi

CPOD=""
CPOD_IP=""
controller_state() { # "phase ready restarts node serviceAccount image"
  k -n "$MODULE_NS" get pod "$CPOD" -o jsonpath='{.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount} {.spec.nodeName} {.spec.serviceAccountName} {.spec.containers[0].image}'
}
check_controller_pod() { # check_controller_pod WHEN
  local state
  state=$(controller_state 2>&1)
  if [[ $state == "Running true 0 $NODE_NAME pod-reloader $IMAGE_REF" ]]; then
    pass "$1: controller pod $CPOD Running, Ready, 0 restarts, on $NODE_NAME, ServiceAccount pod-reloader, image $IMAGE_REF"
  else
    fail "$1: controller pod Running, Ready, 0 restarts, on $NODE_NAME, ServiceAccount pod-reloader (got: $state)"
  fi
}
# Retried: the test bed's pod bridge can drop a connect while other pods are
# being replaced (seen once in CI: a 5 s connect timeout to the controller
# right after the rollouts, its readiness probe and the next request fine).
# What is checked is the controller's answer, not the bridge.
http_get() { curl -sS --connect-timeout 5 --max-time 10 --retry 2 --retry-all-errors --retry-delay 1 -o "$WORK/http.out" -w '%{http_code}' "$1" 2>&1; }

if ((CONTROLLER_READY)); then
  CPOD=$(controller_pod)
  CPOD_IP=$(k -n "$MODULE_NS" get pod "$CPOD" -o jsonpath='{.status.podIP}')
  check_controller_pod "installed"
  # The webhook URL file as the kubelet wrote it (the image has no shell to
  # look from inside): readable by the controller's group only.
  uid=$(k -n "$MODULE_NS" get pod "$CPOD" -o jsonpath='{.metadata.uid}')
  url_file=$TESTBED_DIR/node/kubelet/pods/$uid/volumes/kubernetes.io~secret/alert/url
  got=$(stat -L -c '%u:%g %a' "$url_file" 2>&1)
  if [[ $got == "0:64535 440" ]]; then
    pass "the alert Secret's file in the pod: owner 0, group 64535 (fsGroup), mode 0440: the controller reads it, others cannot"
  else
    fail "the alert Secret's file in the pod: owner 0, group 64535, mode 0440 (got: $got)"
  fi
  for path in /healthz /readyz; do
    code=$(http_get "http://$CPOD_IP:9090$path")
    if [[ $code == 200 ]]; then pass "GET http://$CPOD_IP:9090$path -> 200"; else fail "GET http://$CPOD_IP:9090$path -> 200 (got $code)"; fi
  done
  code=$(http_get "http://$CPOD_IP:9090/metrics")
  if [[ $code == 200 ]] && grep -q '^reloader_watched_resources_total' "$WORK/http.out"; then
    pass "GET http://$CPOD_IP:9090/metrics -> 200 with reloader_* metrics"
  else
    fail "GET http://$CPOD_IP:9090/metrics -> 200 with reloader_* metrics (got $code)"
    head -n 5 "$WORK/http.out" 2>/dev/null | indent
  fi
fi

# ------------------------------------------------------------------ 3. reloads
section "reloads on the node (sample-app pods)"
CONTROLLER_PID=""
if ((!CONTROLLER_READY)); then
  # The reload cases still run, with the controller as a process (admin
  # credentials), so that a broken in-cluster install does not hide them.
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  [[ $target == /* ]] || target=$ROOT/$target
  bin=$target/debug/pod-reloader
  [[ -x $bin ]] || (cd "$ROOT" && cargo build -q -p pod-reloader)
  if [[ -x $bin ]]; then
    port=$(free_port)
    POD_NAME=node-e2e POD_NAMESPACE=default "$bin" --listen-address "127.0.0.1:$port" --is-argo-rollouts="$( ((ARGO_READY)) && echo true || echo false)" >"$WORK/controller.log" 2>&1 &
    CONTROLLER_PID=$!
    wait_while_alive "$CONTROLLER_PID" 60 0.5 curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" || true
    echo "(the controller runs as a process: the in-cluster controller is not ready)"
  fi
fi

k delete namespace "$NS" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1
# The Secret's values: distinct enough that finding one in an alert or a log
# means it leaked.
SECRET_OLD=s3cr3t-old-5d81e0
SECRET_NEW=s3cr3t-new-a7c24f
cat >"$WORK/resources.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
---
apiVersion: v1
kind: ConfigMap
metadata: {name: greeting, namespace: $NS}
data: {GREETING: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: $NS}
stringData: {TOKEN: $SECRET_OLD}
EOF
: >"$WORK/workloads.yaml"
workload() { # workload KIND NAME ANNOTATION ENV-YAML
  local kind=$1 name=$2 ann=$3 env=$4 extra=""
  [[ $kind == StatefulSet ]] && extra="  serviceName: $name"
  [[ $kind != DaemonSet ]] && extra+=$'\n  replicas: 1'
  cat <<EOF
---
apiVersion: apps/v1
kind: $kind
metadata:
  name: $name
  namespace: $NS
  annotations: {$ann}
spec:
$extra
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: app
          image: testbed.local/sample-app:1
          args: [GREETING, TOKEN]
$env
EOF
}
ENV_CM='          envFrom: [{configMapRef: {name: greeting}}]'
ENV_SECRET='          env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: token, key: TOKEN}}}]'
{
  workload Deployment cm-auto '"reloader.stakater.com/auto": "true"' "$ENV_CM"
  workload Deployment secret-named '"secret.reloader.stakater.com/reload": "token"' "$ENV_SECRET"
  workload StatefulSet sts-auto '"reloader.stakater.com/auto": "true"' "$ENV_CM"
  workload DaemonSet ds-named '"configmap.reloader.stakater.com/reload": "greeting"' "$ENV_CM"
  workload Deployment not-annotated '"example.com/unrelated": "x"' "$ENV_CM"
  # updateStrategy OnDelete, 2 replicas: the template patch alone restarts
  # nothing; the controller deletes the pods, sts-ondelete-1 first.
  cat <<EOF
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: sts-ondelete
  namespace: $NS
  annotations: {"reloader.stakater.com/auto": "true"}
spec:
  serviceName: sts-ondelete
  replicas: 2
  updateStrategy: {type: OnDelete}
  selector: {matchLabels: {app: sts-ondelete}}
  template:
    metadata: {labels: {app: sts-ondelete}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: app
          image: testbed.local/sample-app:1
          args: [GREETING]
$ENV_CM
EOF
  # CronJobs (item 8): both follow greeting; cj-trigger opted into
  # Reloader's behaviour (a Job at once), cj-plain gets its job template
  # patched only. A schedule that never comes during the test (1 January).
  for cj in cj-trigger cj-plain; do
    ann='"reloader.stakater.com/auto": "true"'
    [[ $cj == cj-trigger ]] && ann+=', "pod-reloader.deckhouse.io/cronjob-trigger": "true"'
    cat <<EOF
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: $cj
  namespace: $NS
  annotations: {$ann}
spec:
  schedule: "0 0 1 1 *"
  jobTemplate:
    metadata: {labels: {cronjob: $cj}}
    spec:
      backoffLimit: 0
      template:
        metadata: {labels: {cronjob: $cj}}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 10
          containers:
            - name: app
              image: testbed.local/sample-app:1
              args: [--once, GREETING]
              envFrom: [{configMapRef: {name: greeting}}]
EOF
  done
  if ((ARGO_READY)); then
    # ro-own: a Rollout with its own template; ro-ref: a Rollout whose
    # workloadRef names Deployment ro-base (replicas 0, never annotated).
    cat <<EOF
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: ro-own
  namespace: $NS
  annotations: {"reloader.stakater.com/auto": "true"}
spec:
  replicas: 1
  strategy: {canary: {}}
  selector: {matchLabels: {app: ro-own}}
  template:
    metadata: {labels: {app: ro-own}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: app
          image: testbed.local/sample-app:1
          args: [GREETING]
$ENV_CM
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ro-base
  namespace: $NS
spec:
  replicas: 0
  selector: {matchLabels: {app: ro-ref}}
  template:
    metadata: {labels: {app: ro-ref}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: app
          image: testbed.local/sample-app:1
          args: [GREETING]
$ENV_CM
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: ro-ref
  namespace: $NS
  annotations: {"pod-reloader.deckhouse.io/auto": "true"}
spec:
  replicas: 1
  strategy: {canary: {}}
  selector: {matchLabels: {app: ro-ref}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: ro-base}
EOF
  fi
} >>"$WORK/workloads.yaml"

declare -A SEL=([cm-auto]=app=cm-auto [secret-named]=app=secret-named [sts-auto]=app=sts-auto [ds-named]=app=ds-named [not-annotated]=app=not-annotated)
declare -A OLD_LINE=([cm-auto]="sample-app: GREETING=hello" [secret-named]="sample-app: TOKEN=$SECRET_OLD" [sts-auto]="sample-app: GREETING=hello" [ds-named]="sample-app: GREETING=hello" [not-annotated]="sample-app: GREETING=hello")
declare -A NEW_LINE=([cm-auto]="sample-app: GREETING=bonjour" [secret-named]="sample-app: TOKEN=$SECRET_NEW" [sts-auto]="sample-app: GREETING=bonjour" [ds-named]="sample-app: GREETING=bonjour")
declare -A KIND=([cm-auto]=deployment [secret-named]=deployment [sts-auto]=statefulset [ds-named]=daemonset [not-annotated]=deployment)
declare -A OLD_UIDS=()
declare -A RO_UIDS=()
KUBELET_API_ERR=""
ONDELETE_UIDS=""
ONDELETE_UID0=""
ONDELETE_UID1=""
WORKLOADS=(cm-auto secret-named sts-auto ds-named not-annotated)

# The ConfigMap and Secret first, the workloads in a later second: with the
# module's reloadOnCreate, a workload created in the same second as a
# resource it uses is rolled once on the resource's creation when the
# controller happens to handle the workload's event first (within a second
# the order is unknown, see controller/src/state/mod.rs `changed`).
apply_in_order() {
  k apply -f "$WORK/resources.yaml" || return 1
  local second
  second=$(date +%s)
  while [[ $(date +%s) == "$second" ]]; do sleep 0.05; done
  k apply -f "$WORK/workloads.yaml"
}
t0=$(now_ms)
if apply_in_order >"$WORK/workloads.log" 2>&1; then
  ok=1
  for w in "${WORKLOADS[@]}"; do
    if name=$(wait_new_pod "$NS" "${SEL[$w]}" "" "${OLD_LINE[$w]}" $(( $(now_ms) + 60000 ))); then
      OLD_UIDS[$w]=$(uids "$NS" "${SEL[$w]}")
    else
      ok=0
      fail "$w: a Running pod logging \"${OLD_LINE[$w]}\" within 60 s"
      k -n "$NS" describe pods -l "${SEL[$w]}" 2>&1 | tail -n 25 | indent
    fi
  done
  ((ok)) && pass "5 workloads (3 Deployments, a StatefulSet, a DaemonSet) Running the sample app with the first values in $(secs "$t0") s"
  # The OnDelete StatefulSet: both pods (created one after the other) Ready.
  # (kubectl rollout status refuses OnDelete StatefulSets.)
  sts_ready() { k -n "$NS" get pods -l app=sts-ondelete -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>&1; }
  until [[ $(sts_ready | grep -c ' True$') == 2 ]] || (( $(now_ms) > t0 + 120000 )); do sleep 0.5; done
  sts_ready >"$WORK/ondelete-rollout.log"
  if [[ $(grep -c ' True$' "$WORK/ondelete-rollout.log") == 2 ]]; then
    ONDELETE_UID0=$(k -n "$NS" get pod sts-ondelete-0 -o jsonpath='{.metadata.uid}')
    ONDELETE_UID1=$(k -n "$NS" get pod sts-ondelete-1 -o jsonpath='{.metadata.uid}')
    ONDELETE_UIDS="$ONDELETE_UID0 $ONDELETE_UID1"
    pass "sts-ondelete (updateStrategy OnDelete): pods sts-ondelete-0 and sts-ondelete-1 Ready"
  else
    fail "sts-ondelete (updateStrategy OnDelete): 2 pods Ready within 120 s of the apply"
    indent <"$WORK/ondelete-rollout.log"
  fi
  if ((ARGO_READY)); then
    for w in ro-own ro-ref; do
      if wait_new_pod "$NS" "app=$w" "" "sample-app: GREETING=hello" $(( $(now_ms) + 90000 )) >/dev/null; then
        RO_UIDS[$w]=$(uids "$NS" "app=$w")
      else
        fail "$w: a Running pod (made by rollouts-controller) logging GREETING=hello within 90 s"
        k -n "$NS" get rollout "$w" -o jsonpath='{.status.conditions}{"\n"}' 2>&1 | indent
        tail -n 10 "$WORK/argo.log" | indent
      fi
    done
    [[ -n ${RO_UIDS[ro-own]:-} && -n ${RO_UIDS[ro-ref]:-} ]] &&
      pass "Rollouts ro-own (own template) and ro-ref (workloadRef to Deployment ro-base, 0 replicas) Running the sample app, pods made by rollouts-controller ($(secs "$t0") s)"
  fi
  # kubectl logs/exec go apiserver -> kubelet; a control plane started
  # before testbed.sh gave the apiserver its kubelet client certificate
  # cannot: then the logs come from the CRI log files and exec is skipped.
  probe=$(running_pods "$NS" app=cm-auto | awk '{print $1; exit}')
  if [[ -n $probe ]] && ! err=$(k -n "$NS" logs "$probe" 2>&1 >/dev/null); then
    KUBELET_API_ERR=$(head -n 1 <<<"$err")
    skip "kubectl logs/exec: $KUBELET_API_ERR (a control plane started before testbed.sh gave the apiserver --kubelet-client-certificate and --kubelet-preferred-address-types=InternalIP; 'testbed/testbed.sh down' then 'up' gives them); logs read from the node's CRI log files, exec checks skipped"
  fi
else
  fail "apply the sample workloads"
  indent <"$WORK/workloads.log"
fi

sleep 1 # let the controller see the workloads' first state
# What sts-ondelete's pods look like, every 0.2 s from the edit on (one
# "ms name uid deleting|- ready" line per pod, then "ms end-of-snapshot"):
# the order of the deletions is read from it afterwards.
ONDELETE_LOG=$WORK/ondelete-pods.log
MONITOR_PID=""
if [[ -n $ONDELETE_UIDS ]]; then
  (
    end=$(( $(now_ms) + 90000 ))
    while (( $(now_ms) < end )); do
      ts=$(now_ms)
      kubectl --request-timeout=5s -n "$NS" get pods -l app=sts-ondelete -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.metadata.deletionTimestamp}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
        awk -v ts="$ts" 'NF {split($0, a, "|"); n = split(a[1], f, " "); print ts, f[1], f[2], (n > 2 ? "deleting" : "-"), (a[2] == "" ? "-" : a[2])}'
      echo "$ts end-of-snapshot"
      sleep 0.2
    done
  ) >"$ONDELETE_LOG" 2>/dev/null &
  MONITOR_PID=$!
fi
t_edit=$(now_ms)
if ! k -n "$NS" patch configmap greeting --type merge -p '{"data":{"GREETING":"bonjour"}}' >/dev/null ||
  ! k -n "$NS" patch secret token --type merge -p "{\"stringData\":{\"TOKEN\":\"$SECRET_NEW\"}}" >/dev/null; then
  fail "edit the ConfigMap and the Secret"
fi
deadline=$(( t_edit + ROLLOUT_LIMIT * 1000 ))
for w in cm-auto secret-named sts-auto ds-named; do
  [[ -n ${OLD_UIDS[$w]:-} ]] || continue
  what="ConfigMap"
  [[ $w == secret-named ]] && what="Secret"
  if name=$(wait_new_pod "$NS" "${SEL[$w]}" "${OLD_UIDS[$w]}" "${NEW_LINE[$w]}" "$deadline"); then
    took=$(secs "$t_edit")
    # The old pod is gone (or going), and the new one's environment holds
    # the new value (asked inside the running container).
    var=${NEW_LINE[$w]#sample-app: }; var=${var%%=*}
    how="log and kubectl exec"
    if [[ -z $KUBELET_API_ERR ]]; then
      got=$(k -n "$NS" exec "$name" -- /sample-app --once "$var" 2>&1)
    else
      how="log (CRI log file)"
      got=${NEW_LINE[$w]} # exec skipped (see above); the log line was checked
    fi
    left=$(running_pods "$NS" "${SEL[$w]}" | awk -v old="${OLD_UIDS[$w]}" 'index(" " old " ", " " $2 " ") {print $1}')
    if [[ $got == "${NEW_LINE[$w]}" && -z $left ]]; then
      pass "$w: $what edit -> new pod $name Running in $took s (< ${ROLLOUT_LIMIT} s), $how: ${NEW_LINE[$w]#sample-app: }"
    else
      fail "$w: new pod $name in $took s, but kubectl exec printed \"$got\"${left:+, old pod still running: $left}"
    fi
  else
    fail "$w: $what edit -> a new Running pod logging \"${NEW_LINE[$w]}\" within ${ROLLOUT_LIMIT} s"
    k -n "$NS" get pods -l "${SEL[$w]}" -o wide 2>&1 | indent
    k -n "$NS" get "${KIND[$w]}" "$w" -o jsonpath='{.spec.template.spec.containers[0].env}{"\n"}' 2>&1 | indent
  fi
done
if [[ -n ${OLD_UIDS[not-annotated]:-} ]]; then
  now_uids=$(uids "$NS" "${SEL[not-annotated]}")
  if [[ $now_uids == "${OLD_UIDS[not-annotated]}" ]]; then
    pass "not-annotated: same pod $(secs "$t_edit") s after the edit (not rolled)"
  else
    fail "not-annotated: pod replaced (before: ${OLD_UIDS[not-annotated]}, after: $now_uids)"
  fi
fi

# ------------------------------------------------------------------ OnDelete StatefulSet
# sts-ondelete (updateStrategy OnDelete, 2 replicas): after the ConfigMap
# edit both pods are replaced, sts-ondelete-1 first, and sts-ondelete-0 only
# once sts-ondelete-1's replacement is Ready (read from the monitor's
# snapshots); both replacements log the new value; two OnDeleteRestart Events.
if [[ -n $ONDELETE_UIDS ]]; then
  section "OnDelete StatefulSet restarted pod by pod"
  deadline=$(( t_edit + 90000 ))
  replaced=0
  while (( $(now_ms) < deadline )); do
    new=$(running_pods "$NS" app=sts-ondelete | awk -v old="$ONDELETE_UIDS" 'index(" " old " ", " " $2 " ") == 0' | wc -l)
    if ((new == 2)); then replaced=1; break; fi
    sleep 0.5
  done
  if [[ -n $MONITOR_PID ]]; then
    kill "$MONITOR_PID" 2>/dev/null
    wait "$MONITOR_PID" 2>/dev/null
  fi
  if ((replaced)); then
    bad=""
    for pod in sts-ondelete-0 sts-ondelete-1; do
      wait_log=$(( $(now_ms) + 10000 ))
      until pod_log "$NS" "$pod" 2>/dev/null | grep -qxF "sample-app: GREETING=bonjour" || (( $(now_ms) > wait_log )); do sleep 0.2; done
      pod_log "$NS" "$pod" 2>/dev/null | grep -qxF "sample-app: GREETING=bonjour" || bad+=" $pod"
    done
    if [[ -z $bad ]]; then
      pass "sts-ondelete: both pods replaced within $(secs "$t_edit") s of the edit, both log GREETING=bonjour"
    else
      fail "sts-ondelete: both replacements log GREETING=bonjour (not:$bad)"
    fi
  else
    fail "sts-ondelete: both pods replaced within 90 s of the edit"
    k -n "$NS" get pods -l app=sts-ondelete -o wide 2>&1 | indent
    k -n "$NS" get statefulset sts-ondelete -o jsonpath='{.metadata.annotations}{"\n"}{.status}{"\n"}' 2>&1 | indent
  fi
  # The order, from the snapshots: t1/t0 = the first snapshot in which the
  # old pod 1/0 is deleting or gone; in that snapshot of t0, pod 1 must
  # already be the replacement and Ready (a pod's Ready only changes with
  # its deletion here, so it was Ready when pod 0's deletion was decided).
  order=$(awk -v u0="$ONDELETE_UID0" -v u1="$ONDELETE_UID1" '
    $2 == "end-of-snapshot" {
      if (!t1 && seen[u1] != "live") t1 = $1
      if (!t0 && seen[u0] != "live") { t0 = $1; at0 = new1ready }
      delete seen; new1ready = 0; next }
    { seen[$3] = ($4 == "deleting" ? "deleting" : "live")
      if ($2 == "sts-ondelete-1" && $3 != u1 && $4 == "-" && $5 == "True") new1ready = 1 }
    END { printf "%s %s %s\n", t1 + 0 == 0 ? 0 : t1, t0 + 0 == 0 ? 0 : t0, at0 + 0 }' "$ONDELETE_LOG")
  read -r t1 t0 at0 <<<"$order"
  if (( t1 > 0 && t0 > 0 && t1 < t0 && at0 == 1 )); then
    pass "sts-ondelete: sts-ondelete-1 deleted first ($(( t1 - t_edit )) ms after the edit), sts-ondelete-0 only once sts-ondelete-1's replacement was Ready ($(( t0 - t_edit )) ms)"
  else
    fail "sts-ondelete: sts-ondelete-1 deleted first, sts-ondelete-0 after its replacement was Ready (pod 1 at $(( t1 - t_edit )) ms, pod 0 at $(( t0 - t_edit )) ms, pod 1's replacement Ready then: $at0)"
    grep -v end-of-snapshot "$ONDELETE_LOG" | tail -n 20 | indent
  fi
  notes=$(k -n "$NS" get events.events.k8s.io --field-selector reason=OnDeleteRestart -o jsonpath='{range .items[*]}{.regarding.name}: {.note}{"\n"}{end}' 2>&1)
  if [[ $(grep -c '^sts-ondelete: Deleted pod sts-ondelete-[01] ' <<<"$notes") == 2 ]]; then
    pass "sts-ondelete: one OnDeleteRestart Event per pod deleted, on the StatefulSet"
  else
    fail "sts-ondelete: two OnDeleteRestart Events on the StatefulSet (got: $notes)"
  fi
fi

# ------------------------------------------------------------------ Argo Rollouts reloads
# Run by the real Argo Rollouts controller. ro-own (its own template, canary
# without steps): pod-reloader patches the template, Argo rolls a new
# revision, the new pod logs the new value and the old one goes. ro-ref
# (workloadRef to Deployment ro-base, scaled to 0 as Argo expects; the
# Rollout carries the annotation): pod-reloader sets spec.restartAt, Argo
# replaces the pods, and the new ones log the new value.
if ((ARGO_READY)); then
  section "Argo Rollouts reloaded (real rollouts-controller)"
  for w in ro-own ro-ref; do
    [[ -n ${RO_UIDS[$w]:-} ]] || continue
    deadline=$(( t_edit + 60000 ))
    if name=$(wait_new_pod "$NS" "app=$w" "${RO_UIDS[$w]}" "sample-app: GREETING=bonjour" "$deadline"); then
      took=$(secs "$t_edit")
      left=""
      while (( $(now_ms) < deadline )); do
        left=$(running_pods "$NS" "app=$w" | awk -v old="${RO_UIDS[$w]}" 'index(" " old " ", " " $2 " ") {print $1}')
        [[ -z $left ]] && break
        sleep 0.5
      done
      how="template patched, new revision"
      if [[ $w == ro-ref ]]; then
        ra=$(k -n "$NS" get rollout "$w" -o jsonpath='{.spec.restartAt}' 2>/dev/null)
        tmpl=$(k -n "$NS" get deployment ro-base -o jsonpath='{.spec.template.spec.containers[0].env}' 2>/dev/null)
        how="spec.restartAt=$ra, Deployment ro-base's template untouched"
        if [[ -z $ra || -n $tmpl ]]; then
          fail "ro-ref: reloaded through spec.restartAt, the Deployment's template untouched (restartAt: ${ra:-none}, Deployment env: ${tmpl:-none})"
          continue
        fi
      fi
      if [[ -z $left ]]; then
        pass "$w: ConfigMap edit -> new pod $name logging GREETING=bonjour in $took s, old pod gone ($how)"
      else
        fail "$w: new pod $name logging GREETING=bonjour in $took s, but old pod still running 60 s after the edit: $left"
      fi
    else
      fail "$w: ConfigMap edit -> a new pod logging GREETING=bonjour within 60 s"
      k -n "$NS" get pods -l "app=$w" -o wide 2>&1 | indent
      k -n "$NS" get rollout "$w" -o jsonpath='{.metadata.annotations}{"\n"}{.spec.restartAt}{"\n"}{.status.conditions}{"\n"}' 2>&1 | indent
      tail -n 10 "$WORK/argo.log" | indent
    fi
  done
fi

# ------------------------------------------------------------------ CronJob trigger
# cj-trigger (annotation pod-reloader.deckhouse.io/cronjob-trigger: "true"):
# the ConfigMap edit starts a Job at once, made as Reloader makes it
# (cronjob.kubernetes.io/instantiate: manual, the CronJob its controlling
# owner), whose pod runs on the node, logs the new value and completes.
# cj-plain (no opt-in): its job template gets the new hash, and no Job.
section "CronJob trigger (a Job at once on the opt-in, the template only without)"
cj_uid() { k -n "$NS" get cronjob "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
# jobs_of UID: "name instantiate succeeded" per Job that the CronJob UID controls.
jobs_of() {
  k -n "$NS" get jobs -o json 2>/dev/null | jq -r --arg uid "$1" '.items[]
    | select(any(.metadata.ownerReferences[]?; .uid == $uid and .controller == true))
    | "\(.metadata.name) \(.metadata.annotations["cronjob.kubernetes.io/instantiate"] // "-") \(.status.succeeded // 0)"'
}
TRIGGER_UID=$(cj_uid cj-trigger)
PLAIN_UID=$(cj_uid cj-plain)
if [[ -z $TRIGGER_UID || -z $PLAIN_UID ]]; then
  fail "CronJobs cj-trigger and cj-plain exist"
else
  deadline=$(( t_edit + 60000 ))
  job="" ann="" succeeded=0
  while (( $(now_ms) < deadline )); do
    read -r job ann succeeded < <(jobs_of "$TRIGGER_UID" | head -n 1) || true
    [[ -n $job && ${succeeded:-0} -ge 1 ]] && break
    sleep 0.5
  done
  if [[ -n $job && ${succeeded:-0} -ge 1 ]]; then
    took=$(secs "$t_edit")
    pod=$(k -n "$NS" get pods -l "job-name=$job" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
    logged=$(pod_log "$NS" "$pod" 2>/dev/null)
    count=$(jobs_of "$TRIGGER_UID" | grep -c .)
    if [[ $ann == manual && $count == 1 && $logged == "sample-app: GREETING=bonjour" ]]; then
      pass "cj-trigger: ConfigMap edit -> Job $job (instantiate: manual, controlled by the CronJob) completed $took s after the edit; its pod $pod logged GREETING=bonjour"
    else
      fail "cj-trigger: one Job (instantiate: manual) whose pod logs GREETING=bonjour (Jobs: $count, instantiate: $ann, pod $pod logged: $logged)"
    fi
  else
    fail "cj-trigger: a Job started from the CronJob and completed within 60 s of the edit"
    k -n "$NS" get jobs,pods -l cronjob=cj-trigger -o wide 2>&1 | indent
  fi
  # cj-plain: the job template carries the new hash, and no Job was started.
  tmpl=$(k -n "$NS" get cronjob cj-plain -o jsonpath='{.spec.jobTemplate.spec.template.spec.containers[0].env}' 2>&1)
  jobs=$(jobs_of "$PLAIN_UID" | grep -c .)
  if [[ $tmpl == *STAKATER_GREETING_CONFIGMAP* && $jobs == 0 ]]; then
    pass "cj-plain: job template patched (STAKATER_GREETING_CONFIGMAP), no Job started ($(secs "$t_edit") s after the edit)"
  else
    fail "cj-plain: job template patched and no Job started (template env: $tmpl, Jobs: $jobs)"
  fi
fi

# ------------------------------------------------------------------ 4. after
if ((CONTROLLER_READY)); then
  section "the controller after the reloads"
  check_controller_pod "after the reloads"
  code=$(http_get "http://$CPOD_IP:9090/metrics")
  executed=$(awk '/^reloader_reload_executed_total/ {s += $2} END {print s + 0}' "$WORK/http.out" 2>/dev/null)
  if [[ $code == 200 && ${executed:-0} -ge 5 ]]; then
    pass "/metrics on the pod IP counts the reloads (reloader_reload_executed_total = $executed)"
  else
    fail "/metrics on the pod IP counts at least 5 reloads (got HTTP $code, reloader_reload_executed_total = ${executed:-none})"
  fi
  pod_log "$MODULE_NS" "$CPOD" >"$WORK/controller.log" 2>&1
  if [[ ! -s $WORK/controller.log ]]; then
    fail "the controller's log could be read"
  # A refusal reads "... is forbidden ... reason: \"Forbidden\", code: 403";
  # a bare 403 also matches digits of a latency (latency_seconds 1.3938540…).
  elif grep -qiE 'forbidden|code: 403\b|"code":403\b' "$WORK/controller.log"; then
    fail "the controller logged no 403/Forbidden"
    grep -iE 'forbidden|code: 403\b|"code":403\b' "$WORK/controller.log" | head -n 10 | indent
  else
    pass "the controller logged no 403/Forbidden ($(wc -l <"$WORK/controller.log") log lines)"
  fi
fi
stop_child "$CONTROLLER_PID"

# ------------------------------------------------------------------ alerts
# One alert per rolled workload (the five above), sent by the in-cluster
# controller to the receiver on the node; checked once five have arrived (or
# 20 s passed) and again 3 s later, so that a duplicate would be seen.
section "alerts on reload (webhook on the node)"
ROLLED=(cm-auto secret-named sts-auto ds-named sts-ondelete cj-trigger cj-plain)
((ARGO_READY)) && ROLLED+=(ro-own ro-ref)
alert_count() { if [[ -f $ALERTS ]]; then awk 'END {print NR}' "$ALERTS"; else echo 0; fi; }
# alerts_naming WORKLOAD: how many alert bodies say it was reloaded.
alerts_naming() { jq -r '.body // ""' "$ALERTS" 2>/dev/null | grep -cF "reloaded $1 of type " || true; }
if [[ ${NODE_E2E_CONTROLLER:-} == process ]]; then
  skip "alerts on reload: NODE_E2E_CONTROLLER=process (the controller process has no alert webhook)"
elif [[ -n $ALERT_URL ]]; then
  deadline=$(( $(now_ms) + 20000 ))
  while (( $(alert_count) < ${#ROLLED[@]} && $(now_ms) < deadline )); do sleep 0.2; done
  sleep 3
  stop_receiver
  n=$(alert_count)
  if [[ $n == "${#ROLLED[@]}" ]]; then
    pass "the receiver got $n alerts for the ${#ROLLED[@]} rolled workloads"
  else
    fail "the receiver got one alert per rolled workload (${#ROLLED[@]}), got $n"
    if ((!CONTROLLER_READY)); then
      echo "    (the in-cluster controller never became ready: see \"controller Deployment available\" above)"
    fi
    jq -c . "$ALERTS" 2>/dev/null | head -n 10 | indent
  fi
  # The ConfigMap edit's Deployment: exactly one alert, and it is the whole
  # expected message (webhook sink: plain text, additionalInfo first).
  want="node-e2e : Reloader detected changes in greeting of type CONFIGMAP in namespace $NS. Hence reloaded cm-auto of type Deployment in namespace $NS"
  got=$(jq -c --arg want "$want" --arg path "$ALERT_PATH" \
    'select(.method == "POST" and .path == $path and .content_type == "text/plain" and .body == $want)' "$ALERTS" 2>/dev/null | grep -c . || true)
  if [[ $(alerts_naming cm-auto) == 1 && $got == 1 ]]; then
    pass "cm-auto: exactly one alert for its reload: POST $ALERT_PATH, text/plain, \"$want\""
  else
    fail "cm-auto: exactly one alert, POST $ALERT_PATH text/plain \"$want\" (alerts naming cm-auto: $(alerts_naming cm-auto), matching exactly: $got)"
  fi
  counts=""
  for w in "${ROLLED[@]}" not-annotated; do counts+=" $w=$(alerts_naming "$w")"; done
  want_counts=""
  for w in "${ROLLED[@]}"; do want_counts+=" $w=1"; done
  if [[ $counts == "$want_counts not-annotated=0" ]]; then
    pass "one alert per rolled workload, none for the one not rolled:$counts"
  else
    fail "one alert per rolled workload, none for not-annotated (got:$counts)"
  fi
  if ((n == 0)); then
    fail "the alerts hold no Secret data: no alert to look at"
  elif grep -qF -e "$SECRET_OLD" -e "$SECRET_NEW" "$ALERTS"; then
    fail "the alerts hold no Secret data (found a value of Secret token)"
  else
    pass "the alerts hold no Secret data (neither value of Secret token in $n alerts)"
  fi
else
  fail "alerts on reload: no receiver (see \"alert receiver\" above)"
fi
if ((CONTROLLER_READY)); then
  # controller.log: the in-cluster controller's log, read in section 4.
  if grep -qF -e "${ALERT_PATH#/hooks/}" -e "$SECRET_OLD" -e "$SECRET_NEW" "$WORK/controller.log" 2>/dev/null; then
    fail "the controller's log holds neither the webhook URL's path nor the Secret's values"
    grep -F -e "${ALERT_PATH#/hooks/}" -e "$SECRET_OLD" -e "$SECRET_NEW" "$WORK/controller.log" | head -n 5 | indent
  else
    pass "the controller's log holds neither the webhook URL's path nor the Secret's values"
  fi
  code=$(http_get "http://$CPOD_IP:9090/metrics")
  sent=$(awk '/^reloader_alerts_total\{result="sent"\}/ {print $2}' "$WORK/http.out" 2>/dev/null)
  if [[ $code == 200 && ${sent:-0} == "${#ROLLED[@]}" ]]; then
    pass "/metrics: reloader_alerts_total{result=\"sent\"} = $sent"
  else
    fail "/metrics: reloader_alerts_total{result=\"sent\"} = ${#ROLLED[@]} (got HTTP $code, ${sent:-none})"
    grep '^reloader_alerts_total' "$WORK/http.out" 2>/dev/null | indent
  fi
fi

# ------------------------------------------------------------------ 5. teardown
# What `make testbed-down` runs first (testbed.sh down -> node.sh down), on
# the node this script started: afterwards nothing of the node may be left on
# the machine. Checked from the outside (/proc, mountinfo, ip link, cgroupfs),
# not from what node.sh believes it stopped.
leftovers() {
  local node_dir=$TESTBED_DIR/node run_dir=/run/pod-reloader-node pid cmd
  for pid in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$pid/cmdline") || continue # gone meanwhile: stderr first
    case $cmd in
      *"$node_dir"* | *"$run_dir"* | "$BIN_DIR/kubelet "* | "$BIN_DIR/kube-scheduler "*)
        echo "process ${pid#/proc/}: ${cmd:0:160}" ;;
    esac
  done
  # mountinfo: the mount point is field 5, the type follows the " - " separator.
  awk -v a="$node_dir" -v b="$run_dir" '{ split($0, tail, " - "); split(tail[2], t, " ") }
    index($5, a) == 1 || index($5, b) == 1 { print "mount: " $5 " (" t[1] ")" }
    t[1] == "nsfs" && $5 ~ /pod-reloader-node|\/netns\/cni-/ { print "namespace mount: " $5 }' /proc/self/mountinfo
  comm -13 "$WORK/veths-before" <(veths) | sed 's/^/veth: /'
  ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^prnode/ {print "link: " $2}'
  for d in /sys/fs/cgroup/*/pod-reloader-node; do [[ -d $d ]] && echo "cgroup: $d"; done
  [[ -e $run_dir ]] && echo "directory: $run_dir"
  [[ -e $node_dir ]] && echo "directory: $node_dir"
  return 0
}
if ((STARTED_NODE)) && [[ ${NODE_E2E_KEEP:-} != 1 ]]; then
  section "teardown (node.sh down, as make testbed-down runs it)"
  k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if ((RENDER_APPLIED)); then
    k delete -f "$WORK/render.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  k wait --for=delete namespace "$NS" "$MODULE_NS" --timeout=30s >/dev/null 2>&1 || true
  RENDER_APPLIED=0
  t0=$(now_ms)
  if timeout 120 "$NODE_SH" down >"$WORK/node-down.log" 2>&1; then
    pass "node stopped in $(secs "$t0") s: $(tail -n 1 "$WORK/node-down.log")"
  else
    fail "node.sh down"
    indent <"$WORK/node-down.log"
  fi
  STARTED_NODE=0
  leftovers >"$WORK/leftovers"
  if [[ -s $WORK/leftovers ]]; then
    fail "nothing of the node left behind"
    indent <"$WORK/leftovers"
  else
    pass "nothing of the node left behind (no process, mount, network namespace, veth, bridge, cgroup or state directory)"
  fi
elif [[ ${NODE_E2E_KEEP:-} != 1 ]]; then
  skip "teardown check: the node was already running before this script (make testbed-down stops it)"
fi

summary
((FAILED == 0))
