#!/usr/bin/env bash
# Builds the real Argo Rollouts controller (rollouts-controller) for the node
# tests, from the Go module proxy, and prints the directory that holds it:
#
#   <cache>/argo-rollouts/<version>/bin/rollouts-controller
#   <cache>/argo-rollouts/<version>/src/manifests/crds/   (its real CRDs)
#
# `go install module@version` refuses modules whose go.mod has replace
# directives (argo-rollouts has several), so the module is downloaded with
# `go mod download`, its source copied out of the read-only module cache into
# the cache directory, and built there with its own go.mod/go.sum (checked
# against the checksum database as every download is). The Go toolchain its
# go.mod asks for comes from the proxy too (GOTOOLCHAIN, module
# golang.org/toolchain) when the local one is older.
#
# Cached by version: a warm run only checks that the binary is there. Nothing
# is written into the repository. Cold: the download and a build of a few
# hundred packages, about 5-15 minutes on a 2-core machine.
#
#   testbed/build-argo-rollouts.sh            build if missing
#   testbed/build-argo-rollouts.sh --force    rebuild
#   ARGO_ROLLOUTS_VERSION=v1.9.3 testbed/build-argo-rollouts.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

# The newest v1.x release the proxy served on 2026-11-29
# (`go list -m -versions github.com/argoproj/argo-rollouts`).
VERSION=${ARGO_ROLLOUTS_VERSION:-v1.10.2}
# What its go.mod's `go` line needs (newer than Debian's/the machine's Go).
TOOLCHAIN=${ARGO_ROLLOUTS_TOOLCHAIN:-go1.26.10}
MODULE=github.com/argoproj/argo-rollouts

force=0
case ${1:-} in
  --force|-f) force=1 ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1" ;;
esac

command -v go >/dev/null || die "go is not on PATH"
[[ $VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "ARGO_ROLLOUTS_VERSION must be a v1.x.y release, not '$VERSION'"

DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/argo-rollouts/$VERSION
BIN=$DIR/bin/rollouts-controller
if [[ $force == 0 && -x $BIN && -f $DIR/src/manifests/crds/rollout-crd.yaml ]]; then
  echo "$DIR"
  exit 0
fi

t0=$(now_ms)
export GOTOOLCHAIN=$TOOLCHAIN GOFLAGS=-buildvcs=false
log "downloading $MODULE@$VERSION from the Go module proxy"
info=$(cd /tmp && go mod download -json "$MODULE@$VERSION") || die "go mod download $MODULE@$VERSION failed: $info"
src=$(jq -r '.Dir // empty' <<<"$info")
err=$(jq -r '.Error // empty' <<<"$info")
[[ -z $err ]] || die "go mod download $MODULE@$VERSION: $err"
[[ -d $src ]] || die "go mod download $MODULE@$VERSION gave no source directory"

rm -rf "$DIR/src.new"
mkdir -p "$DIR/bin"
cp -r "$src" "$DIR/src.new"
chmod -R u+w "$DIR/src.new" # the module cache is read-only
rm -rf "$DIR/src"
mv "$DIR/src.new" "$DIR/src"

log "building rollouts-controller with $TOOLCHAIN (cold: several minutes)"
# The version string the controller logs, as its Makefile sets it.
ldflags="-s -w -X $MODULE/utils/version.version=${VERSION#v} -X $MODULE/utils/version.gitTreeState=clean"
(cd "$DIR/src" && go build -trimpath -ldflags "$ldflags" -o "$BIN.new" ./cmd/rollouts-controller) ||
  die "go build ./cmd/rollouts-controller failed in $DIR/src"
mv "$BIN.new" "$BIN"
[[ -f $DIR/src/manifests/crds/rollout-crd.yaml ]] || die "no manifests/crds/rollout-crd.yaml in $MODULE@$VERSION"
log "rollouts-controller $VERSION built in $(elapsed "$t0")"
echo "$DIR"
