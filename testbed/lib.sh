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
