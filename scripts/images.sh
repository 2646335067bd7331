#!/usr/bin/env bash
# make images: the module's OCI images, built with no Docker engine.
#
#   scripts/images.sh [--out DIR] [--push REPO] [--build-registry ADDR] [--no-layout]
#
# 1. Static musl release binaries of the controller and the hooks
#    (x86_64-unknown-linux-musl, symbols stripped, cargo's registry paths
#    remapped), built with `cargo auditable` (the dependency list embedded
#    as a .dep-v0 section, for scanners) by the toolchain of
#    rust-toolchain.toml, with the flags of the werf build line; compiled
#    into a cache outside the clone
#    (${XDG_CACHE_HOME:-~/.cache}/pod-reloader/cargo-target-musl), so a warm
#    run compiles nothing. The cargo tools come from scripts/cargo-tools.sh.
# 2. The rust artifact's /out tree of images/pod-reloader/werf.inc.yaml, laid
#    out here: both binaries, /etc/passwd and /etc/group naming the non-root
#    user 64535, the CA bundle of the local Debian ca-certificates, the
#    controller's (empty, read-only) mount targets, and
#    /usr/share/doc/pod-reloader/ with LICENSE and THIRD-PARTY-LICENSES.txt
#    (cargo about, about.toml + about.hbs: the licenses of every crate linked
#    into the binaries, with their texts).
# 3. One image per images/<dir>/werf.inc.yaml, named camelCase(<dir>)
#    (podReloader, hooks): the image's `import`s (add -> to) copied into a
#    root filesystem, packed as one deterministic layer (GNU tar, entries
#    sorted, mtime = commit time, uid/gid 0, gzip -9n), put on an empty OCI
#    base with `crane append`; `crane mutate` sets platform, entrypoint, user,
#    working dir, ports and the org.opencontainers.image.* labels (revision =
#    commit, created = commit time); `crane edit config` sets the config's
#    `created` to the commit time. Same commit, same digests.
#
# The images are assembled in a throwaway registry on 127.0.0.1 (or in ADDR,
# a running one, given by scripts/release.sh). Results in DIR (default
# target/images):
#   images_digests.json   {"hooks": "sha256:…", "podReloader": "sha256:…"}
#   images.tsv            name, dir, digest, compressed size in bytes
#   artifact/             the /out tree (binaries included)
#   sbom/<binary>.cdx.json  CycloneDX SBOM of each shipped binary
#                         (cargo cyclonedx; serial number and timestamp
#                         derived from the commit, so a rebuild gives the
#                         same bytes)
#   oci/                  both images as an OCI image layout (unless --no-layout)
# With --push REPO the images are also copied to REPO/pod-reloader by digest
# (Deckhouse pulls <ModuleSource repo>/pod-reloader@<digest>), each tagged
# <name>-<first 12 hex digits of its digest> so registries that clean up
# untagged manifests keep them.
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/../testbed/lib.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/oci-lib.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/cargo-tools.sh"
cd "$REPO_ROOT"

OUT=$REPO_ROOT/target/images
PUSH=
BUILD_REGISTRY=
LAYOUT=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --push) PUSH=${2%/}; shift 2 ;;
    --build-registry) BUILD_REGISTRY=$2; shift 2 ;;
    --no-layout) LAYOUT=0; shift ;;
    -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

TARGET=x86_64-unknown-linux-musl
MUSL_TARGET_DIR=${POD_RELOADER_MUSL_TARGET_DIR:-$RELEASE_CACHE/cargo-target-musl}
CRATE_VERSION=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && $1 ~ /^version *= */{print $2; exit}' Cargo.toml)
REPO_URL=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && $1 ~ /^repository *= */{print $2; exit}' Cargo.toml)
LICENSE=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && $1 ~ /^license *= */{print $2; exit}' Cargo.toml)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pod-reloader-images.XXXXXX")
cleanup() {
  registry_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- toolchain ---------------------------------------------------------------
# rustup runs the toolchain of rust-toolchain.toml here (cd "$REPO_ROOT"
# above), the one the werf build's rust image carries.
ensure_toolchain() {
  if command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET" >&2
  fi
  # ring compiles C and assembly for the musl target with musl-gcc.
  if ! command -v musl-gcc >/dev/null; then
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    log "installing musl-tools (musl-gcc, for ring's C code)"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends musl-tools; } >/dev/null; then
      die "could not install musl-tools; install it by hand (apt-get install musl-tools)"
    fi
  fi
  [ -r /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)"
  # cargo auditable, cargo about, cargo cyclonedx (pinned, cached).
  "$REPO_ROOT/scripts/cargo-tools.sh" install >/dev/null || die "could not install the cargo tools (scripts/cargo-tools.sh)"
  PATH=$CARGO_TOOLS_BIN:$PATH
}

