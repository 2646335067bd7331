#!/usr/bin/env bash
# Tests of the Deckhouse module package (module.yaml, openapi/, templates/,
# monitoring/). Called by `make test` after the test bed is up, with KUBECONFIG
# and PATH from .testbed/env exported.
#
#   1. openapi:     every positive case of openapi/openapi-case-tests.yaml
#                   validates, every negative one is rejected naming its field,
#                   and both kinds cover every setting.
#   2. render:      the module's hooks binary runs its beforeHelm hooks on
#                   every case in values/ (internal values: RBAC, NetworkPolicy,
#                   the controller's config), real Helm renders the chart;
#                   tool.py asserts what each render must contain.
#   3. golden:      three renders are compared with golden/ (UPDATE_GOLDEN=1
#                   rewrites them); the dashboard JSON is kept as its hash.
#   4. kubeconform: every object passes `kubeconform -strict` against JSON
#                   schemas generated from the test bed's /openapi/v2 (CRD
#                   fixtures from crds/ included), cached outside the repo.
#   5. dry-run:     every render passes `kubectl apply --server-side
#                   --dry-run=server` on the test bed; the controller's pod
#                   passes the "restricted" Pod Security Standard; the
#                   controller binary (when built) starts with the config.yaml
#                   of every case and of every positive openapi case.
#   6. rbac:        the rendered RBAC, applied for real, allows the
#                   controller's verbs and answers 403 outside them; the
#                   controller binary (when built) runs with the rendered
#                   config and only its ServiceAccount's token and rolls a
#                   Deployment, StatefulSet, DaemonSet, CronJob and Job (and
#                   an Argo Rollout where Rollouts are on), cluster-wide,
#                   cluster-wide with leader election (its Lease) and in the
#                   scoped mode, with no 403.
#   7. promtool:    `promtool check rules` and `promtool test rules`.
#   8. dmt:         Deckhouse's linter, ../shared/tools/dmt/dmt (from the
#                   repository root), on the module directory: no error, and
#                   no warning but the ones tool.py's DMT_KEPT_WARNINGS keeps
#                   with their reasons (skipped when dmt is absent).
#
# Ends with "N passed, N failed" (", N skipped" when dmt or the controller
# binary is missing); exits non-zero if anything failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader
FIELD_MANAGER=pod-reloader-module-tests
SA_USER=system:serviceaccount:d8-pod-reloader:pod-reloader
GOLDEN_CASES=(defaults full namespaces)

# shellcheck source-path=SCRIPTDIR/..
. "$ROOT/tests/lib.sh"
CHECK_TAIL=60
WORK=$(mktemp -d)
RBAC_APPLIED=()

