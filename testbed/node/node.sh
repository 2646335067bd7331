#!/usr/bin/env bash
# A real node for the test bed: containerd + runc (Debian packages), the CNI
# bridge/host-local/loopback plugins (Debian containernetworking-plugins),
# kubelet and kube-scheduler (built by testbed/build-tools.sh from the same
# k8s.io/kubernetes release as the control plane). Called by
# `NODE=1 testbed/testbed.sh up` and by `testbed/testbed.sh down`; needs the
# control plane to be up and root.
#
#   testbed/node/node.sh up        start the node (idempotent), wait until Ready
#   testbed/node/node.sh down      stop it; leaves no process, mount, network
#                                  namespace, veth, bridge or cgroup behind
#   testbed/node/node.sh status    show the node's processes and its Ready condition
#   testbed/node/node.sh check     can a node run on this machine? (root, packages,
#                                  overlayfs, cgroups, a bridge, a network namespace,
#                                  runc running a container); prints the exact error
#   testbed/node/node.sh import TAR...   import OCI image archives into containerd
#   testbed/node/node.sh ctr ARGS...     run ctr against the node's containerd (k8s.io)
#
# Nothing is pulled: the pause image (testbed/node/cmd/pause) and the
# sample-app image (testbed/sample-app) are built here and imported;
# testbed/node/controller-image.sh builds and imports the controller's.
#
# One node per machine: the pod network, the `kubernetes` Service address
# (10.0.0.1, which every test bed uses) and the cgroup root are machine-wide.
# Their owner is recorded in /run/pod-reloader-node/owner; `up` in another
# test bed fails while that node runs.
#
#   node name      testbed-node, InternalIP 10.88.0.1 (on the bridge prnode0)
#   pods           10.88.0.0/24 on bridge prnode0, one network namespace each
#   10.0.0.1:443   the `kubernetes` Service: apiproxy (on the empty bridge
#                  prnode-svc) forwards it to the apiserver on 127.0.0.1,
#                  so in-cluster clients work without kube-proxy
#   cgroups        /sys/fs/cgroup/<controller>/pod-reloader-node/kubepods/...
#   state          .testbed/node/ (containerd root, kubelet root, pod logs,
#                  configs, certificates); /run/pod-reloader-node/ (sockets,
#                  containerd and runc state, network namespace mounts);
#                  logs in .testbed/logs/{containerd,kubelet,kube-scheduler,apiproxy}.log
set -euo pipefail
# NODE_TRACE=1: trace every command with the time (seconds.milliseconds).
if [ -n "${NODE_TRACE:-}" ]; then PS4='+ $(date +%S.%3N) '; set -x; fi
NODE_LIB=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$NODE_LIB/../lib.sh"
# The test bed's state directory: as testbed.sh passes it, else as
# testbed.sh derives it (TESTBED_STATE_DIR, default .testbed/).
if [ -n "${NODE_TESTBED_DIR:-}" ]; then
  TESTBED_DIR=$NODE_TESTBED_DIR
elif [ -n "${TESTBED_STATE_DIR:-}" ]; then
  [[ $(basename "$TESTBED_STATE_DIR") == .testbed* ]] || die "TESTBED_STATE_DIR must name a directory called .testbed*"
  TESTBED_DIR=$(cd "$(dirname "$TESTBED_STATE_DIR")" 2>/dev/null && pwd)/$(basename "$TESTBED_STATE_DIR")
fi

NODE_NAME=testbed-node
NODE_DIR=$TESTBED_DIR/node
RUN_DIR=/run/pod-reloader-node
LOCK_FILE=/run/pod-reloader-node.lock
SOCK=$RUN_DIR/containerd.sock
BRIDGE=prnode0
SVC_LINK=prnode-svc
POD_SUBNET=10.88.0.0/24
NODE_IP=10.88.0.1
SERVICE_IP=10.0.0.1
CGROUP_ROOT=pod-reloader-node
PAUSE_IMAGE=testbed.local/pause:1
SAMPLE_IMAGE=testbed.local/sample-app:1 # built by testbed/sample-app/build.sh
READY_TIMEOUT=${NODE_READY_TIMEOUT:-60}
LOGS=$TESTBED_DIR/logs
PIDS=$NODE_DIR/pids
CMDS=$NODE_DIR/cmd
PKI=$TESTBED_DIR/pki
NPKI=$NODE_DIR/pki
COMPONENTS=(containerd apiproxy kube-scheduler kubelet)
HELPERS_DIR=$CACHE_DIR/node


