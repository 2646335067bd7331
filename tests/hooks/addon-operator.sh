#!/usr/bin/env bash
# The module under the real addon-operator: github.com/flant/addon-operator
# (cmd/addon-operator, pinned by tests/hooks/addon-operator/go.mod and go.sum,
# built from the Go module proxy into the cache) runs against a private test
# bed (testbed.sh with TESTBED_STATE_DIR in a temporary directory: its own
# etcd, apiserver and controller-manager, so installing the release never
# touches the shared one) with a modules directory holding this module and
# the hooks binary as hooks/pod-reloader-hooks. addon-operator discovers the
# batch hooks (`hook list`, `hook config`), runs them (kubernetes bindings,
# beforeHelm), renders the chart with Helm and applies it. Then:
#
#   - the values addon-operator holds (its debug socket) carry every internal
#     value the hooks compute;
#   - the controller Deployment, its ConfigMap, the NetworkPolicy and the
#     RBAC exist and are exactly what those values say; the NetworkPolicy
#     lets the controller reach the test bed's real kube-apiserver endpoint
#     (the `kubernetes` EndpointSlice) and the alert webhook;
#   - deleting the Argo Rollouts CRD (a kubernetes Event for the hook) turns
#     argoRolloutsEnabled off, and the re-rendered ClusterRole and config
#     follow.
#
# Skipped (exit 0, with the reason) only when addon-operator cannot be built
# here: no Go toolchain, or its modules cannot be downloaded. Ends with
# "N passed, N failed[, N skipped]".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader
# shellcheck source-path=SCRIPTDIR/../..
. "$ROOT/testbed/lib.sh" # free_port, alive, stop_child
# shellcheck source-path=SCRIPTDIR/..
. "$ROOT/tests/lib.sh"
WORK=$(mktemp -d)
AO_PID=""
TB=""

