# shellcheck shell=bash
# The node part of `make demo NODE=1`, sourced by scripts/demo.sh (which
# defines step, now_ms and starts the controller between the two functions).
#
#   demo_node_apply   demo/sample.yaml with the sample app's image, on the node;
#                     waits for its pod and shows its log line
#   demo_node_edit    edits the ConfigMap and follows the pods: old pod
#                     terminating, new pod Running, its log line with the new
#                     value, each with the seconds since the edit

DEMO_NS="pod-reloader-demo"

demo_secs() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100)); }

# demo_pods: one line per pod of deployment/web: name, IP, phase or Terminating, node
demo_pods() {
  kubectl -n "$DEMO_NS" get pods -l app=web --request-timeout=10s \
    -o jsonpath='{range .items[*]}{.metadata.name}|{.status.podIP}|{.status.phase}|{.metadata.deletionTimestamp}|{.spec.nodeName}{"\n"}{end}' 2>/dev/null |
    awk -F'|' 'NF >= 5 {printf "%s (%s, %s, node %s)\n", $1, ($2 == "" ? "no IP yet" : $2), ($4 != "" ? "Terminating" : $3), ($5 == "" ? "-" : $5)}'
}

demo_log_line() { # demo_log_line POD: the sample app's GREETING line
  kubectl -n "$DEMO_NS" logs "$1" --request-timeout=10s 2>/dev/null | grep -m1 'GREETING=' || true
}

demo_node_apply() {
  step "Node: $(kubectl get node testbed-node -o jsonpath='{.metadata.name}: Ready={.status.conditions[?(@.type=="Ready")].status}, {.status.nodeInfo.containerRuntimeVersion}, kubelet {.status.nodeInfo.kubeletVersion}, InternalIP {.status.addresses[0].address}')"
  step "Applying the sample workload (demo/sample.yaml, its pod running testbed/sample-app, which prints GREETING)"
  kubectl delete namespace "$DEMO_NS" --ignore-not-found --wait=true >/dev/null
  local t0; t0=$(now_ms)
  sed -e 's|^\( *\)image: registry.invalid/sample-app:1$|\1image: testbed.local/sample-app:1\n\1args: [GREETING]|' demo/sample.yaml |
    kubectl apply -f -
  kubectl -n "$DEMO_NS" rollout status deployment/web --timeout=60s >/dev/null
  local pod; pod=$(kubectl -n "$DEMO_NS" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
  until [ -n "$(demo_log_line "$pod")" ]; do sleep 0.2; done
  echo "  pod Running after $(demo_secs "$t0"):"
  demo_pods | sed 's/^/    /'
  echo "  its log: $(demo_log_line "$pod")"
}

demo_node_edit() {
  local old; old=$(kubectl -n "$DEMO_NS" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
  step "Editing the ConfigMap: GREETING hello -> bonjour (old pod: $old)"
  local t0; t0=$(now_ms)
  kubectl -n "$DEMO_NS" patch configmap greeting --type merge -p '{"data":{"GREETING":"bonjour"}}'
  step "Following the pods (seconds after the edit)"
  local prev="" cur new="" line="" rs_seen=0 term_seen=0 run_seen=0 gone_seen=0
  while :; do
    if [ $(( $(now_ms) - t0 )) -gt 60000 ]; then
      echo "  nothing more within 60 s"; demo_pods; tail -n 20 .testbed/logs/demo-controller.log; return 1
    fi
    if [ "$rs_seen" = 0 ] && [ "$(kubectl -n "$DEMO_NS" get rs -l app=web -o name | wc -l)" -ge 2 ]; then
      rs_seen=1; printf '  +%-7s pod-reloader patched the Deployment: a new ReplicaSet\n' "$(demo_secs "$t0")"
    fi
    cur=$(demo_pods)
    if [ "$cur" != "$prev" ]; then
      printf '  +%-7s %s\n' "$(demo_secs "$t0")" "$(tr '\n' ';' <<<"$cur" | sed 's/;$//; s/;/   |   /g')"
      prev=$cur
    fi
    if [ "$term_seen" = 0 ] && grep -q "^$old .*Terminating" <<<"$cur"; then
      term_seen=1; printf '  +%-7s old pod %s terminating\n' "$(demo_secs "$t0")" "$old"
    fi
    if [ -z "$new" ]; then
      new=$(awk -v old="$old" '$1 != old && /Running/ {print $1; exit}' <<<"$cur")
      [ -n "$new" ] && { run_seen=1; printf '  +%-7s new pod %s Running\n' "$(demo_secs "$t0")" "$new"; }
    fi
    if [ -n "$new" ] && [ -z "$line" ]; then
      line=$(demo_log_line "$new")
      [ -n "$line" ] && printf '  +%-7s new pod log: %s\n' "$(demo_secs "$t0")" "$line"
    fi
    if [ "$gone_seen" = 0 ] && ! grep -q "^$old " <<<"$cur"; then
      gone_seen=1; printf '  +%-7s old pod %s gone\n' "$(demo_secs "$t0")" "$old"
    fi
    [ "$run_seen" = 1 ] && [ -n "$line" ] && [ "$gone_seen" = 1 ] && break
    sleep 0.1
  done
  step "After: pods and ReplicaSets of deployment/web"
  kubectl -n "$DEMO_NS" get pods -l app=web -o wide
  kubectl -n "$DEMO_NS" get rs -l app=web
  step "Inside the new pod (kubectl exec $new -- /sample-app --once GREETING)"
  kubectl -n "$DEMO_NS" exec "$new" -- /sample-app --once GREETING | sed 's/^/  /'
  step "The Event on the Deployment"
  kubectl -n "$DEMO_NS" get events --field-selector involvedObject.name=web,reason=Reloaded -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
  step "The controller's log line"
  grep -m1 '"reloaded"\|reloaded' .testbed/logs/demo-controller.log | sed 's/^/  /'
}