cleanup() {
  local f
  for f in "${RBAC_APPLIED[@]}"; do
    kubectl delete --ignore-not-found --wait=false -f "$f" >/dev/null 2>&1 || true
  done
  if [[ -f $WORK/victim.yaml ]]; then
    kubectl delete --ignore-not-found --wait=false -f "$WORK/victim.yaml" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools --------------------------------------------------------------------
missing=()
for tool in helm kubeconform kubectl promtool python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "missing tools: ${missing[*]} (make tools / make deps install them)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

# Python with PyYAML and jsonschema: the system one if it has them, else a
# virtualenv in the cache (PyPI).
PY=python3
if ! python3 -c 'import yaml, jsonschema' >/dev/null 2>&1; then
  VENV=$CACHE/venv-module-tests
  if ! "$VENV/bin/python" -c 'import yaml, jsonschema' >/dev/null 2>&1; then
    echo "installing PyYAML and jsonschema into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'PyYAML>=6' 'jsonschema>=4.17'
  fi
  PY=$VENV/bin/python
fi
TOOL=("$PY" "$HERE/tool.py")

# --- 1. openapi cases -----------------------------------------------------------
section "openapi cases (openapi/openapi-case-tests.yaml)"
if "${TOOL[@]}" cases >"$WORK/cases.log" 2>&1; then rc=0; else rc=$?; fi
cat "$WORK/cases.log"
line=$(grep -E '^openapi cases: [0-9]+ passed, [0-9]+ failed$' "$WORK/cases.log" || true)
if [[ -n $line ]]; then
  read -r p f < <(sed -E 's/^openapi cases: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
fi
if [[ -z $line || ($rc -ne 0 && ${f:-0} -eq 0) ]]; then
  fail "openapi case checker crashed"
fi

# --- 2. render the matrix -----------------------------------------------------
section "helm template over the matrix (tests/module/values/)"
# The hooks binary computes the internal values the chart renders (RBAC,
# NetworkPolicy, the controller's config): tool.py runs its beforeHelm hooks
# on every case as addon-operator does. The one `cargo test`/`cargo build`
# built, else built here.
hooks_target=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $hooks_target == /* ]] || hooks_target=$ROOT/$hooks_target
POD_RELOADER_HOOKS=""
for b in "$hooks_target/debug/pod-reloader-hooks" "$hooks_target/release/pod-reloader-hooks"; do
  [[ -x $b ]] && { POD_RELOADER_HOOKS=$b; break; }
done
if [[ -z $POD_RELOADER_HOOKS ]]; then
  echo "building pod-reloader-hooks (cargo build -p pod-reloader-hooks)" >&2
  (cd "$ROOT" && cargo build -q -p pod-reloader-hooks) && POD_RELOADER_HOOKS=$hooks_target/debug/pod-reloader-hooks
fi
export POD_RELOADER_HOOKS
mkdir -p "$WORK/render"
CASES=()
for file in "$HERE"/values/*.yaml; do
  case_name=$(basename "$file" .yaml)
  values=$WORK/render/$case_name.values.yaml
  out=$WORK/render/$case_name.yaml
  if ! "${TOOL[@]}" values "$file" >"$values" 2>"$WORK/render/$case_name.err"; then
    fail "render $case_name: values do not validate against openapi/"
    sed 's/^/    /' "$WORK/render/$case_name.err"
    continue
  fi
  api_versions=()
  while read -r api; do
    [[ -n $api ]] && api_versions+=(--api-versions "$api")
  done < <("${TOOL[@]}" api-versions "$file")
  if ! helm template pod-reloader "$ROOT" --namespace d8-pod-reloader -f "$values" "${api_versions[@]}" \
    >"$out" 2>"$WORK/render/$case_name.err"; then
    fail "render $case_name: helm template failed"
    sed 's/^/    /' "$WORK/render/$case_name.err"
    continue
  fi
  CASES+=("$case_name")
  check "render $case_name: $(grep -c '^kind:' "$out") objects, assertions" "${TOOL[@]}" check "$case_name" "$out"
done

# --- 3. golden files ----------------------------------------------------------
section "golden renders (tests/module/golden/)"
for case_name in "${GOLDEN_CASES[@]}"; do
  out=$WORK/render/$case_name.yaml
  golden=$HERE/golden/$case_name.yaml
  if [[ ! -f $out ]]; then
    fail "golden $case_name: no render"
    continue
  fi
  "${TOOL[@]}" golden "$out" >"$out.golden"
  if [[ ${UPDATE_GOLDEN:-} == 1 ]]; then
    mkdir -p "$HERE/golden"
    cp "$out.golden" "$golden"
    pass "golden $case_name: rewritten"
  else
    check "golden $case_name" diff -u "$golden" "$out.golden"
  fi
done

# --- cluster: CRD fixtures and namespaces --------------------------------------
section "test bed: CRD fixtures, namespaces"
CLUSTER=1
if ! kubectl version --request-timeout=10s >"$WORK/version.log" 2>&1; then
  fail "test bed reachable (KUBECONFIG=${KUBECONFIG:-unset})"
  sed 's/^/    /' "$WORK/version.log"
  CLUSTER=0
fi
if ((CLUSTER)); then
  check "apply CRD fixtures (tests/module/crds/)" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$HERE/crds/"
  check "CRD fixtures Established" \
    kubectl wait --for condition=Established --timeout=60s \
    crd/prometheusrules.monitoring.coreos.com crd/podmonitors.monitoring.coreos.com \
    crd/verticalpodautoscalers.autoscaling.k8s.io crd/grafanadashboarddefinitions.deckhouse.io
  # The module's Namespace (as rendered) for real, and the namespaces that
  # other objects of the matrix live in.
  "${TOOL[@]}" split "$WORK/render/defaults.yaml" "$WORK/split-defaults"
  {
    cat "$WORK"/split-defaults/*-Namespace-_-d8-pod-reloader.yaml
    for ns in d8-monitoring shop billing pod-reloader-rbac; do
      printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns"
    done
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: pod-reloader-pss\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/enforce-version: latest\n'
  } >"$WORK/namespaces.yaml"
  check "namespaces d8-pod-reloader, d8-monitoring, shop, billing, pod-reloader-rbac, pod-reloader-pss" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/namespaces.yaml"
fi

# --- 4. kubeconform -------------------------------------------------------------
section "kubeconform -strict"
gen_schemas() { # gen_schemas DIR: JSON schemas of every served kind, CRD fixtures included
  local s try missing
  for try in $(seq 1 15); do # a CRD's schema is published shortly after it is Established
    kubectl get --raw /openapi/v2 >"$WORK/openapi-v2.json"
    "${TOOL[@]}" schemas "$WORK/openapi-v2.json" "$1"
    missing=""
    for s in monitoring.coreos.com/v1/prometheusrule monitoring.coreos.com/v1/podmonitor \
      autoscaling.k8s.io/v1/verticalpodautoscaler deckhouse.io/v1/grafanadashboarddefinition; do
      [[ -f $1/$s.json ]] || missing+=" $s"
    done
    [[ -z $missing ]] && return 0
    sleep 2
  done
  echo "no schema for$missing: CRD fixture not published"
  return 1
}
SCHEMAS=""
if ((CLUSTER)); then
  server=$(kubectl version -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
  crd_hash=$(cat "$HERE"/crds/*.yaml "$HERE/tool.py" | sha256sum | cut -c1-12)
  SCHEMAS=$CACHE/kubeconform-schemas/$server-$crd_hash
  if [[ ! -f $SCHEMAS/.complete ]]; then
    rm -rf "$SCHEMAS"
    mkdir -p "$SCHEMAS"
    if gen_schemas "$SCHEMAS" >"$WORK/schemas.log" 2>&1; then
      touch "$SCHEMAS/.complete"
      pass "JSON schemas generated from the test bed's /openapi/v2 ($(tail -n 1 "$WORK/schemas.log"))"
    else
      fail "JSON schemas generated from the test bed's /openapi/v2"
      sed 's/^/    /' "$WORK/schemas.log"
      SCHEMAS=""
    fi
  else
    pass "JSON schemas cached in $SCHEMAS"
  fi
else
  fail "kubeconform: no schemas without the test bed"
fi
if [[ -n $SCHEMAS ]]; then
  for case_name in "${CASES[@]}"; do
    check "kubeconform $case_name" kubeconform -strict -summary -verbose \
      -schema-location "$SCHEMAS/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json" \
      "$WORK/render/$case_name.yaml"
  done
  # kubeconform must catch what it is there for: an unknown field.
  sed 's/^  revisionHistoryLimit: 2$/  revisionHistoryLimit: 2\n  unknownField: 1/' "$WORK/render/defaults.yaml" >"$WORK/broken.yaml"
  expect_fail "kubeconform rejects an unknown field in a Deployment (self-check)" "additional properties" \
    kubeconform -strict -schema-location "$SCHEMAS/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json" "$WORK/broken.yaml"
  sed 's/^      honorLabels: true$/      honourLabels: true/' "$WORK/render/defaults.yaml" >"$WORK/broken-crd.yaml"
  expect_fail "kubeconform rejects an unknown field in a PodMonitor (self-check)" "additional properties" \
    kubeconform -strict -schema-location "$SCHEMAS/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json" "$WORK/broken-crd.yaml"
fi

# --- 5. server-side dry-run -----------------------------------------------------
section "kubectl apply --server-side --dry-run=server"
if ((CLUSTER)); then
  for case_name in "${CASES[@]}"; do
    check "dry-run $case_name" kubectl apply --server-side --dry-run=server --force-conflicts \
      --field-manager="$FIELD_MANAGER" -f "$WORK/render/$case_name.yaml"
  done
  # The dry-run must catch an unknown field in a custom resource too (field
  # validation is strict), so the CRD fixtures really check the chart.
  if [[ -f $WORK/broken-crd.yaml ]]; then
    expect_fail "dry-run rejects an unknown field in a PodMonitor (self-check)" "field not declared in schema" \
      kubectl apply --server-side --dry-run=server --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/broken-crd.yaml"
  fi
  # The controller's pod under the "restricted" Pod Security Standard
  # (priority class and service account left out: they are not part of it
  # and do not exist on the test bed).
  for case_name in defaults full; do
    "$PY" - "$WORK/render/$case_name.yaml" >"$WORK/pod-$case_name.yaml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        spec = d["spec"]["template"]["spec"]
        spec.pop("priorityClassName", None)
        spec.pop("serviceAccountName", None)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "pod-reloader-pss-check", "namespace": "pod-reloader-pss"},
               "spec": spec}
        yaml.safe_dump(pod, sys.stdout)
EOF
    check "pod of $case_name passes the restricted Pod Security Standard" \
      kubectl create --dry-run=server -f "$WORK/pod-$case_name.yaml"
  done
fi

# --- 5b. the controller accepts every rendered config ---------------------------
section "the controller accepts every rendered config"
# The controller binary built by `cargo test`/`cargo build`, if any (CI keeps
# cargo's target directory outside the clone, in CARGO_TARGET_DIR).
CONTROLLER_BIN=""
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $target_dir == /* ]] || target_dir=$ROOT/$target_dir
for b in "$target_dir/debug/pod-reloader" "$target_dir/release/pod-reloader"; do
  [[ -x $b ]] && { CONTROLLER_BIN=$b; break; }
done
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() { # wait_ready PORT PID: /readyz answers 200 within 30 s
  local i
  for i in $(seq 1 60); do
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}
# config_accepted CASE: the controller starts with the config.yaml rendered
# for CASE (admin credentials; the alert URL file and the record key file
# pointed at temporary copies of the rendered Secrets) and becomes ready.
config_accepted() {
  local case_name=$1 dir=$WORK/accept-$1 port pid rc=0
  mkdir -p "$dir"
  "$PY" - "$WORK/render/$case_name.yaml" "$dir" <<'EOF' || return 1
import base64, os, sys, yaml
cfg = url = key = None
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pod-reloader-config":
        cfg = yaml.safe_load(d["data"]["config.yaml"])
    if d and d["kind"] == "Secret" and d["metadata"]["name"] == "pod-reloader-alert":
        url = base64.b64decode(d["data"]["url"]).decode()
    if d and d["kind"] == "Secret" and d["metadata"]["name"] == "pod-reloader-record-key":
        key = base64.b64decode(d["data"]["key"])
    if d and d["kind"] == "Deployment":
        # alerting.webhook.urlSecretRef: the operator's Secret is mounted,
        # not rendered; a stand-in URL plays its content.
        for v in d["spec"]["template"]["spec"].get("volumes", []):
            if v["name"] == "alert" and v["secret"]["secretName"] != "pod-reloader-alert" and url is None:
                url = "https://alerts.example.invalid/hook"
if key is not None:
    # The rendered record key, as the controller reads it from the mounted Secret.
    open(os.path.join(sys.argv[2], "record-key"), "wb").write(key)
    cfg["recordKeyFile"] = os.path.join(sys.argv[2], "record-key")
if url is not None:
    open(os.path.join(sys.argv[2], "url"), "w").write(url)
    cfg["alerting"]["webhookUrlFile"] = os.path.join(sys.argv[2], "url")
yaml.safe_dump(cfg, open(os.path.join(sys.argv[2], "config.yaml"), "w"))
EOF
  port=$(free_port)
  POD_NAME=accept-$case_name POD_NAMESPACE=d8-pod-reloader \
    "$CONTROLLER_BIN" --config "$dir/config.yaml" --listen-address "127.0.0.1:$port" >"$dir/log" 2>&1 &
  pid=$!
  wait_ready "$port" "$pid" || rc=1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  ((rc == 0)) || { tail -n 20 "$dir/log"; return 1; }
}
if [[ -z $CONTROLLER_BIN ]]; then
  SKIPPED=$((SKIPPED + 1))
  echo "SKIP the controller accepts every rendered config ($target_dir/*/pod-reloader not built)"
elif ((CLUSTER)); then
  for case_name in "${CASES[@]}"; do
    check "controller starts and gets ready with the config of $case_name" config_accepted "$case_name"
  done
  # Whatever the openapi schema admits must be accepted by the controller:
  # every positive configValues case of openapi/openapi-case-tests.yaml is
  # rendered and its config.yaml started.
  "${TOOL[@]}" positive-cases "$WORK/positive"
  accepted=0 rejected=()
  for file in "$WORK"/positive/*.yaml; do
    case_name=$(basename "$file" .yaml)
    if "${TOOL[@]}" values "$file" >"$WORK/render/$case_name.values.yaml" 2>"$WORK/render/$case_name.err" &&
      helm template pod-reloader "$ROOT" --namespace d8-pod-reloader -f "$WORK/render/$case_name.values.yaml" \
        >"$WORK/render/$case_name.yaml" 2>>"$WORK/render/$case_name.err" &&
      config_accepted "$case_name" >>"$WORK/render/$case_name.err" 2>&1; then
      accepted=$((accepted + 1))
    else
      rejected+=("$case_name: $(grep -v '^$' "$WORK/render/$case_name.err" | tail -n 3 | tr '\n' ' ') settings: $(cat "$file" | tr '\n' ' ')")
    fi
  done
  if ((${#rejected[@]} == 0)); then
    pass "controller accepts the config of every positive openapi case ($accepted cases)"
  else
    fail "controller accepts the config of every positive openapi case (${#rejected[@]} of $((accepted + ${#rejected[@]})) rejected)"
    printf '    %s\n' "${rejected[@]}"
  fi
fi

# --- 6. RBAC on the test bed ----------------------------------------------------
section "RBAC of the controller on the test bed"
can() { # can VERB RESOURCE [ARGS...]: the controller's SA may
  local out
  out=$(kubectl auth can-i --as="$SA_USER" "$@" 2>/dev/null || true)
  [[ $out == yes ]] || { echo "can-i $*: $out"; return 1; }
}
cannot() { # cannot VERB RESOURCE [ARGS...]: the controller's SA may not
  local out
  out=$(kubectl auth can-i --as="$SA_USER" "$@" 2>/dev/null || true)
  [[ $out == no* ]] || { echo "can-i $*: $out"; return 1; }
}
rbac_objects() { # rbac_objects CASE OUT: the RBAC objects of a render
  "$PY" - "$WORK/render/$1.yaml" >"$2" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1]))
        if d and d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
        and not d["metadata"]["name"].startswith("access-to-")]
yaml.safe_dump_all(docs, sys.stdout)
EOF
}
# controller_under_rbac CASE NS: run the controller binary (built by `cargo
# test`/`cargo build`) with the ServiceAccount's token, the rendered RBAC of
# CASE and the config.yaml rendered for CASE; change a ConfigMap in NS that
# an annotated Deployment uses; the Deployment must be rolled and the
# controller must log no "forbidden". Skipped when the binary is not built.
controller_under_rbac() {
  local case_name=$1 ns=$2 bin=$CONTROLLER_BIN
  if [[ -z $bin ]]; then
    SKIPPED=$((SKIPPED + 1))
    echo "SKIP $case_name: the controller under its rendered RBAC ($target_dir/*/pod-reloader not built)"
    return 0
  fi
  local dir=$WORK/controller-$case_name
  mkdir -p "$dir"
  # The config file exactly as rendered into the ConfigMap.
  "$PY" - "$WORK/render/$case_name.yaml" >"$dir/config.yaml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pod-reloader-config":
        sys.stdout.write(d["data"]["config.yaml"])