cleanup() {
  # KEEP_LOG=FILE keeps addon-operator's log.
  [[ -n ${KEEP_LOG:-} && -f $WORK/addon-operator.log ]] && cp "$WORK/addon-operator.log" "$KEEP_LOG"
  stop_child "$AO_PID"
  if [[ -n $TB ]]; then
    TESTBED_STATE_DIR=$TB "$ROOT/testbed/testbed.sh" down >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# skip_all REASON: addon-operator cannot run here; say so and stop (exit 0).
skip_all() {
  skip "addon-operator: $*"
  summary
  exit 0
}
finish() {
  summary
  ((FAILED == 0))
}

# --- 1. addon-operator, built from the Go module proxy -----------------------
command -v go >/dev/null 2>&1 || skip_all "no Go toolchain (go) to build github.com/flant/addon-operator"
MODDIR=$HERE/addon-operator
stamp=$(cat "$MODDIR/go.mod" "$MODDIR/go.sum" | sha256sum | cut -c1-16)
AO=$CACHE/addon-operator-$stamp
export GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0
if [[ ! -x $AO ]]; then
  mkdir -p "$CACHE"
  if ! (cd "$MODDIR" && go mod download) >"$WORK/download.log" 2>&1; then
    skip_all "its modules cannot be downloaded from the Go module proxy: $(tail -n 3 "$WORK/download.log" | tr '\n' ' ')"
  fi
  echo "building addon-operator ($(sed -n 's/^require github.com\/flant\/addon-operator //p' "$MODDIR/go.mod"), a few minutes the first time)…" >&2
  if ! (cd "$MODDIR" && go build -p 2 -trimpath -ldflags '-s -w' -o "$AO.tmp.$$" github.com/flant/addon-operator/cmd/addon-operator) >"$WORK/build.log" 2>&1; then
    fail "build github.com/flant/addon-operator/cmd/addon-operator"
    tail -n 30 "$WORK/build.log" | sed 's/^/    /'
    finish
    exit 1
  fi
  mv -f "$AO.tmp.$$" "$AO"
fi
pass "addon-operator built ($AO)"

# --- 2. the hooks binary -------------------------------------------------------
target=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $target == /* ]] || target=$ROOT/$target
(cd "$ROOT" && cargo build -q -p pod-reloader-hooks) >"$WORK/cargo.log" 2>&1 || {
  fail "cargo build -p pod-reloader-hooks"
  sed 's/^/    /' "$WORK/cargo.log"
  finish
  exit 1
}
HOOKS_BIN=$target/debug/pod-reloader-hooks

# --- 3. a private test bed -----------------------------------------------------
TB=$WORK/.testbed-addon-operator
if ! TESTBED_STATE_DIR=$TB "$ROOT/testbed/testbed.sh" up >"$WORK/testbed.log" 2>&1; then
  fail "private test bed up"
  tail -n 30 "$WORK/testbed.log" | sed 's/^/    /'
  finish
  exit 1
fi
# shellcheck disable=SC1091
. "$TB/env"
pass "private test bed up ($(tail -n 1 "$WORK/testbed.log" | sed 's/ *(\..*//'))"

# --- 4. the modules directory and the module's config ---------------------------
MODULES=$WORK/modules
M=$MODULES/001-pod-reloader
mkdir -p "$M/hooks" "$WORK/global-hooks" "$WORK/tmp"
cp -r "$ROOT/Chart.yaml" "$ROOT/module.yaml" "$ROOT/.helmignore" "$ROOT/templates" "$ROOT/openapi" "$ROOT/monitoring" "$M/"
install -m 0755 "$HOOKS_BIN" "$M/hooks/pod-reloader-hooks"
# The global values Deckhouse would pass (image digests, registry, discovery).
"$(command -v python3)" - "$ROOT/tests/module/global-values.yaml" >"$MODULES/values.yaml" <<'EOF'
import json, re, sys
# global-values.yaml is plain YAML without anchors; keep it as is, minus
# enabledModules (addon-operator computes that).
text = open(sys.argv[1]).read()
text = re.sub(r"\n  enabledModules:\n(    - .*\n)+", "\n", text)
sys.stdout.write(text)
# The Static extender reads <modules dir>/values.yaml.
sys.stdout.write("podReloaderEnabled: true\n")
EOF
# Settings: Deckhouse's spellings (the hooks translate them), a namespace selector, HA,
# alerting to an IP address with a port, Secrets not watched.
cat >"$WORK/settings.yaml" <<'EOF'
reloadStrategy: Annotations
namespaceSelector: "team in (a,b)"
highAvailability: true
resourcesToIgnore: ["Secrets"]
alerting:
  enabled: true
  webhook:
    url: http://192.0.2.10:8080/hooks/test
    sink: Webhook
EOF
# The test bed's apiserver runs with --endpoint-reconciler-type=none (it
# advertises 127.0.0.1), so it keeps no `kubernetes` EndpointSlice: create the
# one a cluster has, with the apiserver's port (an address in the loopback
# range is refused by validation, so a documentation address stands for it).
slice() { # slice ADDRESS...: the default/kubernetes EndpointSlice with these ready endpoints
  local eps="" a
  for a in "$@"; do eps+="{\"addresses\":[\"$a\"],\"conditions\":{\"ready\":true}},"; done
  cat <<EOF
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","addressType":"IPv4",
 "metadata":{"name":"kubernetes","namespace":"default","labels":{"kubernetes.io/service-name":"kubernetes"}},
 "endpoints":[${eps%,}],
 "ports":[{"name":"https","port":$APISERVER_PORT,"protocol":"TCP"}]}
EOF
}
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$TB/ports.env")
slice 192.0.2.1 | kubectl apply -f - >/dev/null
kubectl create namespace addon-operator >/dev/null
kubectl -n addon-operator create configmap addon-operator \
  --from-literal=global='{}' --from-file=podReloader="$WORK/settings.yaml" >/dev/null
