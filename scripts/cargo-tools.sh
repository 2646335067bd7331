#!/usr/bin/env bash
# The cargo subcommands of the supply-chain steps, pinned here and nowhere
# else, installed from crates.io into a cache outside the clone:
#
#   scripts/cargo-tools.sh install      install what is missing (minutes cold,
#                                       nothing when warm), print the bin dir
#   scripts/cargo-tools.sh bin          print the bin dir (installs nothing)
#   scripts/cargo-tools.sh check        exit 0 when every pinned tool is there
#
#   cargo-deny       licenses, bans, sources, advisories (deny.toml)
#   cargo-about      THIRD-PARTY-LICENSES of the shipped binaries (about.toml)
#   cargo-cyclonedx  CycloneDX SBOM per shipped binary
#   cargo-auditable  embeds the dependency list in the binaries (.dep-v0)
#
# `cargo install --locked` builds each tool with the versions of its own
# Cargo.lock, as published; the build directory is kept in the cache so an
# interrupted install resumes. Sourced (not executed), it only defines the
# variables and functions.
# shellcheck disable=SC2034  # CARGO_TOOLS_BIN is used by the scripts that source this file

# NAME@VERSION[+FEATURES] (comma-separated features; cargo-about's binary
# needs its "cli" feature).
CARGO_TOOLS=(
  cargo-deny@0.20.2
  cargo-about@0.9.3+cli
  cargo-cyclonedx@0.5.9
  cargo-auditable@0.7.7
)
CARGO_TOOLS_ROOT=${POD_RELOADER_CARGO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/cargo-tools}
CARGO_TOOLS_BIN=$CARGO_TOOLS_ROOT/bin

# cargo_tool_installed NAME VERSION: the exact version is recorded in the
# root's install manifest and its binary is there.
cargo_tool_installed() {
  [ -x "$CARGO_TOOLS_BIN/$1" ] &&
    grep -q "\"$1 $2 (registry+" "$CARGO_TOOLS_ROOT/.crates2.json" 2>/dev/null
}

# cargo_tool_spec SPEC: sets TOOL_NAME, TOOL_VERSION, TOOL_FEATURES.
cargo_tool_spec() {
  TOOL_NAME=${1%%@*}
  TOOL_VERSION=${1#*@}
  TOOL_FEATURES=
  case $TOOL_VERSION in
    *+*) TOOL_FEATURES=${TOOL_VERSION#*+} TOOL_VERSION=${TOOL_VERSION%%+*} ;;
  esac
}

cargo_tools_check() {
  local spec rc=0
  for spec in "${CARGO_TOOLS[@]}"; do
    cargo_tool_spec "$spec"
    if ! cargo_tool_installed "$TOOL_NAME" "$TOOL_VERSION"; then
      printf 'missing: %s %s\n' "$TOOL_NAME" "$TOOL_VERSION" >&2
      rc=1
    fi
  done
  return $rc
}

cargo_tools_install() {
  local spec name version features t0
  mkdir -p "$CARGO_TOOLS_ROOT"
  # One installer at a time (CI starts one in the background early; the
  # image build's call then waits here and finds the tools installed).
  exec 9>"$CARGO_TOOLS_ROOT/.install-lock"
  flock 9
  for spec in "${CARGO_TOOLS[@]}"; do
    cargo_tool_spec "$spec"
    name=$TOOL_NAME version=$TOOL_VERSION features=()
    [ -z "$TOOL_FEATURES" ] || features=(--features "$TOOL_FEATURES")
    cargo_tool_installed "$name" "$version" && continue
    t0=$SECONDS
    printf 'cargo install %s %s (into %s)\n' "$name" "$version" "$CARGO_TOOLS_ROOT" >&2
    # The tools' own build flags: none from the environment (images.sh sets
    # RUSTFLAGS for the shipped binaries only). The tools run for seconds on
    # a lock file of a few hundred crates: their published LTO profiles would
    # only lengthen a cold install on two cores, so LTO is off and codegen
    # is split.
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
      CARGO_TARGET_DIR="$CARGO_TOOLS_ROOT/build" \
      CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      nice cargo install --locked --version "$version" "${features[@]}" --root "$CARGO_TOOLS_ROOT" "$name" >&2 ||
      { printf 'error: cargo install %s %s failed\n' "$name" "$version" >&2; return 1; }
    printf 'installed %s %s in %d s\n' "$name" "$version" $((SECONDS - t0)) >&2
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  # From the repository, so rust-toolchain.toml picks the toolchain.
  cd "$(dirname "$0")/.."
  case ${1:-} in
    install) cargo_tools_install && printf '%s\n' "$CARGO_TOOLS_BIN" ;;
    bin) printf '%s\n' "$CARGO_TOOLS_BIN" ;;
    check) cargo_tools_check ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
fi
