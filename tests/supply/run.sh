#!/usr/bin/env bash
# Functions run through check() (not unreachable).
# shellcheck disable=SC2317
#
# Supply-chain tests, run by `make test` (scripts/test.sh); alone:
# `tests/supply/run.sh [toolchain|werf|deny|images]...` (default: all).
#
#   toolchain  rust-toolchain.toml pins one X.Y.Z with rustfmt and clippy;
#              cargo here runs it; Cargo.toml's rust-version is its X.Y;
#              the werf files use it (their $rustToolchain, the rust image
#              tag) and no other Rust version; no download piped to a shell
#              or left unchecked (curl, wget, rustup-init) in the werf files;
#              werf's cargo-auditable is the pin of scripts/cargo-tools.sh.
#   werf       the build context images/*/werf.inc.yaml describes (its `git`
#              includePaths/excludePaths, tests/supply/werf_context.py), laid
#              out alone (~/.cache/pod-reloader/werf-context/<clone>), where the cargo lines of the
#              werf setup stage run offline (the crates are in the local
#              registry cache from earlier builds): the build line (the
#              license report lines are held to scripts/images.sh's, which
#              the images part checks). The debug profile instead
#              of --release: the context, the lock file and the flags are
#              what this test is about, and the release profile (fat LTO, one
#              codegen unit) costs about five minutes more per change on two
#              cores; scripts/images.sh builds the release profile with the
#              same flags in the release and images suites.
#   deny       LICENSE is the Apache-2.0 text Cargo.toml names; `cargo deny
#              check licenses bans sources` with deny.toml; `cargo deny check
#              advisories` against the RustSec snapshot ../shared/advisory-db
#              read offline (SKIP with the reason when it is absent).
#   images     scripts/images.sh: both binaries carry cargo auditable's
#              .dep-v0 dependency list; both image layers hold
#              /usr/share/doc/pod-reloader/LICENSE and
#              THIRD-PARTY-LICENSES.txt naming every crate linked into each; one CycloneDX SBOM per
#              binary (target/images/sbom/<binary>.cdx.json) whose components
#              are exactly the crates the binary embeds; SBOMs are
#              byte-identical across builds.
#
# Ends with "N passed, N failed" (", N skipped"); exits non-zero on failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR/..
. "$ROOT/tests/lib.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$ROOT/scripts/cargo-tools.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pod-reloader-supply-tests.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CONTEXT_PY=$HERE/werf_context.py
ADVISORY_DB=${POD_RELOADER_ADVISORY_DB:-$ROOT/../shared/advisory-db}
WERF_TARGET_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/cargo-target-werf-context
WERF_CONTEXT=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/werf-context/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)

PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(toolchain werf deny images)