pass "modules dir $MODULES (module + hooks/pod-reloader-hooks), ConfigMap addon-operator with the settings"

# --- 5. run addon-operator ------------------------------------------------------
port=$(free_port)
SOCKET=$WORK/debug.socket
(
  cd "$WORK"
  exec env ADDON_OPERATOR_NAMESPACE=addon-operator MODULES_DIR="$MODULES" GLOBAL_HOOKS_DIR="$WORK/global-hooks" \
    ADDON_OPERATOR_TMP_DIR="$WORK/tmp" ADDON_OPERATOR_LISTEN_ADDRESS=127.0.0.1 ADDON_OPERATOR_LISTEN_PORT="$port" \
    DEBUG_UNIX_SOCKET="$SOCKET" KUBE_CONFIG="$KUBECONFIG" KUBECONFIG="$KUBECONFIG" LOG_TYPE=json LOG_LEVEL=info \
    HELM_TIMEOUT=30s "$AO" start
) >"$WORK/addon-operator.log" 2>&1 &
AO_PID=$!

values_json() { "$AO" module values pod-reloader -o json --debug-unix-socket="$SOCKET" 2>/dev/null; }
# wait_for SECONDS CMD...: CMD succeeds within SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    alive "$AO_PID" || return 1
    sleep 2
  done
}
deployed() { kubectl -n d8-pod-reloader get deployment pod-reloader && kubectl get clusterrole d8:pod-reloader; }
if wait_for "${INSTALL_TIMEOUT:-240}" deployed; then
  pass "addon-operator ran the hooks and installed the release (Deployment d8-pod-reloader/pod-reloader)"
else
  fail "addon-operator ran the hooks and installed the release (Deployment d8-pod-reloader/pod-reloader)"
  grep -iE 'error|fail|hook' "$WORK/addon-operator.log" | tail -n 40 | sed 's/^/    /'
  finish
  exit 1
fi

check "addon-operator found the batch hooks of hooks/pod-reloader-hooks (settings, argo_rollouts, rbac, network_policy, record_key)" \
  bash -c "for h in settings argo_rollouts rbac network_policy record_key; do grep -q \"pod-reloader-hooks:\$h\" '$WORK/addon-operator.log' || { echo \"no hook \$h in the log\"; exit 1; }; done"

# --- 6. what the hooks computed is what was applied ------------------------------
kubectl -n default get endpointslices -l kubernetes.io/service-name=kubernetes -o json >"$WORK/endpointslices.json"
values_json >"$WORK/values.json" || true
check "addon-operator's values hold every internal value the hooks compute" python3 - "$WORK/values.json" "$WORK/endpointslices.json" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
internal = v.get("podReloader", v).get("internal", {})
want = ["argoRolloutsEnabled", "apiserverEndpoints", "reloadStrategy", "selectors", "watchScope", "controllerConfig", "rbac", "networkPolicy", "recordKey"]
missing = [k for k in want if k not in internal]
assert not missing, f"missing internal values {missing}: {sorted(internal)}"
assert internal["argoRolloutsEnabled"] is True, "the test bed serves argoproj.io/v1alpha1 Rollouts"
assert internal["reloadStrategy"] == "annotations", internal["reloadStrategy"]
assert internal["watchScope"]["mode"] == "ClusterWide"
assert internal["selectors"]["namespaceSelector"]["matchExpressions"] == [{"key": "team", "operator": "In", "values": ["a", "b"]}]
slices = json.load(open(sys.argv[2]))["items"]
eps = sorted({(a, p["port"]) for s in slices for e in s.get("endpoints", []) if (e.get("conditions") or {}).get("ready") is not False
              for a in e["addresses"] for p in s.get("ports", []) if p.get("protocol", "TCP") == "TCP"})
got = sorted((e["address"], e["port"]) for e in internal["apiserverEndpoints"])
assert eps and got == eps, f"apiserverEndpoints {got} != the kubernetes EndpointSlices {eps}"
print("internal values:", ", ".join(sorted(internal)))
EOF