# ---------------------------------------------------------------- processes
# starttime, pid_in, start_component, stop_pids: testbed/lib.sh.

pid_of() { pid_in "$PIDS/$1.pid"; }
is_running() { pid_of "$1" >/dev/null; }

save_cmd() { # save_cmd <name> <argv...>
  local name=$1; shift
  local -a cmd=("$@")
  declare -p cmd | sed 's/^declare -a //' >"$CMDS/$name"
}

stop_component() { # stop_component <name> [grace tenths]
  local pid
  if pid=$(pid_of "$1"); then stop_pids "${2:-50}" "$pid" || return 1; fi
  rm -f "$PIDS/$1.pid"
}

fail() { # fail <message> <component logs to show...>
  local msg=$1; shift
  show_logs "$@"
  die "$msg (logs: $LOGS; clean up with 'testbed/testbed.sh down' or 'testbed/node/node.sh down')"
}

# ---------------------------------------------------------------- lock, owner

lock() { # serialises up/down of nodes on this machine
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "another 'node.sh up/down' holds $LOCK_FILE for over 120 s"
}

owner() { cat "$RUN_DIR/owner" 2>/dev/null || true; }

owner_alive() { # owner_alive <testbed dir>: its node's containerd or kubelet runs
  local c
  for c in containerd kubelet; do pid_in "$1/node/pids/$c.pid" >/dev/null && return 0; done
  return 1
}

# ---------------------------------------------------------------- cleanup

cgroup_dirs() { # the node's cgroup root in every mounted v1 hierarchy
  local d
  for d in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do [ -d "$d" ] && echo "$d"; done
  return 0
}

cgroup_pids() { # every process in the node's cgroups
  local d
  for d in $(cgroup_dirs); do
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

shim_pids() { # containerd shims of the node's containerd
  pgrep -f "^[^ ]*containerd-shim[^ ]* .*-address $SOCK( |\$)" || true
}

mounts_under() { # mounts_under <dir...>: mount points below them, deepest first
  local d
  for d in "$@"; do
    awk -v d="$d" '{ mp = $5; gsub(/\\040/, " ", mp); gsub(/\\011/, "\t", mp)
                     if (mp == d || index(mp, d "/") == 1) print length(mp), mp }' /proc/self/mountinfo
  done | sort -rn | cut -d' ' -f2-
}

unmount_all() { # unmount_all <dir...>
  local mp left
  for _ in 1 2 3 4 5; do
    left=$(mounts_under "$@")
    [ -z "$left" ] && return 0
    while IFS= read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done <<<"$left"
  done
  left=$(mounts_under "$@")
  [ -z "$left" ] && return 0
  log "still mounted:"; log "$left"
  return 1
}