EOF
  # A kubeconfig with the ServiceAccount's token and nothing else.
  local token
  token=$(kubectl -n d8-pod-reloader create token pod-reloader --duration=10m)
  kubectl config view --raw --minify -o json | "$PY" -c '
import json, sys, yaml
cfg = json.load(sys.stdin)
cluster = cfg["clusters"][0]
user = {"name": "pod-reloader", "user": {"token": sys.argv[1]}}
out = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user],
       "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "pod-reloader"}}],
       "current-context": "sa"}
yaml.safe_dump(out, sys.stdout)' "$token" >"$dir/kubeconfig"
  # Every workload kind the controller patches or recreates, each following
  # the ConfigMap through envFrom and annotated for auto reload; an Argo
  # Rollout too when the config has Rollouts on (the test bed serves the CRD).
  local argo
  argo=$("$PY" -c 'import sys, yaml; print("1" if (yaml.safe_load(open(sys.argv[1])) or {}).get("argoRollouts") else "")' "$dir/config.yaml")
  "$PY" - "$ns" "$argo" >"$dir/fixture.yaml" <<'EOF'
import sys, yaml
ns, argo = sys.argv[1], sys.argv[2] == "1"
pod = {"metadata": {"labels": {"app": "rbac-follower"}},
       "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
                                "envFrom": [{"configMapRef": {"name": "rbac-config"}}]}]}}