get() { kubectl get "$@" -o json; }
get -n d8-pod-reloader deployment pod-reloader >"$WORK/deployment.json"
get -n d8-pod-reloader configmap pod-reloader-config >"$WORK/configmap.json"
get -n d8-pod-reloader networkpolicy pod-reloader >"$WORK/networkpolicy.json"
get clusterrole d8:pod-reloader >"$WORK/clusterrole.json"
get -n d8-pod-reloader role pod-reloader:leader-election >"$WORK/lease-role.json" 2>"$WORK/lease-role.err" || echo '{}' >"$WORK/lease-role.json"
check "the controller Deployment, ConfigMap, NetworkPolicy and RBAC are what the hooks computed" python3 - "$WORK" <<'EOF'
import json, os, sys
w = sys.argv[1]
load = lambda n: json.load(open(os.path.join(w, n)))
internal = load("values.json")
internal = internal.get("podReloader", internal)["internal"]
dep, cm, np_, cr, lease = (load(n) for n in ("deployment.json", "configmap.json", "networkpolicy.json", "clusterrole.json", "lease-role.json"))
assert dep["spec"]["replicas"] == 2, f"HA: 2 replicas, got {dep['spec']['replicas']}"
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["args"][:2] == ["--config", "/etc/pod-reloader/config.yaml"], c["args"]

import re
def parse_yaml_subset(text):
    # config.yaml is toYaml of a JSON object: compare through the keys and scalars the hook set.
    return text
cfg_text = cm["data"]["config.yaml"]
want_cfg = internal["controllerConfig"]
for k, v in want_cfg.items():
    if isinstance(v, (bool, str)) and not isinstance(v, dict):
        s = str(v).lower() if isinstance(v, bool) else v
        assert re.search(rf"^{k}: (\"?){re.escape(s)}\1$", cfg_text, re.M), f"config.yaml {k} != {v!r}:\n{cfg_text}"
assert want_cfg["argoRollouts"] is True and want_cfg["leaderElection"]["enabled"] is True
assert "reloadStrategy: annotations" in cfg_text

def norm_rules(rules):
    return sorted(json.dumps({k: r.get(k, []) for k in ("apiGroups", "resources", "verbs")}, sort_keys=True) for r in rules)
assert norm_rules(cr["rules"]) == norm_rules(internal["rbac"]["clusterRules"]), f"ClusterRole {cr['rules']} != {internal['rbac']['clusterRules']}"
res = {(g, r) for rule in cr["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
assert ("argoproj.io", "rollouts") in res and ("", "namespaces") in res and ("", "secrets") not in res, sorted(res)
assert norm_rules(lease.get("rules", [])) == norm_rules(internal["rbac"]["leaderElectionRules"]) != [], "leader-election Role"

spec = np_["spec"]
def norm(x):
    return json.dumps(x, sort_keys=True)
assert norm(spec["ingress"]) == norm(internal["networkPolicy"]["ingress"]), spec["ingress"]
assert norm(spec["egress"]) == norm(internal["networkPolicy"]["egress"]), spec["egress"]
for ep in internal["apiserverEndpoints"]:
    rule = {"to": [{"ipBlock": {"cidr": ep["address"] + "/32"}}], "ports": [{"protocol": "TCP", "port": ep["port"]}]}
    assert norm(rule) in [norm(r) for r in spec["egress"]], f"no egress to the apiserver {ep}"
hook = {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"protocol": "TCP", "port": 8080}]}
assert norm(hook) in [norm(r) for r in spec["egress"]], "no egress to the alert webhook 192.0.2.10:8080"
print("Deployment, ConfigMap, NetworkPolicy, ClusterRole, leader-election Role: as computed")
EOF