kill_containers() { # every container process (by cgroup), then the shims
  local t pids
  for (( t = 0; t < 50; t++ )); do
    pids=$(cgroup_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [ -z "$(cgroup_pids)" ] || { log "processes left in the node's cgroups: $(cgroup_pids | tr '\n' ' ')"; return 1; }
  # shellcheck disable=SC2046
  stop_pids 20 $(shim_pids)
}

remove_cgroups() {
  local d t
  for (( t = 0; t < 30; t++ )); do
    for d in $(cgroup_dirs); do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
    [ -z "$(cgroup_dirs)" ] && return 0
    sleep 0.1
  done
  log "cgroups left: $(cgroup_dirs | tr '\n' ' ')"
  return 1
}

remove_links() {
  local l t
  # A pod's veth goes with its network namespace; wait for the kernel.
  for (( t = 0; t < 30; t++ )); do
    [ -z "$(ip -o link show master "$BRIDGE" 2>/dev/null)" ] && break
    sleep 0.1
  done
  for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  for l in "$BRIDGE" "$SVC_LINK"; do
    if ip link show "$l" >/dev/null 2>&1; then ip link del "$l" || return 1; fi
  done
}

# cleanup_machine: everything of the node that lives outside a test bed's
# directory, and the mounts under the owner's node directory.
cleanup_machine() { # cleanup_machine <owner testbed dir or empty>
  local rc=0
  kill_containers || rc=1
  local dirs=("$RUN_DIR")
  [ -n "${1:-}" ] && dirs+=("$1/node")
  unmount_all "${dirs[@]}" || rc=1
  remove_links || rc=1
  remove_cgroups || rc=1
  if [ "$rc" = 0 ] && [ -d "$RUN_DIR" ] && [ -z "$(mounts_under "$RUN_DIR")" ]; then
    # containerd 1.6 puts its shims' sockets in /run/containerd/s whatever
    # its state directory; remove the directories if this node made them.
    if [ -f "$RUN_DIR/made-run-containerd" ]; then
      if rmdir /run/containerd/s 2>/dev/null; then rmdir /run/containerd 2>/dev/null || true; fi
    fi
    rm -rf --one-file-system "$RUN_DIR"
  fi
  return "$rc"
}

cmd_down() {
  local me=$TESTBED_DIR o rc=0
  o=$(owner)
  # Nothing of a node here and none owned by us: nothing to do (the common case).
  [ -d "$NODE_DIR" ] || [ "$o" = "$me" ] || return 0
  [ "$(id -u)" = 0 ] || die "stopping the node needs root"
  lock
  o=$(owner)
  local t0; t0=$(now_ms)
  stop_component kubelet 100 || rc=1
  stop_component kube-scheduler || rc=1
  if [ "$o" = "$me" ] || { [ -z "$o" ] && [ -d "$RUN_DIR" ]; }; then
    kill_containers || rc=1
    stop_component containerd 100 || rc=1
    stop_component apiproxy || rc=1
    cleanup_machine "$me" || rc=1
  else
    # Another test bed owns the node slot: only our own processes and mounts.
    stop_component containerd 100 || rc=1
    stop_component apiproxy || rc=1
    unmount_all "$NODE_DIR" || rc=1
  fi
  [ "$rc" = 0 ] || die "the node did not stop cleanly (see above)"
  # The Node object too (its pods are then garbage-collected), if the
  # apiserver still answers.
  if [ -f "$TESTBED_DIR/kubeconfig" ]; then
    timeout 5 "$BIN_DIR/kubectl" --kubeconfig "$TESTBED_DIR/kubeconfig" --request-timeout=3s \
      delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  if [ -d "$NODE_DIR" ]; then
    [ -z "$(mounts_under "$NODE_DIR")" ] || die "mounts left under $NODE_DIR"
    rm -rf --one-file-system "$NODE_DIR"
  fi
  echo "node stopped and removed in $(elapsed "$t0")"
}

# ---------------------------------------------------------------- set-up

port_in_use() {
  local used
  used=$(ss -Htan ${2:+state "$2"} 2>/dev/null | awk -v c="${2:+3}" '{print $(c ? c : 4)}')
  grep -E "[:.]$1\$" >/dev/null <<<"$used"
}

pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    [[ " ${PICKED_PORTS:-} " == *" $p "* ]] && continue
    port_in_use "$p" && continue
    PICKED_PORTS+=" $p"
    echo "$p"
    return 0
  done
  die "could not find a free TCP port"
}

check_prereqs() {
  check_prereqs_machine
  [ -f "$TESTBED_DIR/ports.env" ] || die "the control plane is not set up; run 'testbed/testbed.sh up' first"
}

check_prereqs_machine() {
  [ "$(id -u)" = 0 ] || die "the node needs root (containerd, runc, network namespaces, cgroups); running as uid $(id -u)"
  "$NODE_LIB/install-deps.sh" || die "the node's Debian packages could not be installed"
  local b
  for b in containerd containerd-shim-runc-v2 ctr runc; do
    command -v "$b" >/dev/null || die "$b is not installed (Debian packages containerd, runc)"
  done
  for b in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$b" ] || die "/usr/lib/cni/$b is missing (Debian package containernetworking-plugins)"
  done
  for b in kubelet kube-scheduler; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing; run 'NODE=1 testbed/build-tools.sh'"
  done
  command -v go >/dev/null || die "go is needed to build the pause and sample-app binaries"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)"
  mountpoint -q /sys/fs/cgroup || die "/sys/fs/cgroup is not mounted"
}

