#!/usr/bin/env bash
# The controller's image on the test bed's node, as released: `make images`
# (scripts/images.sh: static musl release binaries, one deterministic layer
# per images/<dir>/werf.inc.yaml, crane; a warm run compiles nothing) writes
# an OCI layout, which is imported into the running node's containerd under
# the name the chart renders, <repository>@<manifest digest>.
#
#   testbed/node/controller-image.sh      prints "<repository> <digest>"
#
# Exits 3 when this machine cannot build the image (the musl toolchain cannot
# be installed); the tests then skip the in-cluster part with that error.
set -euo pipefail
NODE_LIB=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$NODE_LIB/../lib.sh"

REPOSITORY=testbed.local/pod-reloader
[ -x "$REPO_ROOT/scripts/images.sh" ] || die "scripts/images.sh (make images) is missing"

out=$(mktemp -d "${TMPDIR:-/tmp}/pod-reloader-node-image.XXXXXX")
trap 'rm -rf "$out"' EXIT
if ! "$REPO_ROOT/scripts/images.sh" --out "$out/images" >"$out/images.log" 2>&1; then
  tail -n 20 "$out/images.log" >&2
  # The toolchain, not the code: this machine cannot build the image.
  if line=$(grep -m1 -E "could not install musl-tools|error: toolchain|error: component|rustup target add" "$out/images.log"); then
    log "error: scripts/images.sh cannot build the image on this machine: $line"
    exit 3
  fi
  die "scripts/images.sh failed"
fi
digest=$(jq -r .podReloader "$out/images/images_digests.json")
[[ $digest == sha256:* ]] || die "no podReloader digest in images_digests.json"
tar -C "$out/images/oci" -cf "$out/oci.tar" .
"$NODE_LIB/node.sh" ctr images import --base-name "$REPOSITORY" "$out/oci.tar" >/dev/null ||
  die "importing the images into the node's containerd failed"
# The layout names its manifests podReloader and hooks.
"$NODE_LIB/node.sh" ctr images tag --force "$REPOSITORY:podReloader" "$REPOSITORY@$digest" >/dev/null ||
  die "tagging $REPOSITORY:podReloader as $REPOSITORY@$digest failed"
"$NODE_LIB/node.sh" ctr images label "$REPOSITORY@$digest" io.cri-containerd.pinned=pinned >/dev/null || true
echo "$REPOSITORY $digest"