job_pod = {"spec": {**pod["spec"], "restartPolicy": "Never"}}
meta = lambda: {"name": "rbac-follower", "namespace": ns, "annotations": {"reloader.stakater.com/auto": "true"}}
sel = {"matchLabels": {"app": "rbac-follower"}}
docs = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-config", "namespace": ns}, "data": {"key": "one"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(), "spec": {"replicas": 0, "selector": sel, "template": pod}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(),
     "spec": {"replicas": 0, "serviceName": "rbac-follower", "selector": sel, "template": pod}},
    {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(), "spec": {"selector": sel, "template": pod}},
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(),
     "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": job_pod}}}},
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(), "spec": {"suspend": True, "template": job_pod}},
]
if argo:
    docs.append({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": meta(),
                 "spec": {"replicas": 0, "selector": sel, "template": pod}})
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
EOF
  kubectl delete --ignore-not-found -f "$dir/fixture.yaml" >/dev/null 2>&1 || true
  if ! kubectl apply --server-side --field-manager="$FIELD_MANAGER" -f "$dir/fixture.yaml" >"$dir/fixture.log" 2>&1; then
    fail "$case_name: controller fixture"; sed 's/^/    /' "$dir/fixture.log"; return 0
  fi
  local port pid i
  port=$(free_port)
  KUBECONFIG=$dir/kubeconfig POD_NAME=pod-reloader-test POD_NAMESPACE=d8-pod-reloader \
    "$bin" --config "$dir/config.yaml" --listen-address "127.0.0.1:$port" >"$dir/controller.log" 2>&1 &
  pid=$!
  if wait_ready "$port" "$pid"; then
    pass "$case_name: the controller, with the rendered config and only its ServiceAccount, becomes ready (/readyz)"
    kubectl -n "$ns" patch configmap rbac-config --type merge -p '{"data":{"key":"two"}}' >/dev/null
    local kind path pending="" kinds="deployment statefulset daemonset cronjob job"
    [[ -n $argo ]] && kinds+=" rollout.argoproj.io"
    for kind in $kinds; do
      path='{.spec.template.spec.containers[0].env[*].name}'
      [[ $kind == cronjob ]] && path='{.spec.jobTemplate.spec.template.spec.containers[0].env[*].name}'
      for i in $(seq 1 60); do
        kubectl -n "$ns" get "$kind" rbac-follower -o jsonpath="$path" 2>/dev/null |
          grep -q 'STAKATER_RBAC_CONFIG_CONFIGMAP' && continue 2
        sleep 0.5
      done
      pending+=" $kind"
    done
    if [[ -z $pending ]]; then
      pass "$case_name: a ConfigMap change in $ns rolls every kind ($kinds) under the rendered RBAC"
    else
      fail "$case_name: a ConfigMap change in $ns rolls every kind ($kinds) under the rendered RBAC (not rolled:$pending)"
      tail -n 30 "$dir/controller.log" | sed 's/^/    /'
    fi
  else
    fail "$case_name: the controller, with the rendered config and only its ServiceAccount, becomes ready (/readyz)"
    tail -n 30 "$dir/controller.log" | sed 's/^/    /'
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if grep -qi 'forbidden' "$dir/controller.log"; then
    fail "$case_name: the controller logged no 403 Forbidden"
    grep -i 'forbidden' "$dir/controller.log" | head -n 10 | sed 's/^/    /'
  else
    pass "$case_name: the controller logged no 403 Forbidden"
  fi
  kubectl delete --ignore-not-found --wait=false -f "$dir/fixture.yaml" >/dev/null 2>&1 || true
}
if ((CLUSTER)); then
  # Cluster-wide mode (defaults).
  rbac_objects defaults "$WORK/rbac-defaults.yaml"
  RBAC_APPLIED+=("$WORK/rbac-defaults.yaml")
  check "apply the RBAC of defaults for real" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/rbac-defaults.yaml"
  check "defaults: may list/watch ConfigMaps and Secrets in all namespaces" \
    bash -c "$(declare -f can); SA_USER=$SA_USER; can list configmaps -A && can watch configmaps -A && can list secrets -A && can watch secrets -A"
  check "defaults: may get/list/watch/patch Deployments, DaemonSets, StatefulSets" \
    bash -c "$(declare -f can); SA_USER=$SA_USER; for r in deployments daemonsets statefulsets; do for v in get list watch patch; do can \$v \$r.apps -n shop || exit 1; done; done"
  check "defaults: may read/patch CronJobs, recreate and record on Jobs, create Events" \
    bash -c "$(declare -f can); SA_USER=$SA_USER; can list cronjobs.batch -A && can patch cronjobs.batch -n shop && can get jobs.batch -n shop && can create jobs.batch -n shop && can delete jobs.batch -n shop && can patch jobs.batch -n shop && can create events.events.k8s.io -n shop && can patch events.events.k8s.io -n shop"
  # Trimmed to what the controller calls: no get of a single ConfigMap or
  # Secret (reflectors list and watch), no core Events (kube's Recorder
  # writes events.k8s.io), no Namespaces without a namespaceSelector.
  check "defaults: may list and delete Pods (OnDelete StatefulSets' restarts), nothing else on them" \
    bash -c "$(declare -f can cannot); SA_USER=$SA_USER; can list pods -A && can delete pods -n shop && cannot get pods -n shop && cannot watch pods -n shop && cannot patch pods -n shop && cannot create pods -n shop"
  check "defaults: may not get a ConfigMap or Secret by name, nor create core Events" \
    bash -c "$(declare -f cannot); SA_USER=$SA_USER; cannot get secrets -n shop && cannot get configmaps -n shop && cannot create events -n shop"
  check "defaults: may not delete/update/create Deployments, write Secrets, read Namespaces, Leases or Rollouts" \
    bash -c "$(declare -f cannot); SA_USER=$SA_USER; cannot delete deployments.apps -n shop && cannot update deployments.apps -n shop && cannot create deployments.apps -n shop && cannot create secrets -n shop && cannot update configmaps -n shop && cannot list namespaces && cannot get leases.coordination.k8s.io -n d8-pod-reloader && cannot patch rollouts.argoproj.io -n shop && cannot delete cronjobs.batch -n shop && cannot create cronjobs.batch -n shop && cannot update jobs.batch -n shop"
  # Real requests under the controller's identity: a patch is allowed, a
  # delete answers 403 Forbidden.
  for ns in pod-reloader-rbac shop; do
    cat <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: rbac-victim
  namespace: $ns
