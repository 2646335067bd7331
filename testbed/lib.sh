# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Shared settings for the pod-reloader test bed. Source it; do not execute it.
#
# Versions are pinned here (Kubernetes) and in the committed go.mod/go.sum
# files under testbed/tools/ (etcd, helm, kubeconform). Changing K8S_VERSION
# means regenerating testbed/tools/k8s with testbed/tools/k8s/update-gomod.sh.

K8S_VERSION=v1.36.3          # k8s.io/kubernetes
K8S_STAGING_VERSION=v0.36.3  # k8s.io/<staging module>

TESTBED_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTBED_LIB_DIR/.." && pwd)
TOOLS_DIR=$TESTBED_LIB_DIR/tools

CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/$K8S_VERSION
BIN_DIR=$CACHE_DIR/bin
TESTBED_DIR=$REPO_ROOT/.testbed

export DEBIAN_FRONTEND=noninteractive

log()  { printf '%s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Shared by testbed.sh and node/node.sh: clocks, process liveness, logs.
now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100)); }
# A zombie counts as gone: it no longer runs, only waits to be reaped.
alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
show_logs() { # show_logs <component...>: the last lines of each one's log in $LOGS
  local name
  for name in "$@"; do
    [ -f "$LOGS/$name.log" ] || continue
    log "---- last lines of $LOGS/$name.log"
    tail -n 30 "$LOGS/$name.log" >&2
  done
}