# build_helpers: static pause, apiproxy and sample-app binaries and the
# pause/sample-app OCI archives, cached by the hash of their sources.
build_helpers() {
  local hash
  hash=$( { cat "$NODE_LIB/go.mod" "$NODE_LIB"/cmd/*/main.go "$NODE_LIB/oci-image.py" \
      "$REPO_ROOT"/testbed/sample-app/{go.mod,main.go,build.sh}; go version; } | sha256sum | cut -c1-16)
  HELPERS=$HELPERS_DIR/$hash
  [ -f "$HELPERS/.complete" ] && return 0
  log "building pause, apiproxy and sample-app (static Go binaries) and their images…"
  rm -rf "$HELPERS"
  mkdir -p "$HELPERS"
  local c
  for c in pause apiproxy; do
    (cd "$NODE_LIB" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$HELPERS/$c" "./cmd/$c") ||
      die "building testbed/node/cmd/$c failed"
  done
  python3 "$NODE_LIB/oci-image.py" --name "$PAUSE_IMAGE" --out "$HELPERS/pause.tar" \
    --file "$HELPERS/pause:/pause:0755" --entrypoint '["/pause"]' --user 65535:65535 >/dev/null ||
    die "building the pause image failed"
  "$REPO_ROOT/testbed/sample-app/build.sh" "$HELPERS" >/dev/null || die "building the sample-app image failed"
  touch "$HELPERS/.complete"
}

prune_helpers() { # older builds of the helpers (only when no node runs from them)
  find "$HELPERS_DIR" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$HELPERS")" -exec rm -rf {} + 2>/dev/null || true
}

issue_cert() { # issue_cert <name> <subject> <extendedKeyUsage> [subjectAltName]
  local name=$1 subj=$2 eku=$3 san=${4:-}
  (
    cd "$NPKI"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    {
      echo "basicConstraints=critical,CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$eku"
      [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -CAserial "$NPKI/ca.srl" \
      -sha256 -days 365 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
    chmod 600 "$name.key"
  ) || die "issuing the $name certificate failed"
}

write_kubeconfig() { # write_kubeconfig <file> <user> <cert> <key>
  local file=$1
  : >"$file"; chmod 600 "$file"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pod-reloader-testbed
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
contexts:
- name: default
  context: {cluster: pod-reloader-testbed, user: $2}
current-context: default
users:
- name: $2
  user:
    client-certificate: $3
    client-key: $4
EOF
}

configure() {
  mkdir -p "$NODE_DIR" "$PIDS" "$CMDS" "$NPKI" "$LOGS" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" \
    "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" "$NODE_DIR/containerd"
  chmod 700 "$NPKI"
  PICKED_PORTS=""
  local kubelet_port healthz_port scheduler_port
  kubelet_port=$(pick_port); healthz_port=$(pick_port); scheduler_port=$(pick_port)
  cat >"$NODE_DIR/ports.env" <<EOF
KUBELET_PORT=$kubelet_port
KUBELET_HEALTHZ_PORT=$healthz_port
SCHEDULER_PORT=$scheduler_port
EOF

  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  issue_cert kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
  issue_cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" "$NPKI/kubelet.crt" "$NPKI/kubelet.key"
  write_kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" system:kube-scheduler "$NPKI/kube-scheduler.crt" "$NPKI/kube-scheduler.key"

  cat >"$NODE_DIR/containerd.toml" <<EOF
# containerd of the test bed's node (testbed/node/node.sh); nothing shared
# with a system containerd: own root, state, socket and runc root.
version = 2
root = "$NODE_DIR/containerd"
state = "$RUN_DIR/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Network namespaces under the state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine may not grant.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN_DIR/runc"
        SystemdCgroup = false
EOF

  # The pod network: the bridge prnode0 (created by node.sh with the node's
  # IP, so the plugin neither sets an address nor turns on IP forwarding),
  # addresses from host-local, a default route via the node. No masquerade:
  # pods reach the node and each other only.
  cat >"$NODE_DIR/cni/net.d/10-testbed.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pod-reloader-testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "10.88.0.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$NODE_IP"}]
      }
    }
  ]
}
EOF

  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
tlsCertFile: $NPKI/kubelet-serving.crt
tlsPrivateKeyFile: $NPKI/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
# This machine: cgroup v1 (hybrid), no systemd, no swap accounting.
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
oomScoreAdj: 0
makeIPTablesUtilChains: false
protectKernelDefaults: false
podLogsDir: $NODE_DIR/pod-logs
maxPods: 50
serializeImagePulls: false
# Images are imported, never pulled: never garbage-collect them, never evict.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
evictionPressureTransitionPeriod: 5s
# Fast feedback for the tests.
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
runtimeRequestTimeout: 30s
shutdownGracePeriod: 0s
resolvConf: /etc/resolv.conf
EOF

  save_cmd containerd "$(command -v containerd)" --config "$NODE_DIR/containerd.toml" --log-level warn
  save_cmd apiproxy "$HELPERS/apiproxy" -listen "$SERVICE_IP:443" -to "127.0.0.1:$APISERVER_PORT"
  save_cmd kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$scheduler_port" \
    --cert-dir="$NPKI/kube-scheduler-generated" \
    --leader-elect=false \
    --profiling=false \
    --v=1
  save_cmd kubelet "$BIN_DIR/kubelet" \
    --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1
}

setup_network() {
  local l
  # Nothing else on this machine may use the pod subnet or the Service address.
  l=$(ip -o -4 addr show | awk -v b="$BRIDGE" -v s="$SVC_LINK" '$2 != b && $2 != s && ($4 ~ /^10\.88\.0\./ || $4 ~ /^10\.0\.0\.1\//) {print $2, $4}')
  [ -z "$l" ] || die "the node's addresses ($POD_SUBNET, $SERVICE_IP) are already used on this machine: $l"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then ip link add "$BRIDGE" type bridge || die "cannot create the bridge $BRIDGE"; fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # An empty bridge as a dummy interface (the kernel may lack the dummy driver).
  if ! ip link show "$SVC_LINK" >/dev/null 2>&1; then ip link add "$SVC_LINK" type bridge || die "cannot create $SVC_LINK"; fi
  ip addr replace "$SERVICE_IP/32" dev "$SVC_LINK"
  ip link set "$SVC_LINK" up
}

setup_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -f "$h/cgroup.procs" ] || continue
    [ "$(basename "$h")" = unified ] && continue # the v2 hierarchy of a hybrid set-up: not used
    mkdir -p "$h/$CGROUP_ROOT"
    if [ -f "$h/cpuset.cpus" ]; then # a new cpuset starts empty
      [ -n "$(cat "$h/$CGROUP_ROOT/cpuset.cpus")" ] || cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
      [ -n "$(cat "$h/$CGROUP_ROOT/cpuset.mems")" ] || cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# cmd_check: whether a node can run here at all, without starting one. The
# last step runs a container with runc directly (the sample-app binary in a
# bare bundle, in a cgroup of its own), as the node would.
cmd_check() {
  check_prereqs_machine
  local l=prnode-check$$
  l=${l:0:15}
  local err
  err=$(ip link add "$l" type bridge 2>&1) || die "cannot create a bridge: $err"
  ip link del "$l"
  err=$(unshare --net true 2>&1) || die "cannot create a network namespace: $err"
  build_helpers
  local dir id out rc=0
  dir=$(mktemp -d)
  id=pod-reloader-node-check-$$
  mkdir -p "$dir/bundle/rootfs" "$dir/state"
  cp "$HELPERS/sample-app" "$dir/bundle/rootfs/"
  (cd "$dir/bundle" && runc spec) || die "runc spec failed"
  python3 - "$dir/bundle/config.json" "$CGROUP_ROOT-check/$id" <<'EOF2' || die "editing the runc spec failed"
import json, sys
p, cg = sys.argv[1], sys.argv[2]
s = json.load(open(p))
s["process"]["terminal"] = False
s["process"]["args"] = ["/sample-app", "--once", "NODE_CHECK"]
s["process"]["env"] = ["NODE_CHECK=ok"]
s["root"]["readonly"] = True
s["linux"]["cgroupsPath"] = "/" + cg
json.dump(s, open(p, "w"))
EOF2
  out=$(cd "$dir/bundle" && timeout 30 runc --root "$dir/state" run "$id" 2>&1 </dev/null) || rc=$?
  timeout 10 runc --root "$dir/state" delete -f "$id" >/dev/null 2>&1 || true
  local d
  for d in /sys/fs/cgroup/*/"$CGROUP_ROOT-check"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "$dir"
  if [ "$rc" != 0 ] || [[ $out != *"NODE_CHECK=ok"* ]]; then
    die "runc cannot run a container on this machine (exit $rc): $out"
  fi
  echo "a node can run here: root, $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), overlayfs, cgroup $(stat -fc %T /sys/fs/cgroup/ | sed 's/tmpfs/v1/; s/cgroup2fs/v2/'), bridge, network namespace, a container run by runc"
}

ctr_() { timeout 60 ctr --address "$SOCK" --namespace k8s.io "$@"; }

containerd_ready() { ctr_ version >/dev/null 2>&1; }

import_images() { # import_images <tar...>: import, and pin against kubelet's image GC
  local tar names n
  for tar in "$@"; do
    names=$(ctr_ images import --all-platforms "$tar" 2>&1) || { log "$names"; die "ctr images import $tar failed"; }
    for n in $(tar -xOf "$tar" index.json | python3 -c 'import json,sys; [print(m["annotations"]["io.containerd.image.name"]) for m in json.load(sys.stdin)["manifests"]]'); do
      ctr_ images label "$n" io.cri-containerd.pinned=pinned >/dev/null || true
      echo "$n"
    done
  done
}

kubectl_tb() { timeout 20 "$BIN_DIR/kubectl" --kubeconfig "$TESTBED_DIR/kubeconfig" "$@"; }

node_ready() {
  [ "$(kubectl_tb get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

all_running() { local c; for c in "${COMPONENTS[@]}"; do is_running "$c" || return 1; done; }

wait_for() { # wait_for <what> <timeout s> <command...>; any node component's death aborts
  local what=$1 timeout=$2; shift 2
  local deadline=$(( $(now_ms) + timeout * 1000 )) c
  while ! "$@"; do
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$PIDS/$c.pid" ] && ! is_running "$c"; then fail "$c exited while waiting for $what" "$c"; fi
    done
    [ "$(now_ms)" -lt "$deadline" ] || fail "timed out after ${timeout}s waiting for $what" "${COMPONENTS[@]}"
    sleep 0.2
  done
}

cmd_up() {
  local t0; t0=$(now_ms)
  check_prereqs
  # shellcheck disable=SC1091
  . "$TESTBED_DIR/ports.env"
  lock
  local o; o=$(owner)
  if [ -n "$o" ] && [ "$o" != "$TESTBED_DIR" ]; then
    if owner_alive "$o"; then
      die "another test bed's node is running on this machine ($o); one node per machine (pod network $POD_SUBNET, Service address $SERVICE_IP); stop it with 'testbed/testbed.sh down' there"
    fi
    log "cleaning up the stale node of $o"
    cleanup_machine "$o" || die "could not clean up the stale node of $o"
  fi
  if all_running && node_ready; then
    echo "node $NODE_NAME already running and Ready"
    return 0
  fi
  if [ -d "$NODE_DIR" ] || [ -d "$RUN_DIR" ]; then
    # Partly running (e.g. a component died): start afresh.
    exec 9>&-
    cmd_down >/dev/null
    lock
  fi
  mkdir -p "$RUN_DIR"
  echo "$TESTBED_DIR" >"$RUN_DIR/owner"
  [ -e /run/containerd ] || touch "$RUN_DIR/made-run-containerd"
  build_helpers
  prune_helpers
  configure
  setup_network
  setup_cgroups

  start_component containerd
  wait_for "containerd at $SOCK" 30 containerd_ready
  import_images "$HELPERS/pause.tar" "$HELPERS/sample-app.tar" >/dev/null
  start_component apiproxy
  start_component kube-scheduler
  start_component kubelet
  wait_for "node $NODE_NAME Ready" "$READY_TIMEOUT" node_ready
  echo "node $NODE_NAME Ready in $(elapsed "$t0") (containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), kubelet $("$BIN_DIR/kubelet" --version | awk '{print $2}'))"
}

cmd_status() {
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then printf '%-24s running (pid %s)\n' "$c" "$pid"; else printf '%-24s not running\n' "$c"; rc=1; fi
  done
  if node_ready; then echo "node $NODE_NAME: Ready (images $PAUSE_IMAGE, $SAMPLE_IMAGE)"; else echo "node $NODE_NAME: not Ready"; rc=1; fi
  return "$rc"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  check) cmd_check ;;
  import) shift; import_images "$@" ;;
  ctr) shift; ctr_ "$@" ;;
  -h|--help|help|"") sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up, down, status, check, import, ctr)" ;;
esac
