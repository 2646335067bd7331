#!/usr/bin/env bash
# Local Kubernetes control plane for pod-reloader's tests: etcd,
# kube-apiserver and kube-controller-manager as plain processes on 127.0.0.1,
# built from source by testbed/build-tools.sh. Without a node pods stay
# Pending, but Deployments, ReplicaSets, RBAC, service accounts, tokens,
# garbage collection and CRDs all work. With NODE=1, `up` also starts a real
# node (containerd, runc, kubelet, kube-scheduler; testbed/node/node.sh).
#
#   testbed/testbed.sh up               start (idempotent), wait until ready
#   NODE=1 testbed/testbed.sh up        the same plus the node, until it is Ready
#   testbed/testbed.sh down             stop everything (the node too) and delete .testbed/
#   testbed/testbed.sh status           show processes and the apiserver URL
#   testbed/testbed.sh stop-apiserver   stop only kube-apiserver
#   testbed/testbed.sh start-apiserver  start it again (same port, certs, flags)
#
# After `up`:  . .testbed/env   (exports KUBECONFIG and puts kubectl, helm,
# kubeconform, etcd on PATH). State lives in .testbed/: pki/, etcd/ (data),
# logs/<name>.log, pids/<name>.pid, cmd/<name> (exact command lines),
# ports.env, kubeconfig, env.
#
# Opt-in settings, read by the `up` that sets the test bed up (a running one
# keeps the flags it was started with):
#   TESTBED_STATE_DIR=/path/.testbed-x  keep the state there instead of .testbed/
#                       (its name must start with .testbed), e.g. a second test
#                       bed beside the one the tests use
#   TESTBED_AUDIT=1     kube-apiserver writes an audit log to logs/audit.log
#                       (JSON lines), with the policy in TESTBED_AUDIT_POLICY or,
#                       without it, every request at level Metadata
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
if [ -n "${TESTBED_STATE_DIR:-}" ]; then
  [[ $(basename "$TESTBED_STATE_DIR") == .testbed* ]] || die "TESTBED_STATE_DIR must name a directory called .testbed*"
  mkdir -p "$(dirname "$TESTBED_STATE_DIR")"
  TESTBED_DIR=$(cd "$(dirname "$TESTBED_STATE_DIR")" && pwd)/$(basename "$TESTBED_STATE_DIR")
fi

PKI=$TESTBED_DIR/pki
LOGS=$TESTBED_DIR/logs
PIDS=$TESTBED_DIR/pids
CMDS=$TESTBED_DIR/cmd
KUBECONFIG_FILE=$TESTBED_DIR/kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
READY_TIMEOUT=${TESTBED_READY_TIMEOUT:-60}
SERVICE_CIDR=10.0.0.0/24

# The node of this test bed (testbed/node/node.sh), told which state directory that is.
node_sh() { NODE_TESTBED_DIR=$TESTBED_DIR "$TESTBED_LIB_DIR/node/node.sh" "$@"; }

# ---------------------------------------------------------------- processes

pid_of() { # prints the pid of a running component, or fails
  local name=$1 pid
  pid=$(pid_in "$PIDS/$name.pid") || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  # Guard against pid reuse: the process must be our binary with our state dir.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"/$name "* && $cmdline == *"$TESTBED_DIR"* ]] || return 1
  echo "$pid"
}

is_running() { pid_of "$1" >/dev/null; }

# start_component, stop_pids: testbed/lib.sh.

