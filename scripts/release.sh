#!/usr/bin/env bash
# Releases of the pod-reloader module, the way Deckhouse reads them from a
# ModuleSource repository REPO (docs/RELEASES.md):
#
#   REPO:pod-reloader                   the discovery tag: Deckhouse lists
#                                       the tags of REPO itself and takes each
#                                       as a module name (an empty image)
#   REPO/pod-reloader@sha256:…          the images (controller, hooks), by digest
#   REPO/pod-reloader:<version>         the module bundle
#   REPO/pod-reloader/release:<version> the release image; the channel tags
#   REPO/pod-reloader/release:<channel> (alpha, beta, early-access, stable,
#                                        rock-solid, lts: release.yaml's
#                                        `channels`) point at one of these
#
# VERSION is vX.Y.Z. Prereleases (vX.Y.Z-rc.1) are refused everywhere:
# Deckhouse's update walk keeps only the module repository's tags matching
# ^v\d+\.\d+\.\d+$, so a cluster could never step through one.
#
#   scripts/release.sh release VERSION [REPO [CHANNEL]]   (make release)
#   scripts/release.sh promote VERSION CHANNEL REPO       (make promote)
#
# release: builds the images (scripts/images.sh), the bundle and the release
#   image in a throwaway registry on 127.0.0.1 and copies them to REPO, by
#   digest. The bundle holds the module directory as Deckhouse reads it —
#   .helmignore, Chart.yaml, module.yaml, charts/, crds/, docs/, enabled,
#   monitoring/, openapi/, templates/ (the tracked files of these entries;
#   every other entry of the repository is source, listed in .helmignore) —
#   plus hooks/pod-reloader-hooks (the static hooks binary, mode 0755),
#   images_digests.json and version.json. The release image holds
#   version.json ({"version":"VERSION"}), changelog.yaml (VERSION's entry of
#   release.yaml's changelog) and module.yaml. Both are single deterministic
#   layers stamped with the commit time: the same commit and VERSION give the
#   same digests, so releasing a published version again changes nothing,
#   and a different build under a published version is refused (FORCE=1
#   overrides). Last, REPO:pod-reloader (the discovery tag) is pushed if
#   missing. With CHANNEL, the new release is then promoted to it.
#   IMAGES_FROM=DIR reuses the images of an earlier `scripts/images.sh --out
#   DIR` instead of building them, when they were built from a commit that
#   differs from HEAD in release.yaml only (a new version of the same code).
#   Without REPO it is a dry run: everything is built and checked, nothing is
#   pushed; the bundle and release image are kept as an OCI layout in
#   target/release/VERSION/.
#   Publishing from a work tree with uncommitted changes needs ALLOW_DIRTY=1.
# promote: points REPO/pod-reloader/release:CHANNEL at the digest of
#   REPO/pod-reloader/release:VERSION after checking that the release, its
#   bundle and every image of the bundle's images_digests.json are in REPO,
#   and pushes the discovery tag if missing. Nothing is built. Channels may be
#   written alpha|beta|early-access|stable|rock-solid|lts or as in
#   ModuleUpdatePolicy (Alpha, EarlyAccess, RockSolid, Lts, …).
#
# crane reads registry credentials from ~/.docker/config.json (`crane auth
# login REGISTRY -u USER -p TOKEN`); 127.0.0.1/localhost registries are
# spoken to over plain HTTP.
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/../testbed/lib.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/oci-lib.sh"
cd "$REPO_ROOT"

# The channel tags of release.yaml's `channels`, in Deckhouse's order.
CHANNELS=()
load_channels() {
  local out
  out=$(release_tool channels) || die "release.yaml: bad channels"
  mapfile -t CHANNELS <<<"$out"
}
# Entries of the repository root that make up the module directory.
BUNDLE_ENTRIES=(.helmignore Chart.yaml module.yaml charts crds docs enabled monitoring openapi templates)

usage() { sed -n '2,59p' "$0"; exit 2; }

RELEASE_RE='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$'
check_version() {
  if [[ $1 =~ ^v[0-9]+\.[0-9]+\.[0-9]+[-+] ]]; then
    die "VERSION $1 is a prerelease or carries build metadata: Deckhouse's update walk keeps only the module repository's tags matching ^v\\d+\\.\\d+\\.\\d+\$, so no cluster could step through it; only vX.Y.Z is released (try a build on a test cluster with a ModulePullOverride instead)"
  fi
  [[ $1 =~ $RELEASE_RE ]] || die "VERSION must look like vX.Y.Z (got '${1}')"
}