channel() { sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' rust-toolchain.toml; }
CHANNEL=$(channel)
# The image that holds the workspace build (the one with a `git` section).
builder_werf() { grep -l '^git:' images/*/werf.inc.yaml; }

# --- toolchain ----------------------------------------------------------------
# other_rust_versions: any X.Y(.Z) right after "rust" (rust:1.95,
# rust-version = "1.95", Rust 1.95, rustc 1.95.0) in the repository's files
# (tracked, or new and not ignored) must be the pinned X.Y.Z or its X.Y.
other_rust_versions() {
  local found
  found=$(git ls-files -z --cached --others --exclude-standard |
    xargs -0 grep -InoiE 'rust(c|-version| version|:|_version)?[ =":]*"?[0-9]+\.[0-9]+(\.[0-9]+)?' 2>/dev/null |
    grep -vE "[^0-9.](${CHANNEL//./\\.}|${CHANNEL%.*})\$" || true)
  [ -z "$found" ] || { echo "$found"; return 1; }
}

toolchain_suite() {
  section "toolchain (rust-toolchain.toml: ${CHANNEL:-none})"
  check "rust-toolchain.toml pins one X.Y.Z channel with rustfmt and clippy" bash -c '
    grep -Eq "^channel = \"[0-9]+\.[0-9]+\.[0-9]+\"$" rust-toolchain.toml &&
    grep -Eq "^components = .*\"rustfmt\"" rust-toolchain.toml &&
    grep -Eq "^components = .*\"clippy\"" rust-toolchain.toml'
  check "cargo and rustc here are $CHANNEL (rustup reads rust-toolchain.toml)" bash -c "
    rustc --version | tee /dev/stderr | grep -q '^rustc $CHANNEL ' &&
    cargo --version | tee /dev/stderr | grep -q '^cargo $CHANNEL '"
  check "Cargo.toml rust-version is ${CHANNEL%.*} (the toolchain's X.Y)" \
    grep -qx "rust-version = \"${CHANNEL%.*}\"" Cargo.toml
  local builder
  builder=$(builder_werf)
  check "$builder builds on rust:$CHANNEL-alpine with \$rustToolchain = $CHANNEL" bash -c "
    python3 '$CONTEXT_PY' spec '$builder' | jq -e --arg v '$CHANNEL' \
      '.vars.rustToolchain == \$v and .from == \"docker.io/library/rust:\" + \$v + \"-alpine\"'"
  local pins
  pins=$(printf '%s\n' "${CARGO_TOOLS[@]}" | jq -R 'split("@") | {(.[0]): (.[1] | split("+")[0])}' | jq -s add)
  check "werf installs cargo-auditable and cargo-about --locked at the pins of scripts/cargo-tools.sh" bash -c "
    python3 '$CONTEXT_PY' spec '$builder' | jq -e --argjson pins '$pins' '
      .vars.cargoAuditable == \$pins[\"cargo-auditable\"] and .vars.cargoAbout == \$pins[\"cargo-about\"] and
      ([.shell[][] | select(test(\"cargo install\"))] | length == 2 and all(test(\"--locked\")))'"
  check "no unchecked download in the werf files (curl, wget, rustup-init, | sh)" bash -c '
    ! grep -nE "curl|wget|rustup-init|sh\.rustup|\| *(ba)?sh\b" images/*/werf.inc.yaml'
  check "no other Rust version named in the repository" other_rust_versions
}

# --- werf build context ----------------------------------------------------------
werf_suite() {
  section "werf build context (what Deckhouse's module CI builds)"
  local builder spec line ctx
  builder=$(builder_werf)
  spec=$WORK/werf-spec.json
  if ! python3 "$CONTEXT_PY" spec "$builder" >"$spec" 2>"$WORK/spec.err"; then
    fail "read $builder"
    indent <"$WORK/spec.err"
    return
  fi
  line=$(jq -r .build "$spec")
  check "the build line is offline and locked: $line" bash -c "
    grep -q -- '--locked' <<<'$line' && grep -q -- '--offline' <<<'$line'"
  check "dependencies are fetched --locked before the build" \
    jq -e '[.shell[][] | select(test("cargo fetch"))] | length > 0 and all(test("--locked"))' "$spec"

  # The context alone: wiped and laid out again each run, file times kept so
  # an unchanged tree compiles nothing. Outside the clone (one per clone), so
  # linters that walk the module directory never see a second copy.
  ctx=$WERF_CONTEXT
  rm -rf "$ctx"
  mkdir -p "$ctx"
  local n
  if ! n=$(python3 "$CONTEXT_PY" assemble "$builder" "$ctx" 2>"$WORK/assemble.err"); then
    fail "lay out the build context of $builder"
    indent <"$WORK/assemble.err"
    return
  fi
  pass "build context of $builder laid out: $n files in $ctx"

  # The werf line runs in /src; the image's CARGO_HOME is the rust image's,
  # here the local one (the registry cache). RUSTUP_TOOLCHAIN stands for the
  # image's one toolchain.
  local src t0
  src=$ctx/$(jq -r '.git[0].to | ltrimstr("/")' "$spec")
  mkdir -p "$ctx/out"
  run_in_context() {
    (cd "$src" &&
      env CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" CARGO_NET_OFFLINE=true \
        RUSTUP_TOOLCHAIN="$(jq -r .vars.rustToolchain "$spec")" \
        CARGO_TARGET_DIR="$WERF_TARGET_DIR" PATH="$CARGO_TOOLS_BIN:$PATH" \
        nice sh -c "$1") >"$WORK/werf-run.log" 2>&1
  }
  # The build line. The license reports (cargo about, minutes for each
  # binary) are not run here: the check below holds them to the lines
  # scripts/images.sh runs, whose output the images part checks.
  local cmd
  while IFS= read -r cmd; do
    cmd=${cmd#cd /src && }
    cmd=${cmd/ --release / }
    t0=$SECONDS
    if run_in_context "$cmd"; then
      pass "werf setup in the context, offline: ${cmd:0:140} ($((SECONDS - t0)) s)"
    else
      fail "werf setup in the context, offline: $cmd"
      grep -vE '^ +(Compiling|Checking|Fresh) ' "$WORK/werf-run.log" | tail -n 25 | indent
      return
    fi
  done < <(jq -r .build "$spec")
  check "werf's license report is scripts/images.sh's cargo about line" \
    werf_about_lines "$spec"
}

# werf_about_lines SPEC: the werf setup has one cargo about line, with the
# arguments of scripts/images.sh's (the output path aside).
werf_about_lines() {
  local ours werf
  ours=$(grep -oE '^ +cargo about generate (--[a-z]+ )+' scripts/images.sh | sed 's/^ *//; s/ *$//')
  werf=$(jq -r '.shell.setup[] | select(test("cargo about"))' "$1")
  printf 'images.sh: %s\nwerf:\n%s\n' "$ours" "$werf"
  [ "$(grep -c . <<<"$werf")" = 1 ] &&
    grep -qF -- "$ours -c about.toml -o /out/usr/share/doc/pod-reloader/THIRD-PARTY-LICENSES.txt about.hbs" <<<"$werf"
}

# --- cargo deny -------------------------------------------------------------------
deny_suite() {
  section "licenses, bans, sources, advisories (cargo deny, deny.toml)"
  check "LICENSE is the Apache License 2.0 that Cargo.toml names" bash -c '
    grep -qx "license = \"Apache-2.0\"" Cargo.toml &&
    head -3 LICENSE | grep -q "Apache License" && head -3 LICENSE | grep -q "Version 2.0, January 2004" &&
    grep -q "END OF TERMS AND CONDITIONS" LICENSE'
  # cargo deny reads `cargo metadata` of every platform, so every crate of
  # Cargo.lock must be in the registry cache (windows-sys and the like are
  # never built here): fetched first, from crates.io, checked against
  # Cargo.lock; the checks themselves run offline.
  check "cargo fetch --locked (every crate of Cargo.lock in the local registry)" cargo fetch --locked
  check "cargo deny check licenses bans sources" \
    env PATH="$CARGO_TOOLS_BIN:$PATH" cargo deny --offline check licenses bans sources

  if [ ! -f "$ADVISORY_DB/README.md" ] || [ ! -d "$ADVISORY_DB/crates" ]; then
    skip "cargo deny check advisories: no RustSec snapshot at $ADVISORY_DB (../shared/advisory-db)"
    return
  fi
  # cargo-deny opens the database as a git checkout under
  # $CARGO_HOME/advisory-dbs, in the directory it derives from deny.toml's
  # db-urls: here a throwaway repository of the snapshot, committed at the
  # snapshot's date (the staleness check then measures the snapshot's age),
  # in a CARGO_HOME of this run whose registry is the real one.
  local home=$WORK/cargo-home real_home=${CARGO_HOME:-$HOME/.cargo} db snapdate
  db=$home/advisory-dbs/advisory-db-3157b0e258782691
  snapdate=$(grep -oE '\(20[0-9]{2}-[0-9]{2}-[0-9]{2}\)' "$ADVISORY_DB/SNAPSHOT.md" | head -1 | tr -d '()')
  mkdir -p "$home/advisory-dbs"
  ln -s "$real_home/registry" "$home/registry"
  [ ! -e "$real_home/config.toml" ] || ln -s "$real_home/config.toml" "$home/config.toml"
  cp -r "$ADVISORY_DB" "$db"
  chmod -R u+w "$db"
  (cd "$db" && git init -q && git add -A &&
    GIT_AUTHOR_DATE="${snapdate}T00:00:00Z" GIT_COMMITTER_DATE="${snapdate}T00:00:00Z" \
      git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "RustSec snapshot $snapdate") ||
    { fail "make a git copy of $ADVISORY_DB"; return; }
  check "cargo deny check advisories (RustSec snapshot of $snapdate, offline, $(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l) advisories)" \
    env PATH="$CARGO_TOOLS_BIN:$PATH" CARGO_HOME="$home" cargo deny --offline check advisories
}

# --- images: auditable binaries, licenses, SBOMs ---------------------------------
# dep_list BINARY KIND: "name version" of the crates.io crates cargo
# auditable recorded in BINARY (the .dep-v0 section: zlib-compressed JSON),
# sorted. KIND runtime: those linked in; all: also the build-time ones
# (build scripts, proc macros: kind "build"). Workspace crates left out.
dep_list() {
  rm -f "$WORK/dep-v0.bin"
  objcopy --dump-section .dep-v0="$WORK/dep-v0.bin" "$1" "$WORK/objcopy.out" &&
    [ -s "$WORK/dep-v0.bin" ] &&
    python3 -c '
import json, sys, zlib
deps = json.loads(zlib.decompress(open(sys.argv[1], "rb").read()))
for p in deps["packages"]:
    if p.get("source") != "local" and (sys.argv[2] == "all" or p.get("kind", "runtime") == "runtime"):
        print(p["name"], p["version"])' "$WORK/dep-v0.bin" "$2" | LC_ALL=C sort -u
}

# layer_files OCI_DIR NAME DEST: extract the single layer of image NAME of an
# OCI layout into DEST.
layer_files() {
  local oci=$1 name=$2 dest=$3 manifest layer
  manifest=$(jq -r --arg n "$name" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $n) | .digest' "$oci/index.json")
  layer=$(jq -r '.layers[0].digest' "$oci/blobs/sha256/${manifest#sha256:}")
  mkdir -p "$dest"
  tar -xzf "$oci/blobs/sha256/${layer#sha256:}" -C "$dest"
}

images_suite() {
  section "images: cargo auditable, third-party licenses, SBOMs (scripts/images.sh)"
  local out=$WORK/images t0=$SECONDS
  if ! scripts/images.sh --out "$out" >"$WORK/images.log" 2>&1; then
    fail "scripts/images.sh"
    tail -n 30 "$WORK/images.log" | indent
    return
  fi
  pass "scripts/images.sh ($((SECONDS - t0)) s)"
  local image bin fs
  for image in podReloader hooks; do
    fs=$WORK/fs-$image
    if ! layer_files "$out/oci" "$image" "$fs" 2>"$WORK/layer.err"; then
      fail "$image: extract its layer"
      indent <"$WORK/layer.err"
      continue
    fi
    case $image in
      podReloader) bin=pod-reloader; binpath=$fs/pod-reloader ;;
      hooks) bin=pod-reloader-hooks; binpath=$fs/hooks/pod-reloader-hooks ;;
    esac
    if dep_list "$binpath" runtime >"$WORK/deps-$bin.txt" 2>"$WORK/deps.err" && [ -s "$WORK/deps-$bin.txt" ] &&
      dep_list "$binpath" all >"$WORK/deps-all-$bin.txt" 2>>"$WORK/deps.err"; then
      pass "$image: $bin carries its dependency list (.dep-v0, $(wc -l <"$WORK/deps-$bin.txt") crates)"
    else
      fail "$image: $bin has no readable .dep-v0 section (not built with cargo auditable?)"
      indent <"$WORK/deps.err"
      continue
    fi
    check "$image: /usr/share/doc/pod-reloader/LICENSE is the repository's" \
      cmp "$fs/usr/share/doc/pod-reloader/LICENSE" LICENSE
    check "$image: THIRD-PARTY-LICENSES.txt names every crate linked into $bin, with the license texts" \
      licenses_cover "$fs/usr/share/doc/pod-reloader/THIRD-PARTY-LICENSES.txt" "$WORK/deps-$bin.txt"
    check "SBOM $bin.cdx.json: CycloneDX of $bin; lists every crate linked in, and only crates of $bin's build" \
      sbom_matches "$out/sbom/$bin.cdx.json" "$bin" "$WORK/deps-$bin.txt" "$WORK/deps-all-$bin.txt"
  done
  # A second SBOM run from the same commit gives the same bytes (they go into
  # the release bundle, whose digest must not change on a rebuild).
  if scripts/images.sh --out "$WORK/images2" --no-layout >"$WORK/images2.log" 2>&1; then
    check "SBOMs are byte-identical across builds" diff -r "$out/sbom" "$WORK/images2/sbom"
  else
    fail "second scripts/images.sh"
    tail -n 20 "$WORK/images2.log" | indent
  fi
}

# licenses_cover FILE DEPS: every "name version" of DEPS is listed in FILE,
# and FILE holds the full texts (Apache-2.0 and MIT, what nearly all use).
licenses_cover() {
  local file=$1 deps=$2 missing
  [ -s "$file" ] || { echo "$file missing or empty"; return 1; }
  missing=$(while read -r name version; do
    grep -qF -- "- $name $version" "$file" || echo "$name $version"
  done <"$deps")
  [ -z "$missing" ] || { echo "not in $file:"; echo "$missing"; return 1; }
  grep -q "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" "$file" &&
    grep -q "Permission is hereby granted, free of charge" "$file"
}

# sbom_matches FILE BINARY LINKED BUILT: the SBOM describes BINARY; every
# crate of LINKED (cargo auditable's runtime record) is a component, and
# every component is in BUILT (its whole record: proc macros are components
# too), so it describes this binary and not the workspace.
sbom_matches() {
  local file=$1 bin=$2 linked=$3 built=$4
  jq -e --arg b "$bin" '.bomFormat == "CycloneDX" and (.specVersion | test("^1\\.[4-9]")) and
    .metadata.component.name == $b and (.components | length > 0)' "$file" >/dev/null ||
    { echo "$file: not a CycloneDX SBOM of $bin"; jq -c '{bomFormat, specVersion, name: .metadata.component.name}' "$file"; return 1; }
  jq -r '[.components[] | select(."bom-ref" | startswith("registry+")) | "\(.name) \(.version)"] | unique[]' "$file" |
    LC_ALL=C sort -u >"$WORK/sbom-$bin.txt"
  local missing extra
  missing=$(LC_ALL=C comm -23 "$linked" "$WORK/sbom-$bin.txt")
  extra=$(LC_ALL=C comm -13 "$built" "$WORK/sbom-$bin.txt")
  [ -z "$missing" ] || { echo "linked into $bin but not in the SBOM:"; echo "$missing"; }
  [ -z "$extra" ] || { echo "in the SBOM but not part of $bin's build:"; echo "$extra"; }
  [ -z "$missing$extra" ] && echo "$(wc -l <"$WORK/sbom-$bin.txt") components"
}

# The pinned cargo tools (scripts/cargo-tools.sh): installed once, then
# reused; a fresh machine compiles them here (or waits for .ci/run's early
# install to finish).
if [[ " ${PARTS[*]} " =~ \ (werf|deny|images)\  ]]; then
  t0=$SECONDS
  if scripts/cargo-tools.sh install >"$WORK/cargo-tools.log" 2>&1; then
    pass "cargo tools ${CARGO_TOOLS[*]} in $CARGO_TOOLS_BIN ($((SECONDS - t0)) s)"
  else
    fail "install the cargo tools (scripts/cargo-tools.sh install)"
    tail -n 20 "$WORK/cargo-tools.log" | indent
    summary
    exit 1
  fi
fi

for part in "${PARTS[@]}"; do
  case $part in
    toolchain) toolchain_suite ;;
    werf) werf_suite ;;
    deny) deny_suite ;;
    images) images_suite ;;
    *) echo "unknown part: $part (toolchain, werf, deny, images)" >&2; exit 2 ;;
  esac
done
summary
[ "$FAILED" = 0 ]