stop_components() { # stop_components <name...>: TERM, then KILL after a grace period
  local name pid i api="" api_stop=""
  local -a pids=() others=()
  for name in "$@"; do
    pid=$(pid_of "$name") || continue
    pids+=("$pid")
    if [ "$name" = kube-apiserver ]; then api=$pid; else others+=("$pid"); fi
  done
  # kube-apiserver stops listening within milliseconds of TERM but then
  # waits (up to a minute) for open watch connections to end; nothing here
  # needs that, so it gets 1 s and its KILL is not worth a log line. The
  # others get 5 s, at the same time.
  if [ -n "$api" ]; then
    STOP_QUIET=1 stop_pids 10 "$api" &
    api_stop=$!
  fi
  stop_pids 50 "${others[@]}" || die "a test bed component is still running after KILL"
  if [ -n "$api_stop" ]; then
    wait "$api_stop" || die "kube-apiserver (pid $api) is still running after KILL"
  fi
  # They were started with setsid, so init reaps them; on `down` give that a
  # moment so that `ps` right after it shows nothing.
  [ "${REAP_WAIT:-0}" = 1 ] && for pid in "${pids[@]}"; do
    for (( i = 0; i < 30; i++ )); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

fail() { # fail <message> <component logs to show...>
  local msg=$1; shift
  show_logs "$@"
  die "$msg (logs: $LOGS; clean up with 'testbed/testbed.sh down')"
}

# ---------------------------------------------------------------- health

load_ports() {
  [ -f "$TESTBED_DIR/ports.env" ] || return 1
  # shellcheck disable=SC1091
  . "$TESTBED_DIR/ports.env"
}

api_url() { echo "https://127.0.0.1:$APISERVER_PORT"; }

curl_api() { # curl_api <path>
  curl -sS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$(api_url)$1"
}

api_ready() { [ "$(curl_api /readyz 2>/dev/null)" = ok ]; }

etcd_healthy() {
  local out
  out=$(curl -s --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null) || return 1
  [[ $out == *'"health":"true"'* ]]
}

wait_for() { # wait_for <what> <timeout s> <component whose death aborts> <command...>
  local what=$1 timeout=$2 comp=$3; shift 3
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  while ! "$@"; do
    if [ -n "$comp" ] && ! is_running "$comp"; then
      fail "$comp exited while waiting for $what" "$comp"
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      fail "timed out after ${timeout}s waiting for $what" "${COMPONENTS[@]}"
    fi
    sleep 0.2
  done
}

kubectl_tb() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

default_sa_exists() { kubectl_tb -n default get serviceaccount default >/dev/null 2>&1; }

all_healthy() {
  load_ports 2>/dev/null || return 1
  local c
  for c in "${COMPONENTS[@]}"; do is_running "$c" || return 1; done
  api_ready
}

# ---------------------------------------------------------------- set-up

port_in_use() { # port_in_use <port> [ss state filter]: any socket on it (default), or e.g. listening
  local used
  used=$(ss -Htan ${2:+state "$2"} 2>/dev/null | awk -v c="${2:+3}" '{print $(c ? c : 4)}')
  grep -E "[:.]$1\$" >/dev/null <<<"$used"
}

pick_port() { # a free 127.0.0.1 TCP port in 20000-31999 (below the ephemeral range)
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    [[ " ${PICKED_PORTS:-} " == *" $p "* ]] && continue
    port_in_use "$p" && continue
    echo "$p"
    return 0
  done
  die "could not find a free TCP port"
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  local ossl=(openssl)
  (
    cd "$PKI"
    ec_key() { "${ossl[@]}" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec_key ca.key
    "${ossl[@]}" req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=pod-reloader-testbed-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out ca.crt 2>/dev/null
    issue() { # issue <name> <subject> <extendedKeyUsage> [subjectAltName]
      local name=$1 subj=$2 eku=$3 san=${4:-}
      ec_key "$name.key"
      "${ossl[@]}" req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
      {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
      } >"$name.ext"
      "${ossl[@]}" x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 365 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    }
    issue apiserver "/CN=kube-apiserver" serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:::1,IP:10.0.0.1"
    issue admin "/O=system:masters/CN=admin" clientAuth
    issue kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
    # The apiserver's identity towards kubelets (logs, exec) when a node runs.
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    # Service-account token signing key pair (RSA, as kubeadm uses).
    "${ossl[@]}" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    "${ossl[@]}" pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ca.srl
    chmod 600 ./*.key
  ) || die "generating certificates with openssl failed"
}

write_kubeconfig() { # write_kubeconfig <file> <user> <cert> <key>
  local file=$1 user=$2 cert=$3 key=$4
  : >"$file"
  chmod 600 "$file"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pod-reloader-testbed
  cluster:
    server: $(api_url)
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
contexts:
- name: $user@pod-reloader-testbed
  context:
    cluster: pod-reloader-testbed
    user: $user
    namespace: default
current-context: $user@pod-reloader-testbed
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$cert")
    client-key-data: $(base64 -w0 <"$key")
EOF
}

save_cmd() { # save_cmd <name> <argv...>: the exact command line, re-used by restarts
  local name=$1; shift
  local -a cmd=("$@")
  # `declare -p cmd` prints `declare -a cmd=(...)`; keep only the assignment.
  declare -p cmd | sed 's/^declare -a //' >"$CMDS/$name.tmp"
  mv "$CMDS/$name.tmp" "$CMDS/$name"
}

configure() { # first `up`: certificates, ports, kubeconfigs, command lines
  mkdir -p "$TESTBED_DIR" "$LOGS" "$PIDS" "$CMDS" "$TESTBED_DIR/etcd"
  chmod 700 "$TESTBED_DIR/etcd"
  gen_pki

  PICKED_PORTS=""
  ETCD_CLIENT_PORT=$(pick_port); PICKED_PORTS+=" $ETCD_CLIENT_PORT"
  ETCD_PEER_PORT=$(pick_port); PICKED_PORTS+=" $ETCD_PEER_PORT"
  APISERVER_PORT=$(pick_port); PICKED_PORTS+=" $APISERVER_PORT"
  KCM_PORT=$(pick_port)
  cat >"$TESTBED_DIR/ports.env" <<EOF
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
EOF

  write_kubeconfig "$KUBECONFIG_FILE" admin "$PKI/admin.crt" "$PKI/admin.key"
  write_kubeconfig "$TESTBED_DIR/kube-controller-manager.kubeconfig" system:kube-controller-manager \
    "$PKI/kube-controller-manager.crt" "$PKI/kube-controller-manager.key"

  local apiserver_extra=()
  if [ "${TESTBED_AUDIT:-0}" = 1 ]; then
    local policy=$TESTBED_DIR/audit-policy.yaml
    if [ -n "${TESTBED_AUDIT_POLICY:-}" ]; then
      cp "$TESTBED_AUDIT_POLICY" "$policy" || die "cannot read TESTBED_AUDIT_POLICY=$TESTBED_AUDIT_POLICY"
    else
      printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: [RequestReceived]' \
        'rules:' '- level: Metadata' >"$policy"
    fi
    apiserver_extra+=(--audit-policy-file="$policy" --audit-log-path="$LOGS/audit.log" --audit-log-format=json)
  fi

  local etcd_extra=()
  if "$BIN_DIR/etcd" --help 2>&1 | grep -- '--unsafe-no-fsync' >/dev/null; then etcd_extra+=(--unsafe-no-fsync=true); fi
  save_cmd etcd "$BIN_DIR/etcd" \
    --name=testbed \
    --data-dir="$TESTBED_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="testbed=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --log-level=warn \
    "${etcd_extra[@]}"

  # Admission plugins are the defaults (ServiceAccount included: pods get a
  # projected, TokenRequest-based token; `up` waits for the default SA).
  # The advertise address is loopback and the kubernetes Endpoints reconciler
  # is off, because Endpoints may not hold loopback IPs and nothing here needs
  # in-cluster access to the apiserver.
  save_cmd kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$PKI/apiserver-generated" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --enable-priority-and-fairness=true \
    --profiling=false \
    --v=1 \
    "${apiserver_extra[@]}"

  save_cmd kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$TESTBED_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$TESTBED_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$TESTBED_DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --cert-dir="$PKI/kube-controller-manager-generated" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --controllers='*' \
    --profiling=false \
    --v=1

  {
    echo "# Source me: . $TESTBED_DIR/env"
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
    echo "case \":\$PATH:\" in *\":$BIN_DIR:\"*) ;; *) export PATH=\"$BIN_DIR:\$PATH\" ;; esac"
    echo "export TESTBED_APISERVER_URL=$(api_url)"
  } >"$TESTBED_DIR/env"
}

check_ports_free() {
  local name=$1; shift
  local p
  for p in "$@"; do
    port_in_use "$p" listening && fail "port $p for $name is taken by another process; run 'testbed/testbed.sh down' and 'up' again" "$name"
  done
  return 0
}

apply_crds() {
  local files=() f
  for f in "$TESTBED_LIB_DIR"/crds/*.yaml; do [ -f "$f" ] && files+=(-f "$f"); done
  [ "${#files[@]}" -gt 0 ] || return 0
  local names
  names=$(kubectl_tb apply --server-side --force-conflicts --field-manager=testbed -o name "${files[@]}") ||
    die "kubectl apply of testbed/crds/*.yaml failed"
  names=$(grep '^customresourcedefinition' <<<"$names" || true)
  [ -z "$names" ] && return 0
  # shellcheck disable=SC2086
  kubectl_tb wait --for=condition=Established --timeout=30s $names >/dev/null ||
    die "CRDs from testbed/crds did not become Established"
}

cmd_up() {
  local t0; t0=$(now_ms)
  if all_healthy; then
    echo "test bed already running: $(api_url) (. $TESTBED_DIR/env)"
    if [ "${NODE:-0}" = 1 ]; then node_sh up; fi
    return 0
  fi
  local c
  for c in "${COMPONENTS[@]}"; do
    [ -x "$BIN_DIR/$c" ] || die "$BIN_DIR/$c is missing; run testbed/build-tools.sh (or make tools)"
  done
  [ -x "$BIN_DIR/kubectl" ] || die "$BIN_DIR/kubectl is missing; run testbed/build-tools.sh (or make tools)"

  local running=0
  for c in "${COMPONENTS[@]}"; do is_running "$c" && running=$((running + 1)); done
  if [ "$running" -gt 0 ] && [ -f "$TESTBED_DIR/ports.env" ] && [ -f "$CMDS/kube-controller-manager" ]; then
    # e.g. after stop-apiserver: keep the data, certificates and ports.
    log "resuming the test bed in $TESTBED_DIR (starting the processes that are not running)"
  else
    # Nothing running (or never set up): start afresh.
    [ -d "$TESTBED_DIR" ] && cmd_down >/dev/null
    configure
  fi
  load_ports

  if ! is_running etcd; then
    check_ports_free etcd "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT"
    start_component etcd
  fi
  wait_for "etcd health" "$READY_TIMEOUT" etcd etcd_healthy

  if ! is_running kube-apiserver; then
    check_ports_free kube-apiserver "$APISERVER_PORT"
    start_component kube-apiserver
  fi
  wait_for "kube-apiserver /readyz" "$READY_TIMEOUT" kube-apiserver api_ready
  # Only now: before the RBAC bootstrap roles exist kube-controller-manager
  # gets 403 reading its authentication config and exits.
  if ! is_running kube-controller-manager; then
    check_ports_free kube-controller-manager "$KCM_PORT"
    start_component kube-controller-manager
  fi
  wait_for "the default ServiceAccount (created by kube-controller-manager)" "$READY_TIMEOUT" \
    kube-controller-manager default_sa_exists
  apply_crds
  echo "test bed ready in $(elapsed "$t0"): $(api_url)  (. $TESTBED_DIR/env)"
  if [ "${NODE:-0}" = 1 ]; then
    node_sh up
  fi
}

cmd_down() {
  # The node first (a no-op when there is none): it must leave no process,
  # mount, network namespace or veth behind before .testbed/ is deleted.
  local node_ok=1
  node_sh down || node_ok=0
  REAP_WAIT=1 stop_components kube-controller-manager kube-apiserver etcd
  [ "$node_ok" = 1 ] || die "stopping the node failed (see above); $TESTBED_DIR is kept"
  if [ -d "$TESTBED_DIR" ]; then
    # Refuse to delete anything that is not our state directory.
    [[ $(basename "$TESTBED_DIR") == .testbed* ]] || die "refusing to delete $TESTBED_DIR"
    rm -rf "$TESTBED_DIR"
  fi
  echo "test bed stopped and removed"
}

cmd_stop_apiserver() {
  stop_components kube-apiserver
  echo "kube-apiserver stopped"
}

cmd_start_apiserver() {
  load_ports || die "the test bed was never started; run 'testbed/testbed.sh up'"
  local t0; t0=$(now_ms)
  if ! is_running kube-apiserver; then
    check_ports_free kube-apiserver "$APISERVER_PORT"
    start_component kube-apiserver
  fi
  wait_for "kube-apiserver /readyz" "$READY_TIMEOUT" kube-apiserver api_ready
  echo "kube-apiserver ready in $(elapsed "$t0"): $(api_url)"
}

cmd_status() {
  if ! load_ports 2>/dev/null; then
    echo "test bed not set up ($TESTBED_DIR missing)"
    return 1
  fi
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s not running\n' "$c"; rc=1
    fi
  done
  local ready=no
  api_ready && ready=yes
  echo "apiserver: $(api_url)  ready: $ready"
  echo "kubeconfig: $KUBECONFIG_FILE  (. $TESTBED_DIR/env)"
  if [ -d "$TESTBED_DIR/node" ]; then node_sh status || rc=1; fi
  [ "$ready" = yes ] || rc=1
  return "$rc"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  -h|--help|help|"") sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up, down, status, stop-apiserver, start-apiserver)" ;;
esac