# channel NAME: the channel tag for NAME (alpha … lts, or ModuleUpdatePolicy's
# Alpha … Lts), or fail when release.yaml does not list it.
channel() {
  local c
  c=$(sed -E 's/([a-z])([A-Z])/\1-\2/g' <<<"$1" | tr '[:upper:]' '[:lower:]')
  local k
  for k in "${CHANNELS[@]}"; do
    if [ "$c" = "$k" ]; then
      printf '%s\n' "$c"
      return 0
    fi
  done
  die "CHANNEL must be one of ${CHANNELS[*]} (got '${1}')"
}

# push_files ROOTFS REF TITLE DESCRIPTION: a one-layer image of ROOTFS (no
# entrypoint: Deckhouse only reads its files) at REF.
push_files() {
  local rootfs=$1 ref=$2 title=$3 description=$4 layer
  layer=$WORK/layer-$(basename "$rootfs").tar.gz
  make_layer "$rootfs" "$layer"
  local base
  base=$BUILD_ADDR/build/$(basename "$rootfs")
  crane append --oci-empty-base -f "$layer" -t "$base:layer" >/dev/null
  crane mutate "$base:layer" --set-platform linux/amd64 \
    -l "org.opencontainers.image.title=$title" \
    -l "org.opencontainers.image.description=$description" \
    -l "org.opencontainers.image.version=$VERSION" \
    -l "org.opencontainers.image.revision=$REVISION" \
    -l "org.opencontainers.image.created=$CREATED" \
    -l "org.opencontainers.image.source=$REPO_URL" \
    -t "$ref" >/dev/null
  crane config "$ref" |
    jq -cS --arg t "$CREATED" --arg by "scripts/release.sh $VERSION" '.created = $t | .history = [{created: $t, created_by: $by}]' |
    crane edit config "$ref" -t "$ref" >/dev/null
}

# normalize_modes DIR: directories and executables 0755, other files 0644.
normalize_modes() {
  find "$1" -type d -exec chmod 0755 {} +
  find "$1" -type f -perm /111 -exec chmod 0755 {} +
  find "$1" -type f ! -perm /111 -exec chmod 0644 {} +
}