# The record key: generated by the record_key hook (no Secret at first), rendered
# into the Secret by Helm, mounted into the controller and passed as a flag.
get -n d8-pod-reloader secret pod-reloader-record-key >"$WORK/record-key.json" 2>/dev/null || echo '{}' >"$WORK/record-key.json"
check "the record key: 32 bytes generated into values, the Secret holds them, the controller gets the file" python3 - "$WORK" <<'EOF'
import base64, json, os, sys
w = sys.argv[1]
load = lambda n: json.load(open(os.path.join(w, n)))
internal = load("values.json")
internal = internal.get("podReloader", internal)["internal"]
assert len(base64.b64decode(internal["recordKey"], validate=True)) == 32, "recordKey is base64 of 32 bytes"
secret = load("record-key.json")
assert secret.get("data", {}).get("key") == internal["recordKey"], "Secret pod-reloader-record-key holds the values' key"
pod = load("deployment.json")["spec"]["template"]["spec"]
c = pod["containers"][0]
path = c["args"][c["args"].index("--record-key-file") + 1]
mount = next(m for m in c["volumeMounts"] if m["name"] == "record-key")
vol = next(v for v in pod["volumes"] if v["name"] == "record-key")
assert vol["secret"]["secretName"] == "pod-reloader-record-key" and mount["readOnly"] is True
assert path == mount["mountPath"] + "/" + vol["secret"]["items"][0]["path"], (path, mount, vol)
print("record key: generated, kept in the Secret, mounted at", path)
EOF

# --- 7. a kubernetes Event: the Argo Rollouts CRD goes away -----------------------
kubectl delete crd rollouts.argoproj.io --wait=true >/dev/null
argo_off() {
  kubectl get clusterrole d8:pod-reloader -o json | python3 -c '
import json, sys
rules = json.load(sys.stdin)["rules"]
assert not any("argoproj.io" in r["apiGroups"] for r in rules)' &&
    kubectl -n d8-pod-reloader get configmap pod-reloader-config -o jsonpath='{.data.config\.yaml}' | grep -q '^argoRollouts: false$'
}
if wait_for 120 argo_off; then
  pass "CRD rollouts.argoproj.io deleted: argoRolloutsEnabled off, ClusterRole without rollouts, config argoRollouts: false"
else
  fail "CRD rollouts.argoproj.io deleted: argoRolloutsEnabled off, ClusterRole without rollouts, config argoRollouts: false"
  values_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["podReloader"]["internal"]["argoRolloutsEnabled"])' 2>&1 | sed 's/^/    argoRolloutsEnabled: /'
  grep -iE 'argo_rollouts|error' "$WORK/addon-operator.log" | tail -n 20 | sed 's/^/    /'
fi

# --- 8. a kubernetes Event: the apiserver endpoints change ------------------------
slice 192.0.2.1 192.0.2.2 | kubectl apply -f - >/dev/null
two_endpoints() {
  kubectl -n d8-pod-reloader get networkpolicy pod-reloader -o json | python3 -c '
import json, sys
egress = json.load(sys.stdin)["spec"]["egress"]
cidrs = {p["ipBlock"]["cidr"] for r in egress for p in r.get("to", []) if "ipBlock" in p}
assert {"192.0.2.1/32", "192.0.2.2/32"} <= cidrs, cidrs'
}
if wait_for 120 two_endpoints; then
  pass "EndpointSlice default/kubernetes gains an endpoint: the NetworkPolicy egress follows (192.0.2.1, 192.0.2.2)"
else
  fail "EndpointSlice default/kubernetes gains an endpoint: the NetworkPolicy egress follows (192.0.2.1, 192.0.2.2)"
  kubectl -n d8-pod-reloader get networkpolicy pod-reloader -o jsonpath='{.spec.egress}' | sed 's/^/    /'
fi

if grep -q '"level":"error"' "$WORK/addon-operator.log"; then
  echo "addon-operator logged errors (for information):"
  grep '"level":"error"' "$WORK/addon-operator.log" | tail -n 10 | sed 's/^/    /'
fi
finish