# --- 1. binaries --------------------------------------------------------------
build_binaries() {
  local t0=$SECONDS cargo_home=${CARGO_HOME:-$HOME/.cargo}
  log "cargo auditable build --release --target $TARGET (cache: $MUSL_TARGET_DIR)"
  # The werf build line's flags (images/pod-reloader/werf.inc.yaml).
  # RUSTFLAGS replaces any from the environment: what goes into a published
  # binary is decided here. Workspace paths are already relative; cargo's
  # registry sources are mapped to /cargo so the build machine's home does
  # not end up in the binary. SOURCE_DATE_EPOCH (the commit time, for the
  # layers) is kept from cargo: ring's build script re-runs when it changes,
  # which rebuilt ring, rustls, kube and both binaries for every commit
  # (12-15 min here instead of under 20 s); no crate stamps it into a binary.
  env -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u SOURCE_DATE_EPOCH \
    CARGO_TARGET_DIR="$MUSL_TARGET_DIR" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_INCREMENTAL=0 \
    RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo" \
    cargo auditable build --release --locked --target "$TARGET" \
    --bin pod-reloader --bin pod-reloader-hooks >&2
  BIN=$MUSL_TARGET_DIR/$TARGET/release
  local b
  for b in pod-reloader pod-reloader-hooks; do
    if file "$BIN/$b" | grep -q 'dynamically linked'; then
      die "$BIN/$b is dynamically linked"
    fi
  done
  log "binaries ready in $((SECONDS - t0)) s"
}

# --- 2. the artifact's /out tree (mirrors the rust-artifact setup in
# images/pod-reloader/werf.inc.yaml) --------------------------------------------
lay_out_artifact() {
  local out=$1
  rm -rf "$out"
  install -D -m 0755 "$BIN/pod-reloader" "$out/pod-reloader"
  install -D -m 0755 "$BIN/pod-reloader-hooks" "$out/pod-reloader-hooks"
  install -d -m 0755 "$out/etc" "$out/etc/pod-reloader" "$out/etc/pod-reloader/alert" "$out/etc/pod-reloader/record-key" "$out/etc/pod-reloader/webhook-mode"
  install -m 0444 /dev/null "$out/etc/pod-reloader/config.yaml"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'pod-reloader:x:64535:64535:pod-reloader:/nonexistent:/sbin/nologin' >"$out/etc/passwd"
  printf '%s\n' 'root:x:0:' 'pod-reloader:x:64535:' >"$out/etc/group"
  chmod 0644 "$out/etc/passwd" "$out/etc/group"
  install -d -m 0755 "$out/etc/ssl" "$out/etc/ssl/certs"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
  install -d -m 0755 "$out/usr" "$out/usr/share" "$out/usr/share/doc" "$out/usr/share/doc/pod-reloader"
  install -m 0644 LICENSE "$out/usr/share/doc/pod-reloader/LICENSE"
  third_party_licenses "$out/usr/share/doc/pod-reloader"
}

# third_party_licenses DIR: DIR/THIRD-PARTY-LICENSES.txt, the licenses of
# the crates the controller and the hooks link, with their texts (about.toml:
# musl target, no build or dev dependencies; about.hbs). One report for the
# workspace: the binaries are built together, so features unify across them
# and a report per crate misses crates one binary links only through the
# other's features (cargo about -m hooks/Cargo.toml left out `log`, which the
# hooks binary links); the workspace report is a superset of both. The werf
# build runs the same line. cargo about reads every license file of some 250
# crates (about 6 minutes on two loaded cores), so the report is cached under
# the hash of what it is made from: the lock file, the manifests, about.toml,
# about.hbs and the tool pins.
third_party_licenses() {
  local dir=$1 key cache
  key=$( { printf '%s\n' "${CARGO_TOOLS[@]}"; git ls-files -z -- Cargo.lock '*Cargo.toml' about.toml about.hbs |
    xargs -0 sha256sum; } | sha256sum | cut -c1-32)
  cache=$RELEASE_CACHE/third-party-licenses/$key
  mkdir -p "$cache"
  if [ ! -s "$cache/THIRD-PARTY-LICENSES.txt" ]; then
    log "cargo about generate (cached in $cache)"
    cargo about generate --locked --offline --fail --workspace -c about.toml \
      -o "$cache/THIRD-PARTY-LICENSES.txt.tmp" about.hbs >"$WORK/about.log" 2>&1 ||
      { cat "$WORK/about.log" >&2; die "cargo about generate failed"; }
    mv "$cache/THIRD-PARTY-LICENSES.txt.tmp" "$cache/THIRD-PARTY-LICENSES.txt"
  fi
  install -m 0644 "$cache/THIRD-PARTY-LICENSES.txt" "$dir/THIRD-PARTY-LICENSES.txt"
}