build_bundle() {
  local rootfs=$WORK/bundle f
  mkdir -p "$rootfs"
  local present=()
  for f in "${BUNDLE_ENTRIES[@]}"; do
    [ -e "$f" ] && present+=("$f")
  done
  while IFS= read -r -d '' f; do
    [ -e "$f" ] || continue # tracked but deleted in the work tree
    mkdir -p "$rootfs/$(dirname "$f")"
    cp -p "$f" "$rootfs/$f"
  done < <(git ls-files -z -- "${present[@]}")
  install -D -m 0755 "$IMAGES_OUT/artifact/pod-reloader-hooks" "$rootfs/hooks/pod-reloader-hooks"
  cp "$IMAGES_OUT/images_digests.json" "$rootfs/images_digests.json"
  # --- SBOMs (supply chain): CycloneDX of each shipped binary, from scripts/images.sh.
  install -d -m 0755 "$rootfs/sbom"
  cp "$IMAGES_OUT"/sbom/*.cdx.json "$rootfs/sbom/"
  # --- end SBOMs
  printf '{"version":"%s"}\n' "$VERSION" >"$rootfs/version.json"
  normalize_modes "$rootfs"
  push_files "$rootfs" "$BUILD_ADDR/$MODULE_NAME:$VERSION" "pod-reloader module bundle" \
    "Deckhouse module pod-reloader $VERSION: chart, openapi, CRDs, docs, hooks, images_digests.json"
}

build_release_image() {
  local rootfs=$WORK/release
  mkdir -p "$rootfs"
  printf '{"version":"%s"}\n' "$VERSION" >"$rootfs/version.json"
  release_tool changelog "$VERSION" >"$rootfs/changelog.yaml"
  cp module.yaml "$rootfs/module.yaml"
  normalize_modes "$rootfs"
  push_files "$rootfs" "$BUILD_ADDR/$MODULE_NAME/release:$VERSION" "pod-reloader module release" \
    "Release metadata of the Deckhouse module pod-reloader $VERSION: version.json, changelog.yaml, module.yaml"
}

# discovery_tag REPO: Deckhouse finds the modules of a ModuleSource by listing
# the tags of REPO itself (GET /v2/<repo>/tags/list, never _catalog) and takes
# each tag as a module name. Deckhouse's publishing action makes that tag an
# empty OCI image (crane append --oci-empty-base --new_layer ""), the same
# digest every time; its content is never read.
discovery_tag() {
  local ref=$1:$MODULE_NAME d
  if d=$(crane digest "$ref" 2>/dev/null); then
    log "  $ref: discovery tag already there ($d)"
    return 0
  fi
  crane append --oci-empty-base --new_layer "" --new_tag "$ref" >/dev/null
  log "  pushed $ref (discovery tag, $(crane digest "$ref"))"
}

# reuse_images DIR: load the images of `scripts/images.sh --out DIR` into the
# build registry instead of building them, and set IMAGES_OUT=DIR. Refused
# unless they were built from a commit whose tree differs from HEAD in
# release.yaml only.
reuse_images() {
  local dir=$1 f
  for f in images.tsv images_digests.json artifact/pod-reloader-hooks oci/index.json; do
    [ -e "$dir/$f" ] || die "IMAGES_FROM=$dir: no $f (the output of scripts/images.sh --out DIR, with its OCI layout)"
  done
  crane push --index "$dir/oci" "$BUILD_ADDR/$MODULE_NAME:reused" >/dev/null
  local name digest rev=""
  while IFS=$'\t' read -r name _ digest _; do
    crane manifest "$BUILD_ADDR/$MODULE_NAME@$digest" >/dev/null || die "IMAGES_FROM=$dir: image $name $digest is not in its layout"
    rev=$(crane config "$BUILD_ADDR/$MODULE_NAME@$digest" | jq -r '.config.Labels["org.opencontainers.image.revision"] // ""')
  done <"$dir/images.tsv"
  local base=${rev%-dirty}
  git cat-file -e "$base^{commit}" 2>/dev/null || die "IMAGES_FROM=$dir: built from '$rev', not a commit of this repository"
  local changed
  changed=$(git diff --name-only "$base" HEAD -- . ':(exclude)release.yaml')
  [ -z "$changed" ] || die "IMAGES_FROM=$dir: built from $rev; since then changed: $(tr '\n' ' ' <<<"$changed")"
  if [ "$rev" != "$base" ] && [ "${ALLOW_DIRTY:-0}" != 1 ]; then
    die "IMAGES_FROM=$dir: built from a work tree with uncommitted changes ($rev; ALLOW_DIRTY=1 to use them)"
  fi
  log "reusing the images of $dir (built from $rev; HEAD differs in release.yaml only)"
  IMAGES_OUT=$dir
}

# publish SRC DST: copy SRC (in the build registry) to DST unless DST already
# holds the same digest; refuse to replace a different one unless FORCE=1.
publish() {
  local src=$1 dst=$2 want have
  want=$(crane digest "$src")
  if have=$(crane digest "$dst" 2>/dev/null); then
    if [ "$have" = "$want" ]; then
      log "  $dst: already there ($want)"
      return 0
    fi
    if [ "${FORCE:-0}" != 1 ]; then
      die "$dst is already published as $have; this build is $want (a release is never rebuilt: bump the version, or FORCE=1)"
    fi
    log "  FORCE=1: replacing $dst ($have)"
  fi
  crane copy "$src" "$dst" >/dev/null
  log "  pushed $dst ($want)"
}

cmd_release() {
  VERSION=${1:-}
  local repo=${2:-} chan=${3:-}
  [ -n "$VERSION" ] || die "VERSION is required: make release VERSION=vX.Y.Z [REGISTRY=host/path] [CHANNEL=alpha]"
  check_version "$VERSION"
  load_channels
  repo=${repo%/}
  [ -z "$chan" ] || chan=$(channel "$chan")
  [ -z "$chan" ] || [ -n "$repo" ] || die "CHANNEL needs REGISTRY"
  release_tool changelog "$VERSION" >/dev/null
  local declared
  declared=$(release_tool release-version)
  if [ "$declared" != "$VERSION" ]; then
    log "warning: release.yaml declares version $declared, releasing $VERSION"
  fi

  oci_tools
  git_meta
  REVISION=$GIT_COMMIT
  if [ "$GIT_DIRTY" = 1 ]; then
    REVISION=$GIT_COMMIT-dirty
    if [ -n "$repo" ] && [ "${ALLOW_DIRTY:-0}" != 1 ]; then
      git status --short --untracked-files=no >&2
      die "uncommitted changes: commit them first (or ALLOW_DIRTY=1 to publish a build labelled $REVISION)"
    fi
  fi
  REPO_URL=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && $1 ~ /^repository *= */{print $2; exit}' Cargo.toml)

  WORK=$(mktemp -d "${TMPDIR:-/tmp}/pod-reloader-release.XXXXXX")
  trap 'registry_stop; rm -rf "$WORK"' EXIT
  registry_start "$WORK/registry"
  BUILD_ADDR=$REGISTRY_ADDR

  if [ -n "${IMAGES_FROM:-}" ]; then
    reuse_images "$IMAGES_FROM"
  else
    IMAGES_OUT=$WORK/images
    scripts/images.sh --out "$IMAGES_OUT" --build-registry "$BUILD_ADDR" --no-layout >/dev/null
  fi
  build_bundle
  build_release_image

  local bundle_digest release_digest
  bundle_digest=$(crane digest "$BUILD_ADDR/$MODULE_NAME:$VERSION")
  release_digest=$(crane digest "$BUILD_ADDR/$MODULE_NAME/release:$VERSION")

  if [ -z "$repo" ]; then
    local out=$REPO_ROOT/target/release/$VERSION
    rm -rf "$out"
    mkdir -p "$out"
    crane pull --format=oci "$BUILD_ADDR/$MODULE_NAME:$VERSION" "$BUILD_ADDR/$MODULE_NAME/release:$VERSION" "$out/oci"
    cp "$IMAGES_OUT/images_digests.json" "$out/"
    log "dry run (no REGISTRY): nothing pushed; bundle and release image in $out/oci"
  else
    log "publishing $VERSION to $repo:"
    local name digest
    while IFS=$'\t' read -r name _ digest _; do
      publish "$BUILD_ADDR/$MODULE_NAME@$digest" "$repo/$MODULE_NAME@$digest"
      crane tag "$repo/$MODULE_NAME@$digest" "$name-${digest:7:12}" >/dev/null
    done <"$IMAGES_OUT/images.tsv"
    publish "$BUILD_ADDR/$MODULE_NAME:$VERSION" "$repo/$MODULE_NAME:$VERSION"
    publish "$BUILD_ADDR/$MODULE_NAME/release:$VERSION" "$repo/$MODULE_NAME/release:$VERSION"
    # Last: a module Deckhouse discovers must already have its release.
    discovery_tag "$repo"
  fi
  printf 'version\t%s\nbundle\t%s\nrelease\t%s\n' "$VERSION" "$bundle_digest" "$release_digest"
  sed 's/^\([^\t]*\)\t[^\t]*\t\([^\t]*\)\t.*/image:\1\t\2/' "$IMAGES_OUT/images.tsv"
  if [ -n "$chan" ]; then
    registry_stop
    cmd_promote "$VERSION" "$chan" "$repo"
  fi
}