spec:
  replicas: 0
  selector:
    matchLabels: {app: rbac-victim}
  template:
    metadata:
      labels: {app: rbac-victim}
    spec:
      containers:
        - name: app
          image: registry.example.com/app:1
EOF
  done >"$WORK/victim.yaml"
  check "create Deployments to act on (pod-reloader-rbac, shop)" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/victim.yaml"
  check "as the controller: patch the Deployment's pod template (allowed)" \
    kubectl --as="$SA_USER" -n pod-reloader-rbac patch deployment rbac-victim --type merge \
    -p '{"spec":{"template":{"metadata":{"annotations":{"reloader.stakater.com/last-reloaded-from":"test"}}}}}'
  expect_fail "as the controller: delete the Deployment -> 403 Forbidden" "Forbidden" \
    kubectl --as="$SA_USER" -n pod-reloader-rbac delete deployment rbac-victim --wait=false
  controller_under_rbac defaults pod-reloader-rbac
  kubectl delete --ignore-not-found -f "${RBAC_APPLIED[0]}" >/dev/null 2>&1 || true
  RBAC_APPLIED=()

  # Cluster-wide with leader election (ha): the Lease rules carry the
  # Lease's name; create stays unnamed (RBAC cannot restrict it by name).
  rbac_objects ha "$WORK/rbac-ha.yaml"
  RBAC_APPLIED+=("$WORK/rbac-ha.yaml")
  check "apply the RBAC of ha for real" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/rbac-ha.yaml"
  check "ha: may get/patch the Lease pod-reloader and create Leases in d8-pod-reloader" \
    bash -c "$(declare -f can); SA_USER=$SA_USER; can get leases.coordination.k8s.io/pod-reloader -n d8-pod-reloader && can patch leases.coordination.k8s.io/pod-reloader -n d8-pod-reloader && can create leases.coordination.k8s.io -n d8-pod-reloader"
  check "ha: may not touch other Leases, update or delete its own, nor use Leases elsewhere" \
    bash -c "$(declare -f cannot); SA_USER=$SA_USER; cannot get leases.coordination.k8s.io/other -n d8-pod-reloader && cannot patch leases.coordination.k8s.io/other -n d8-pod-reloader && cannot update leases.coordination.k8s.io/pod-reloader -n d8-pod-reloader && cannot delete leases.coordination.k8s.io/pod-reloader -n d8-pod-reloader && cannot list leases.coordination.k8s.io -n d8-pod-reloader && cannot create leases.coordination.k8s.io -n shop"
  kubectl -n d8-pod-reloader delete lease pod-reloader --ignore-not-found >/dev/null 2>&1 || true
  controller_under_rbac ha pod-reloader-rbac
  if kubectl -n d8-pod-reloader get lease pod-reloader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null | grep -q .; then
    pass "ha: the controller took the Lease d8-pod-reloader/pod-reloader under the rendered RBAC"
  else
    fail "ha: the controller took the Lease d8-pod-reloader/pod-reloader under the rendered RBAC"
  fi
  kubectl -n d8-pod-reloader delete lease pod-reloader --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete --ignore-not-found -f "${RBAC_APPLIED[0]}" >/dev/null 2>&1 || true
  RBAC_APPLIED=()

  # Scoped mode (namespaces: shop, billing).
  rbac_objects namespaces "$WORK/rbac-namespaces.yaml"
  RBAC_APPLIED+=("$WORK/rbac-namespaces.yaml")
  check "apply the RBAC of namespaces (scoped) for real" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$WORK/rbac-namespaces.yaml"
  check "scoped: may read Secrets and patch Deployments, CronJobs and Rollouts in shop and billing" \
    bash -c "$(declare -f can); SA_USER=$SA_USER; for ns in shop billing; do can list secrets -n \$ns && can watch configmaps -n \$ns && can patch deployments.apps -n \$ns && can patch cronjobs.batch -n \$ns && can get rollouts.argoproj.io -n \$ns && can patch rollouts.argoproj.io -n \$ns || exit 1; done"
  check "scoped: Rollouts are patched, never updated" \
    bash -c "$(declare -f cannot); SA_USER=$SA_USER; for ns in shop billing; do cannot update rollouts.argoproj.io -n \$ns || exit 1; done"
  check "scoped: may not read Secrets or patch Deployments outside the list, nor list cluster-wide" \
    bash -c "$(declare -f cannot); SA_USER=$SA_USER; cannot list secrets -n default && cannot get secrets -n pod-reloader-rbac && cannot patch deployments.apps -n pod-reloader-rbac && cannot list secrets -A && cannot list configmaps -A"
  expect_fail "scoped, as the controller: read Secrets outside the list -> 403 Forbidden" "Forbidden" \
    kubectl --as="$SA_USER" -n pod-reloader-rbac get secrets
  check "scoped, as the controller: patch a Deployment in shop (allowed)" \
    kubectl --as="$SA_USER" -n shop patch deployment rbac-victim --type merge \
    -p '{"spec":{"template":{"metadata":{"annotations":{"reloader.stakater.com/last-reloaded-from":"test"}}}}}'
  expect_fail "scoped, as the controller: delete a Deployment in shop -> 403 Forbidden" "Forbidden" \
    kubectl --as="$SA_USER" -n shop delete deployment rbac-victim --wait=false
  controller_under_rbac namespaces shop
