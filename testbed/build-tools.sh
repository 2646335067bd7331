#!/usr/bin/env bash
# Builds the Go tools the test bed needs into $BIN_DIR (see lib.sh), from the
# pinned go.mod/go.sum modules under testbed/tools/. A binary is rebuilt only
# when it is missing or its module's go.mod/go.sum or build flags changed, so a
# warm run takes well under a second.
#
#   testbed/build-tools.sh            build what is missing
#   testbed/build-tools.sh --force    rebuild everything
#   testbed/build-tools.sh NAME...    build only these tools (if missing)
#   NODE=1 testbed/build-tools.sh     also the node's kubelet and kube-scheduler
#                                     (testbed/tools/k8s-node, same k8s release)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

force=0
want=()
for a in "$@"; do
  case $a in
    --force|-f) force=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) want+=("$a") ;;
  esac
done

command -v go >/dev/null || die "go is not on PATH (Go 1.26+ is needed to build the test bed tools)"

k8s_major=${K8S_VERSION#v}; k8s_major=${k8s_major%%.*}
k8s_minor=${K8S_VERSION#v*.}; k8s_minor=${k8s_minor%%.*}
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

modver() { # modver <module dir> <module path>: version of a requirement in go.mod
  awk -v m="$2" '$1==m {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$TOOLS_DIR/$1/go.mod"
}

helm_ver=$(modver helm helm.sh/helm/v3)
helm_cg=$(modver helm k8s.io/client-go) # v0.<minor>.<patch>, as helm's own Makefile does
helm_cg_minor=${helm_cg#v0.}; helm_cg_minor=${helm_cg_minor%%.*}
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_cg_minor"
done
kubeconform_ldflags="-s -w -X main.version=$(modver kubeconform github.com/yannh/kubeconform)"
registry_ldflags="-s -w -X github.com/distribution/distribution/v3/version.version=$(modver registry github.com/distribution/distribution/v3)"

# name | module dir under testbed/tools | package | ldflags | how long a cold build takes
TOOLS=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|-s -w|about a minute"
  "kube-apiserver|k8s|k8s.io/kubernetes/cmd/kube-apiserver|$kube_ldflags|several minutes"
  "kube-controller-manager|k8s|k8s.io/kubernetes/cmd/kube-controller-manager|$kube_ldflags|a few minutes"
  "kubectl|k8s|k8s.io/kubernetes/cmd/kubectl|$kube_ldflags|a minute or two"
  "helm|helm|helm.sh/helm/v3/cmd/helm|$helm_ldflags|a minute or two"
  "kubeconform|kubeconform|github.com/yannh/kubeconform/cmd/kubeconform|$kubeconform_ldflags|under a minute"
  "crane|crane|github.com/google/go-containerregistry/cmd/crane|-s -w|under a minute"
  "registry|registry|github.com/distribution/distribution/v3/cmd/registry|$registry_ldflags|a minute or two"
  "dhcheck|dhcheck|.|-s -w|under a minute"
  "kube-scheduler|k8s-node|k8s.io/kubernetes/cmd/kube-scheduler|$kube_ldflags|a few minutes"
  "kubelet|k8s-node|k8s.io/kubernetes/cmd/kubelet|$kube_ldflags|a few minutes"
)
# The node's tools (module testbed/tools/k8s-node) only with NODE=1 or by name.
NODE_TOOLS=" kube-scheduler kubelet "

mkdir -p "$BIN_DIR/.stamps"
export GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0

built=0
t_all=$SECONDS
for entry in "${TOOLS[@]}"; do
  IFS='|' read -r name dir pkg ldflags eta <<<"$entry"
  if [ "${#want[@]}" -gt 0 ] && [[ " ${want[*]} " != *" $name "* ]]; then continue; fi
  if [ "${#want[@]}" -eq 0 ] && [ "${NODE:-0}" != 1 ] && [[ $NODE_TOOLS == *" $name "* ]]; then continue; fi
  moddir=$TOOLS_DIR/$dir
  # A module with its own Go source (dhcheck) is rebuilt when that changes too.
  stamp=$( { cat "$moddir/go.mod" "$moddir/go.sum"; echo "$pkg $ldflags"
    find "$moddir" -maxdepth 1 -name '*.go' -print0 | sort -z | xargs -0r cat; } | sha256sum | cut -c1-16)
  if [ "$force" = 0 ] && [ -x "$BIN_DIR/$name" ] && [ "$(cat "$BIN_DIR/.stamps/$name" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  if [ -x "$BIN_DIR/$name" ]; then why="pins changed"; else why="first time"; fi
  log "building $name ($why, $eta)…"
  t0=$SECONDS
  tmp="$BIN_DIR/.$name.tmp.$$"
  if ! (cd "$moddir" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"); then
    rm -f "$tmp"
    die "building $name ($pkg in testbed/tools/$dir) failed"
  fi
  mv -f "$tmp" "$BIN_DIR/$name"
  echo "$stamp" >"$BIN_DIR/.stamps/$name"
  log "built $name in $((SECONDS - t0)) s -> $BIN_DIR/$name"
  built=$((built + 1))
done

if [ "$built" -gt 0 ]; then
  log "built $built tool(s) in $((SECONDS - t_all)) s into $BIN_DIR"
fi