# release_version REF: the version in the version.json of release image REF.
release_version() {
  crane export "$1" - | tar -xOf - version.json | jq -r .version
}

cmd_promote() {
  local version=${1:-} chan=${2:-} repo=${3:-}
  if [ -z "$version" ] || [ -z "$chan" ] || [ -z "$repo" ]; then
    die "usage: make promote VERSION=vX.Y.Z CHANNEL=alpha|beta|early-access|stable|rock-solid|lts REGISTRY=host/path"
  fi
  check_version "$version"
  load_channels
  chan=$(channel "$chan")
  repo=${repo%/}
  [ -n "${CRANE:-}" ] || oci_tools

  local rel=$repo/$MODULE_NAME/release digest
  digest=$(crane digest "$rel:$version") || die "$rel:$version not found: release it first (make release VERSION=$version REGISTRY=$repo)"
  local got
  got=$(release_version "$rel@$digest") || die "cannot read version.json of $rel@$digest"
  [ "$got" = "$version" ] || die "$rel:$version holds version.json $got"
  crane digest "$repo/$MODULE_NAME:$version" >/dev/null || die "bundle $repo/$MODULE_NAME:$version not found"
  local d
  for d in $(crane export "$repo/$MODULE_NAME:$version" - | tar -xOf - images_digests.json | jq -r '.[]'); do
    crane digest "$repo/$MODULE_NAME@$d" >/dev/null || die "image $repo/$MODULE_NAME@$d of the bundle is missing"
  done

  local before=none was
  if was=$(crane digest "$rel:$chan" 2>/dev/null); then
    before="$(release_version "$rel@$was") ($was)"
  fi
  local prev i
  for i in "${!CHANNELS[@]}"; do
    if [ "${CHANNELS[$i]}" = "$chan" ] && [ "$i" -gt 0 ]; then
      prev=${CHANNELS[$((i - 1))]}
      if [ "$(crane digest "$rel:$prev" 2>/dev/null)" != "$digest" ]; then
        log "note: $version is not on $prev; Deckhouse's order is ${CHANNELS[*]}"
      fi
    fi
  done
  crane tag "$rel@$digest" "$chan" >/dev/null
  log "$rel:$chan: $before -> $version ($digest)"
  discovery_tag "$repo"
}

case ${1:-} in
  release) shift; cmd_release "$@" ;;
  promote) shift; cmd_promote "$@" ;;
  *) usage ;;
esac