fi

# --- 7. promtool ----------------------------------------------------------------
section "promtool"
mkdir -p "$WORK/promtool"
# Module rule files are bare lists of groups; promtool wants {groups: [...]}.
# __SCRAPE_INTERVAL__ placeholders are substituted as the chart does (30s).
for rules in "$ROOT"/monitoring/prometheus-rules/*.yaml; do
  "$PY" - "$rules" >"$WORK/promtool/$(basename "$rules")" <<'EOF'
import sys, yaml
text = open(sys.argv[1]).read().replace("__SCRAPE_INTERVAL_X_4__", "120s").replace("__SCRAPE_INTERVAL__", "30s")
yaml.safe_dump({"groups": yaml.safe_load(text)}, sys.stdout, sort_keys=False)
EOF
done
check "promtool check rules" promtool check rules "$WORK"/promtool/*.yaml
cp "$HERE"/promtool/*.yaml "$WORK/promtool/"
for t in "$HERE"/promtool/*_test.yaml; do
  check "promtool test rules $(basename "$t")" bash -c "cd '$WORK/promtool' && promtool test rules '$(basename "$t")'"
done

# --- 8. dmt ---------------------------------------------------------------------
section "dmt lint (Deckhouse's module linter)"
# Deckhouse's own linter, kept beside the repository (github.com/deckhouse/dmt
# is not served by the Go module proxy, so `make tools` cannot build it): its
# path is ../shared/tools/dmt/dmt from the repository root (DMT overrides).
# It lints the module directory itself, where .dmtlint.yaml's global settings
# apply. Any error fails; the warnings are listed under the PASS line.
DMT=${DMT:-$ROOT/../shared/tools/dmt/dmt}
if [[ ! -x $DMT ]]; then
  skip "dmt lint: ${DMT#"$ROOT/"} is absent (Deckhouse's linter is not part of this repository)"
else
  # dmt shows a finding's level only by colour, so colours stay on.
  if env -u NO_COLOR "$DMT" lint "$ROOT" >"$WORK/dmt.log" 2>&1; then rc=0; else rc=$?; fi
  if "${TOOL[@]}" dmt-report "$WORK/dmt.log" "$rc" >"$WORK/dmt.report" 2>&1; then
    pass "dmt lint: $(head -n 1 "$WORK/dmt.report")"
  else
    fail "dmt lint: $(head -n 1 "$WORK/dmt.report")"
  fi
  tail -n +2 "$WORK/dmt.report"
fi

summary
((FAILED == 0))