# --- SBOMs ----------------------------------------------------------------------
# write_sboms DIR: DIR/<binary>.cdx.json for both binaries (cargo cyclonedx:
# CycloneDX 1.5 JSON of each binary target, musl target, no build
# dependencies: the crates linked into the binary). cargo cyclonedx writes
# <binary>_bin.cdx.json next to every Cargo.toml of the workspace; the two
# wanted are moved out and the others removed at once. Made reproducible:
# the random serial number becomes a UUID derived from the commit and the
# binary, the timestamp the commit time, and the clone's path in bom-refs
# /src (where the werf build has the sources).
write_sboms() {
  local dir=$1 crate bin serial f
  mkdir -p "$dir"
  cargo cyclonedx --format json --spec-version 1.5 --target "$TARGET" \
    --describe binaries --no-build-deps >"$WORK/cyclonedx.log" 2>&1 ||
    { cat "$WORK/cyclonedx.log" >&2; rm -f ./*/*_bin.cdx.json; die "cargo cyclonedx failed"; }
  for crate in controller:pod-reloader hooks:pod-reloader-hooks; do
    bin=${crate#*:} crate=${crate%%:*}
    f=$crate/${bin}_bin.cdx.json
    [ -f "$f" ] || { rm -f ./*/*_bin.cdx.json; die "cargo cyclonedx wrote no $f"; }
    serial=$(printf '%s %s' "$GIT_COMMIT" "$bin" | sha256sum |
      sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-5\3-8\4-\5/')
    jq -S --arg serial "urn:uuid:$serial" --arg t "$CREATED" --arg root "path+file://$REPO_ROOT" \
      '.serialNumber = $serial | .metadata.timestamp = $t |
       walk(if type == "string" then (if startswith($root) then "path+file:///src" + .[($root | length):] else . end) else . end)' \
      "$f" >"$dir/$bin.cdx.json"
  done
  rm -f ./*/*_bin.cdx.json
}

# --- 3. images ----------------------------------------------------------------
# finish_image REF CREATED CREATED_BY: set the config's created time (and its
# one history entry's) to CREATED; the manifest is re-pushed to REF.
finish_image() {
  local ref=$1 created=$2 by=$3
  crane config "$ref" |
    jq -cS --arg t "$created" --arg by "$by" '.created = $t | .history = [{created: $t, created_by: $by}]' |
    crane edit config "$ref" -t "$ref" >/dev/null
}

# image_size REF: compressed size: manifest + config + layers, in bytes.
image_size() {
  local m
  m=$(crane manifest "$1")
  jq -r --argjson ms "$(printf '%s' "$m" | wc -c)" '$ms + .config.size + ([.layers[].size] | add)' <<<"$m"
}

build_image() {
  local dir=$1 spec name rootfs layer base ref i n add to
  spec=$(release_tool image-spec "$dir")
  name=$(jq -r .name <<<"$spec")
  rootfs=$WORK/rootfs-$dir
  layer=$WORK/layer-$dir.tar.gz
  rm -rf "$rootfs"
  install -d -m 0755 "$rootfs"
  n=$(jq '.imports | length' <<<"$spec")
  for ((i = 0; i < n; i++)); do
    add=$(jq -r ".imports[$i].add" <<<"$spec")
    to=$(jq -r ".imports[$i].to" <<<"$spec")
    case $add in
      /out/*) ;;
      *) die "images/$dir: import of $add: only the artifact's /out tree is built here" ;;
    esac
    [ -e "$ARTIFACT${add#/out}" ] || die "images/$dir: $add is not in the artifact"
    # Parents the import creates are plain 0755 directories.
    local parent
    parent=$(dirname "$to")
    [ "$parent" = / ] || install -d -m 0755 "$rootfs$parent"
    cp -a "$ARTIFACT${add#/out}" "$rootfs$to"
  done
  make_layer "$rootfs" "$layer"

  local title description
  case $dir in
    pod-reloader)
      title=pod-reloader
      description="pod-reloader controller: rolls workloads when the ConfigMaps and Secrets they use change" ;;
    hooks)
      title=pod-reloader-hooks
      description="Hooks of the pod-reloader Deckhouse module (addon-operator batch hook protocol)" ;;
    *)
      title=pod-reloader-$dir
      description="pod-reloader module image $name" ;;
  esac
  local args=(
    --set-platform linux/amd64
    --user "$(jq -r .config.user <<<"$spec")"
    --workdir "$(jq -r .config.workingDir <<<"$spec")"
    --entrypoint "$(jq -r '.config.entrypoint | join(",")' <<<"$spec")"
    -l "org.opencontainers.image.title=$title"
    -l "org.opencontainers.image.description=$description"
    -l "org.opencontainers.image.version=$CRATE_VERSION"
    -l "org.opencontainers.image.revision=$REVISION"
    -l "org.opencontainers.image.created=$CREATED"
    -l "org.opencontainers.image.source=$REPO_URL"
    -l "org.opencontainers.image.licenses=$LICENSE"
  )
  if [ -e "$rootfs/etc/ssl/certs/ca-certificates.crt" ]; then
    args+=(-l "io.deckhouse.pod-reloader.ca-certificates=debian/$CA_VERSION")
  fi
  if [ "$(jq '.config.expose | length' <<<"$spec")" -gt 0 ]; then
    args+=(--exposed-ports "$(jq -r '.config.expose | join(",")' <<<"$spec")")
  fi

  base=$BUILD_ADDR/build/$dir
  ref=$BUILD_ADDR/$MODULE_NAME:image-$name
  crane append --oci-empty-base -f "$layer" -t "$base:layer" >/dev/null
  crane mutate "$base:layer" "${args[@]}" -t "$ref" >/dev/null
  finish_image "$ref" "$CREATED" "scripts/images.sh: images/$dir/werf.inc.yaml"

  local digest size
  digest=$(crane digest "$ref")
  size=$(image_size "$ref")
  printf '%s\t%s\t%s\t%s\n' "$name" "$dir" "$digest" "$size" >>"$OUT/images.tsv"
  log "$(printf '  %-12s %s  %s bytes (%s MiB) compressed' "$name" "$digest" "$size" "$(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}')")"
}

main() {
  local t0=$SECONDS
  ensure_toolchain
  oci_tools
  git_meta
  REVISION=$GIT_COMMIT
  if [ "$GIT_DIRTY" = 1 ]; then
    REVISION=$GIT_COMMIT-dirty
    log "warning: the work tree has uncommitted changes; images are labelled revision=$REVISION"
  fi
  CA_VERSION=$(dpkg-query -W -f='${Version}' ca-certificates 2>/dev/null || echo unknown)

  build_binaries
  mkdir -p "$OUT"
  ARTIFACT=$OUT/artifact
  lay_out_artifact "$ARTIFACT"
  write_sboms "$OUT/sbom"
  : >"$OUT/images.tsv"

  if [ -n "$BUILD_REGISTRY" ]; then
    BUILD_ADDR=$BUILD_REGISTRY
  else
    registry_start "$WORK/registry"
    BUILD_ADDR=$REGISTRY_ADDR
  fi

  log "images (commit ${GIT_COMMIT:0:12}, created $CREATED):"
  local dir
  while read -r dir; do
    build_image "$dir"
  done < <(release_tool image-dirs)

  jq -R -s -S 'split("\n") | map(select(length > 0) | split("\t")) | map({(.[0]): .[2]}) | add' \
    "$OUT/images.tsv" >"$OUT/images_digests.json"

  if [ "$LAYOUT" = 1 ]; then
    rm -rf "$OUT/oci"
    local refs=() name digest
    while IFS=$'\t' read -r name _ digest _; do
      refs+=("$BUILD_ADDR/$MODULE_NAME@$digest")
    done <"$OUT/images.tsv"
    crane pull --format=oci "${refs[@]}" "$OUT/oci"
    # Name each manifest of the layout after its image (podReloader, hooks).
    jq --argjson names "$(jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[2]): .[0]}) | add' "$OUT/images.tsv")" \
      '.manifests |= map(.annotations = {"org.opencontainers.image.ref.name": $names[.digest]})' \
      "$OUT/oci/index.json" >"$WORK/index.json"
    mv "$WORK/index.json" "$OUT/oci/index.json"
  fi

  if [ -n "$PUSH" ]; then
    local name digest
    while IFS=$'\t' read -r name _ digest _; do
      crane copy "$BUILD_ADDR/$MODULE_NAME@$digest" "$PUSH/$MODULE_NAME@$digest" >/dev/null
      crane tag "$PUSH/$MODULE_NAME@$digest" "$name-${digest:7:12}" >/dev/null
      log "pushed $PUSH/$MODULE_NAME@$digest ($name-${digest:7:12})"
    done <"$OUT/images.tsv"
  fi
  log "images built in $((SECONDS - t0)) s; digests in $OUT/images_digests.json"
  cat "$OUT/images_digests.json"
}

main
