#!/usr/bin/env bash
# Functions run through trap and check() (not unreachable); jq programs in
# single quotes.
# shellcheck disable=SC2317,SC2016
#
# Tests of the release path (docs/RELEASES.md): images without Docker, the
# module source layout, channels, and the operator-facing examples. Called by
# `make test` after the test bed is up (KUBECONFIG and PATH from .testbed/env);
# runs alone too (`tests/release/run.sh`), then the Kubernetes part needs
# KUBECONFIG.
#
#   0. module.yaml: `dhcheck module-yaml` (testbed/tools/dhcheck, written from
#                Deckhouse's reading rules) strict-decodes module.yaml into
#                Deckhouse's field types; variants with `bootstrapped: true`,
#                enabledInBundles, an unknown field or a bad range are refused.
#   1. images:   `scripts/images.sh` builds both images with `docker`, `podman`,
#                `buildah`, `werf` and friends replaced by stubs that fail and
#                log (none may be called); a second build gives the same
#                digests; the controller binary taken out of its image's layer
#                (crane export) runs `--version`; the user is non-root and named
#                in /etc/passwd; labels (revision = commit, created = commit
#                time); layer entries owned by 0:0 with the commit time; the
#                compressed controller image is at most 15 MiB (size printed);
#                the hooks binary from its image answers `hook list`.
#   2. release:  a registry on 127.0.0.1 (free port, temp dir, stopped at exit)
#                stands in for the module source. `make release VERSION=v0.1.0
#                CHANNEL=alpha`, `make promote CHANNEL=stable` (with `cargo`
#                stubbed out: promotion builds nothing); release:stable read
#                back with crane: version.json = {"version":"v0.1.0"},
#                changelog.yaml (release.yaml's entry), module.yaml, nothing
#                else; every digest of the bundle's images_digests.json is in
#                the registry and equals the images built in 1; the bundle holds
#                the module directory and hooks/pod-reloader-hooks (0755) and no
#                source; releasing again changes nothing; bad channels and
#                unknown versions are refused; the dry run (no REGISTRY) works.
#                Then: tags/list of the source repository names pod-reloader
#                (the discovery tag); promotion to the four other channels, in
#                both spellings (beta, EarlyAccess, rock-solid, Lts);
#                prereleases refused by release (with and without CHANNEL) and
#                promote; `dhcheck source` on all six channels. Upgrade path:
#                v0.2.0 and v0.2.1 released from a temporary commit in a clone
#                (release.yaml with their changelog) reusing the images of 1
#                (IMAGES_FROM, cargo stubbed out), dhcheck's walk v0.1.0 ->
#                v0.2.0 -> v0.2.1; IMAGES_FROM refused after a source change.
#                Last, dhcheck fails on a crafted broken source (prerelease on a
#                channel, missing minor, fifo and ../ in a bundle, missing
#                images, no discovery tag).
#   3. examples: the CRD fixtures of tests/release/crds/ are applied for real
#                and Established; the ModuleSource, ModuleUpdatePolicy and
#                ModuleConfig examples extracted from docs/RELEASES.md and
#                docs/RELEASES.ru.md (identical in both) pass `kubectl apply
#                --server-side --dry-run=server`; broken variants are rejected
#                (the fixtures validate); the ModuleConfig names the module, the
#                ModuleSource and the ModuleUpdatePolicy of the examples, and its
#                settings pass the hooks binary's `hook check`.
#   4. lint:     shellcheck -x of the release scripts (skipped without shellcheck).
#
# Ends with "N passed, N failed" (", N skipped"); exits non-zero on failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../..
. "$ROOT/testbed/lib.sh"
# shellcheck source-path=SCRIPTDIR/../..
. "$ROOT/scripts/oci-lib.sh"
cd "$ROOT"

FIELD_MANAGER=pod-reloader-release-tests
VERSION=v0.1.0
MAX_CONTROLLER_BYTES=$((15 * 1024 * 1024))

# shellcheck source-path=SCRIPTDIR/..
. "$ROOT/tests/lib.sh"
EXPECT_FAIL_IGNORE_CASE=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pod-reloader-release-tests.XXXXXX")
cleanup() {
  registry_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

finish() {
  summary
  if [ "$FAILED" = 0 ]; then exit 0; else exit 1; fi
}

# Container engines and image builders: none may be called.
STUBS=$WORK/stubs
mkdir -p "$STUBS"
for t in docker podman buildah werf nerdctl kaniko img skopeo; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/called.log"\necho "%s must not be called" >&2\nexit 97\n' "$t" "$STUBS" "$t" >"$STUBS/$t"
  chmod +x "$STUBS/$t"
done
export PATH=$STUBS:$PATH

section "tools"
if ! oci_tools >"$WORK/tools.log" 2>&1; then
  cat "$WORK/tools.log"
  fail "crane and registry build (testbed/build-tools.sh crane registry)"
  finish
fi
pass "crane and registry ready ($CRANE, $REGISTRY_BIN)"
if testbed/build-tools.sh dhcheck >"$WORK/dhcheck-build.log" 2>&1 && [ -x "$BIN_DIR/dhcheck" ]; then
  DHCHECK=$BIN_DIR/dhcheck
  pass "dhcheck ready (testbed/tools/dhcheck: Deckhouse's reading rules)"
else
  indent <"$WORK/dhcheck-build.log"
  fail "dhcheck build (testbed/build-tools.sh dhcheck)"
  finish
fi
CRATE_VERSION=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && $1 ~ /^version *= */{print $2; exit}' Cargo.toml)

registry_start "$WORK/source"
SRC=$REGISTRY_ADDR
pass "module source registry on $SRC (data in a temp dir)"
REPO=$SRC/deckhouse/modules

# --- 0. module.yaml as Deckhouse decodes it -----------------------------------------
section "module.yaml as Deckhouse decodes it (dhcheck module-yaml)"
check "module.yaml strict-decodes into Deckhouse's field types, enabled by ModuleConfig only" \
  "$DHCHECK" module-yaml -explicit-enable module.yaml
variant() { # variant NAME PYTHON: module.yaml edited by a Python statement on `s` (its text)
  python3 -c 'import sys; s = open("module.yaml").read(); exec(sys.argv[2]); open(sys.argv[1], "w").write(s)' "$WORK/$1" "$2"
  printf '%s\n' "$WORK/$1"
}
expect_fail "requirements.bootstrapped: true (the old module.yaml) does not decode" "cannot unmarshal bool into Go struct field" \
  "$DHCHECK" module-yaml "$(variant mod-bootstrapped.yaml 's = s.replace("requirements:\n", "requirements:\n  bootstrapped: true\n")')"
expect_fail "enabledInBundles is refused: the module would be enabled without a ModuleConfig" "without a ModuleConfig" \
  "$DHCHECK" module-yaml -explicit-enable "$(variant mod-bundles.yaml 's = s.replace("      available: true\n", "      available: true\n      enabledInBundles: [Default]\n")')"
expect_fail "an unknown module.yaml field is refused" 'unknown field "enabled"' \
  "$DHCHECK" module-yaml "$(variant mod-unknown.yaml 's += "enabled: true\n"')"
expect_fail "a requirement that is not a version range is refused" "not a version range" \
  "$DHCHECK" module-yaml "$(variant mod-range.yaml 's = s.replace("\">= 1.29\"", "\"newest\"")')"

# --- 1. images -----------------------------------------------------------------
section "images (scripts/images.sh)"
# Sources of the work tree (HEAD and uncommitted changes to tracked files). In
# a shared work tree others may commit or edit while the images build; a
# comparison of two builds only means something when this did not change.
src_fingerprint() { { git rev-parse HEAD; git diff HEAD --binary; } | sha256sum | cut -c1-16; }
build_pair() {
  local t0=$SECONDS
  if ! scripts/images.sh --out "$WORK/build1" >"$WORK/build1.log" 2>&1; then
    fail "first build: scripts/images.sh"
    tail -n 40 "$WORK/build1.log" | sed 's/^/    /'
    finish
  fi
  T_BUILD1=$((SECONDS - t0))
  t0=$SECONDS
  if ! scripts/images.sh --out "$WORK/build2" --push "$SRC/check" >"$WORK/build2.log" 2>&1; then
    fail "second build, pushed to $SRC/check"
    tail -n 40 "$WORK/build2.log" | sed 's/^/    /'
    finish
  fi
  T_BUILD2=$((SECONDS - t0))
}
for attempt in 1 2 3; do
  FP_IMAGES=$(src_fingerprint)
  build_pair
  [ "$(src_fingerprint)" != "$FP_IMAGES" ] || break
  echo "note: the sources changed during the builds (attempt $attempt); building both again"
  FP_IMAGES=changed
done
# What the images must say about their commit (HEAD may have moved since the start).
git_meta
EXPECT_REVISION=$GIT_COMMIT
[ "$GIT_DIRTY" = 0 ] || EXPECT_REVISION=$GIT_COMMIT-dirty
pass "first build: scripts/images.sh ($T_BUILD1 s)"
pass "second build, pushed to $SRC/check ($T_BUILD2 s)"
if [ -s "$STUBS/called.log" ]; then
  fail "no container engine or image builder called: $(tr '\n' ';' <"$STUBS/called.log")"
else
  pass "no container engine or image builder called (docker, podman, buildah, werf, … stubbed)"
fi
if [ "$FP_IMAGES" = changed ]; then
  skip "same commit, same digests: the sources kept changing during the builds"
else
  check "same commit, same digests: $(jq -c . "$WORK/build1/images_digests.json")" \
    cmp "$WORK/build1/images_digests.json" "$WORK/build2/images_digests.json"
fi
check "images_digests.json names podReloader and hooks" \
  jq -e 'keys == ["hooks", "podReloader"] and ([.[] | test("^sha256:[0-9a-f]{64}$")] | all)' "$WORK/build1/images_digests.json"
check "OCI layout target/images-style: two manifests named podReloader and hooks" \
  jq -e '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | sort == ["hooks", "podReloader"]' "$WORK/build1/oci/index.json"

CTRL_DIGEST=$(jq -r .podReloader "$WORK/build2/images_digests.json")
HOOKS_DIGEST=$(jq -r .hooks "$WORK/build2/images_digests.json")
CTRL=$SRC/check/pod-reloader@$CTRL_DIGEST
HOOKS=$SRC/check/pod-reloader@$HOOKS_DIGEST
mkdir -p "$WORK/ctrl-fs" "$WORK/hooks-fs"
if ! { "$CRANE" config "$CTRL" >"$WORK/ctrl-config.json" &&
  "$CRANE" manifest "$CTRL" >"$WORK/ctrl-manifest.json" &&
  "$CRANE" config "$HOOKS" >"$WORK/hooks-config.json" &&
  "$CRANE" export "$CTRL" "$WORK/ctrl.tar" &&
  "$CRANE" export "$HOOKS" "$WORK/hooks.tar" &&
  tar -xf "$WORK/ctrl.tar" -C "$WORK/ctrl-fs" &&
  tar -xf "$WORK/hooks.tar" -C "$WORK/hooks-fs"; }; then
  fail "read the pushed images back with crane (config, manifest, export)"
  finish
fi

version_out=$("$WORK/ctrl-fs/pod-reloader" --version 2>&1 || true)
if [ "$version_out" = "pod-reloader $CRATE_VERSION" ]; then
  pass "controller binary from the image layer runs: --version = '$version_out'"
else
  fail "controller binary from the image layer: --version printed '$version_out', want 'pod-reloader $CRATE_VERSION'"
fi
check "controller binary is static" bash -c "file '$WORK/ctrl-fs/pod-reloader' | grep -q 'static'"

non_root() { # non_root CONFIG FS: numeric non-root user, named in FS/etc/passwd
  local user uid
  user=$(jq -r .config.User "$1")
  uid=${user%%:*}
  if ! [[ $uid =~ ^[0-9]+$ ]] || [ "$uid" -eq 0 ]; then
    echo "user '$user' is not a numeric non-root uid"
    return 1
  fi
  if ! awk -F: -v u="$uid" '$3 == u {found = 1} END {exit !found}' "$2/etc/passwd"; then
    echo "uid $uid not in /etc/passwd"
    return 1
  fi
}
check "controller image user is non-root ($(jq -r .config.User "$WORK/ctrl-config.json")) and in /etc/passwd" \
  non_root "$WORK/ctrl-config.json" "$WORK/ctrl-fs"
check "hooks image user is non-root ($(jq -r .config.User "$WORK/hooks-config.json")) and in /etc/passwd" \
  non_root "$WORK/hooks-config.json" "$WORK/hooks-fs"
check "controller config: entrypoint /pod-reloader, port 9090/tcp, linux/amd64" \
  jq -e '.config.Entrypoint == ["/pod-reloader"] and (.config.ExposedPorts | has("9090/tcp")) and .os == "linux" and .architecture == "amd64"' "$WORK/ctrl-config.json"
check "controller config: created = commit time ($CREATED)" \
  jq -e --arg t "$CREATED" '.created == $t and ([.history[].created] | all(. == $t))' "$WORK/ctrl-config.json"
check "labels: revision = $EXPECT_REVISION, created, version $CRATE_VERSION, title, source, licenses" \
  jq -e --arg r "$EXPECT_REVISION" --arg t "$CREATED" --arg v "$CRATE_VERSION" '.config.Labels as $l |
    $l["org.opencontainers.image.revision"] == $r and $l["org.opencontainers.image.created"] == $t and
    $l["org.opencontainers.image.version"] == $v and $l["org.opencontainers.image.title"] == "pod-reloader" and
    ($l["org.opencontainers.image.source"] | startswith("https://")) and ($l["org.opencontainers.image.licenses"] | length > 0)' \
  "$WORK/ctrl-config.json"
check "controller image: one OCI gzip layer" \
  jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json" and (.layers | length) == 1 and .layers[0].mediaType == "application/vnd.oci.image.layer.v1.tar+gzip"' "$WORK/ctrl-manifest.json"
layer_check() { # entries sorted, owned by 0:0, mtime = SOURCE_DATE_EPOCH
  python3 - "$1" "$SOURCE_DATE_EPOCH" <<'EOF'
import sys, tarfile
names = []
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        names.append(m.name)
        if (m.uid, m.gid) != (0, 0) or m.mtime != int(sys.argv[2]):
            sys.exit(f"{m.name}: uid/gid {m.uid}/{m.gid}, mtime {m.mtime}")
if names != sorted(names):
    sys.exit(f"entries not sorted: {names}")
print(len(names), "entries")
EOF
}
check "controller layer: sorted entries, 0:0, mtime = commit time" layer_check "$WORK/ctrl.tar"
check "controller image ships the CA bundle and its read-only mount targets" \
  bash -c "test -s '$WORK/ctrl-fs/etc/ssl/certs/ca-certificates.crt' && test -d '$WORK/ctrl-fs/etc/pod-reloader/alert' && test -d '$WORK/ctrl-fs/etc/pod-reloader/webhook-mode' && test -f '$WORK/ctrl-fs/etc/pod-reloader/config.yaml'"
ctrl_size=$(jq '.config.size + ([.layers[].size] | add)' "$WORK/ctrl-manifest.json")
ctrl_mib=$(awk -v s="$ctrl_size" 'BEGIN {printf "%.2f", s / 1048576}')
if [ "$ctrl_size" -le "$MAX_CONTROLLER_BYTES" ]; then
  pass "controller image compressed size $ctrl_size bytes = $ctrl_mib MiB (target <= 15 MiB)"
else
  fail "controller image compressed size $ctrl_size bytes = $ctrl_mib MiB, over 15 MiB"
fi
check "hooks config: entrypoint /hooks/pod-reloader-hooks" \
  jq -e '.config.Entrypoint == ["/hooks/pod-reloader-hooks"]' "$WORK/hooks-config.json"
hook_list() {
  env -i "$WORK/hooks-fs/hooks/pod-reloader-hooks" hook list | tee /dev/stderr | grep -Eq '^Found [1-9][0-9]{0,3} items'
}
check "hooks binary from the image layer answers 'hook list' with an empty environment" hook_list

# --- 2. release and promotion ------------------------------------------------------
section "release v0.1.0 to alpha, promote to stable (module source $REPO)"
t0=$SECONDS
if ALLOW_DIRTY=1 make -s release VERSION=$VERSION REGISTRY="$REPO" CHANNEL=alpha >"$WORK/release.out" 2>"$WORK/release.log"; then
  pass "make release VERSION=$VERSION REGISTRY=$REPO CHANNEL=alpha ($((SECONDS - t0)) s)"
else
  fail "make release VERSION=$VERSION CHANNEL=alpha"
  tail -n 40 "$WORK/release.log" | sed 's/^/    /'
  finish
fi

# cargo and the image builders must not run during a promotion.
printf '#!/bin/sh\necho "cargo $*" >>"%s/called.log"\nexit 97\n' "$STUBS" >"$STUBS/cargo"
chmod +x "$STUBS/cargo"
check "make promote VERSION=$VERSION CHANNEL=stable" make -s promote VERSION=$VERSION CHANNEL=stable REGISTRY="$REPO"
if [ -s "$STUBS/called.log" ]; then
  fail "promotion built nothing: $(tr '\n' ';' <"$STUBS/called.log")"
else
  pass "promotion built nothing (cargo stubbed out)"
fi
rm -f "$STUBS/cargo"

REL=$REPO/pod-reloader/release
rel_digest=$("$CRANE" digest "$REL:$VERSION" 2>&1) || { fail "release:$VERSION in the registry: $rel_digest"; finish; }
check "release:alpha, release:stable and release:$VERSION are one digest ($rel_digest)" \
  bash -c "[ \"\$('$CRANE' digest '$REL:alpha')\" = '$rel_digest' ] && [ \"\$('$CRANE' digest '$REL:stable')\" = '$rel_digest' ]"

mkdir -p "$WORK/stable" "$WORK/bundle"
if ! { "$CRANE" export "$REL:stable" "$WORK/stable.tar" && tar -xf "$WORK/stable.tar" -C "$WORK/stable" &&
  "$CRANE" export "$REPO/pod-reloader:$VERSION" "$WORK/bundle.tar" && tar -xf "$WORK/bundle.tar" -C "$WORK/bundle"; }; then
  fail "crane export of release:stable and of the bundle"
  finish
fi
check "release:stable version.json = {\"version\":\"$VERSION\"}" \
  bash -c "[ \"\$(jq -c . '$WORK/stable/version.json')\" = '{\"version\":\"$VERSION\"}' ]"
check "release:stable holds exactly version.json, changelog.yaml, module.yaml" \
  bash -c "[ \"\$(tar -tf '$WORK/stable.tar' | sort | tr '\n' ' ')\" = 'changelog.yaml module.yaml version.json ' ]"
check "release:stable changelog.yaml is release.yaml's $VERSION entry" \
  python3 -c "
import sys, yaml
got = yaml.safe_load(open('$WORK/stable/changelog.yaml'))
want = yaml.safe_load(open('release.yaml'))['changelog']['$VERSION']
sys.exit(0 if got == want and got.get('features') else 'changelog differs')"
check "release:stable module.yaml is the repository's" cmp "$WORK/stable/module.yaml" module.yaml

check "bundle version.json = {\"version\":\"$VERSION\"}" \
  bash -c "[ \"\$(jq -c . '$WORK/bundle/version.json')\" = '{\"version\":\"$VERSION\"}' ]"
digests_present() {
  local name d n=0
  for name in $(jq -r 'keys[]' "$WORK/bundle/images_digests.json"); do
    d=$(jq -r --arg n "$name" '.[$n]' "$WORK/bundle/images_digests.json")
    "$CRANE" manifest "$REPO/pod-reloader@$d" >/dev/null || { echo "$name $d missing"; return 1; }
    # every layer and the config blob too
    for blob in $("$CRANE" manifest "$REPO/pod-reloader@$d" | jq -r '.config.digest, .layers[].digest'); do
      "$CRANE" blob "$REPO/pod-reloader@$blob" >/dev/null || { echo "$name blob $blob missing"; return 1; }
    done
    n=$((n + 1))
  done
  [ "$n" -ge 2 ]
}
check "every digest of the bundle's images_digests.json is in the registry (with its blobs)" digests_present
FP_RELEASE=$(src_fingerprint)
if [ "$FP_RELEASE" = "$FP_IMAGES" ]; then
  check "the bundle's images are the ones built in 1 (same commit)" \
    cmp "$WORK/bundle/images_digests.json" "$WORK/build2/images_digests.json"
else
  skip "the bundle's images are the ones built in 1: the sources changed in between"
fi
check "bundle: hooks/pod-reloader-hooks is the only file under hooks/, mode 0755" \
  bash -c "[ \"\$(tar -tvf '$WORK/bundle.tar' | awk '\$6 ~ /^hooks\\/./ {print \$1, \$6}')\" = '-rwxr-xr-x hooks/pod-reloader-hooks' ]"
check "bundle: hooks binary is the one of the hooks image" \
  cmp "$WORK/bundle/hooks/pod-reloader-hooks" "$WORK/hooks-fs/hooks/pod-reloader-hooks"
bundle_layout() {
  local f
  for f in module.yaml Chart.yaml .helmignore openapi/config-values.yaml openapi/values.yaml templates/deployment.yaml docs/README.md; do
    [ -f "$WORK/bundle/$f" ] || { echo "missing $f"; return 1; }
  done
  # Every top-level entry of the repository is either in the bundle or
  # listed in .helmignore (source, tests, tooling); no source in the bundle.
  python3 - "$WORK/bundle" <<'EOF'
import fnmatch, os, subprocess, sys
bundle = sys.argv[1]
patterns = [l.strip().rstrip("/") for l in open(".helmignore") if l.strip() and not l.startswith("#")]
tracked = {p.split("/")[0] for p in subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()}
in_bundle = set(os.listdir(bundle))
deckhouse_reads = {".helmignore", "module.yaml", "crds", "docs", "hooks", "openapi", "enabled", "charts"}
bad = []
for entry in sorted(tracked):
    ignored = any(fnmatch.fnmatch(entry, p) for p in patterns)
    if entry in in_bundle and ignored and entry not in deckhouse_reads:
        bad.append(f"{entry}: in the bundle but helmignored and not read by Deckhouse")
    if entry not in in_bundle and not ignored:
        # Not a bundle problem (the bundle is an allowlist), but helm would
        # package it when the chart is rendered from the repository; the
        # module tests warn about it too.
        with open(os.path.join(os.path.dirname(bundle), "bundle-warnings"), "a") as w:
            print(f"warning: {entry}: neither in the bundle nor in .helmignore", file=w)
for src in ("Cargo.toml", "Cargo.lock", "controller", "core", "testbed", "tests", "scripts", "images", "release.yaml"):
    if src in in_bundle:
        bad.append(f"{src}: source in the bundle")
if bad:
    sys.exit("\n".join(bad))
print("bundle entries:", " ".join(sorted(in_bundle)))
EOF
}
check "bundle: the module directory as Deckhouse reads it, no source" bundle_layout
if [ -s "$WORK/bundle-warnings" ]; then sed 's/^/    /' "$WORK/bundle-warnings"; fi

t0=$SECONDS
before=$("$CRANE" digest "$REPO/pod-reloader:$VERSION")
if [ "$(src_fingerprint)" != "$FP_RELEASE" ]; then
  skip "releasing $VERSION again: the sources changed since the release (it would rightly be refused)"
elif ALLOW_DIRTY=1 make -s release VERSION=$VERSION REGISTRY="$REPO" >"$WORK/release2.out" 2>"$WORK/release2.log" &&
  [ "$("$CRANE" digest "$REPO/pod-reloader:$VERSION")" = "$before" ] &&
  [ "$("$CRANE" digest "$REL:$VERSION")" = "$rel_digest" ] &&
  grep -q 'already there' "$WORK/release2.log"; then
  pass "releasing $VERSION again from the same commit changes nothing (bundle and release digests equal; $((SECONDS - t0)) s)"
else
  fail "releasing $VERSION again"
  tail -n 20 "$WORK/release2.log" | sed 's/^/    /'
fi
expect_fail "promote to an unknown channel is refused" "CHANNEL must be one of" \
  make -s promote VERSION=$VERSION CHANNEL=nightly REGISTRY="$REPO"
expect_fail "promote of an unreleased version is refused" "not found" \
  make -s promote VERSION=v9.9.9 CHANNEL=beta REGISTRY="$REPO"
check "refused promotions left the channels alone (no beta, stable unchanged)" \
  bash -c "! '$CRANE' digest '$REL:beta' 2>/dev/null && [ \"\$('$CRANE' digest '$REL:stable')\" = '$rel_digest' ]"
expect_fail "release without a changelog entry is refused" "no changelog entry" \
  make -s release VERSION=v9.9.9 REGISTRY="$REPO"
t0=$SECONDS
if make -s release VERSION=$VERSION >"$WORK/dry.out" 2>"$WORK/dry.log" &&
  jq -e '.manifests | length == 2' "target/release/$VERSION/oci/index.json" >/dev/null; then
  pass "dry run (no REGISTRY): bundle and release image in target/release/$VERSION/oci ($((SECONDS - t0)) s)"
  if [ "$(src_fingerprint)" = "$FP_RELEASE" ]; then
    check "dry run built the published bundle ($before)" \
      test "$(awk '$1 == "bundle" {print $2}' "$WORK/dry.out")" = "$before"
  else
    skip "dry run built the published bundle: the sources changed in between"
  fi
else
  fail "dry run (no REGISTRY)"
  tail -n 20 "$WORK/dry.log" | sed 's/^/    /'
fi

# --- 2b. channels, prereleases, discovery, as Deckhouse reads them -------------------
section "all six channels, prereleases refused, discovery tag (module source $REPO)"
tags_list() { curl -fsS "http://$SRC/v2/$1/tags/list"; }
check "discovery: GET /v2/deckhouse/modules/tags/list lists pod-reloader ($(tags_list deckhouse/modules 2>&1 | tr -d '\n'))" \
  bash -c "curl -fsS 'http://$SRC/v2/deckhouse/modules/tags/list' | jq -e '.tags | index(\"pod-reloader\")'"
check "discovery: crane ls $REPO names pod-reloader (what docs/RELEASES.md tells operators to run)" \
  bash -c "'$CRANE' ls '$REPO' | grep -qx pod-reloader"
check "release.yaml's channels are Deckhouse's six, Alpha … Lts" \
  bash -c "[ \"\$(python3 scripts/release-tool.py channels | tr '\n' ' ')\" = 'alpha beta early-access stable rock-solid lts ' ]"
# Each channel once, in both spellings Deckhouse knows (tag and ModuleUpdatePolicy).
for spelled in beta EarlyAccess rock-solid Lts; do
  tag=$(sed -E 's/([a-z])([A-Z])/\1-\2/g' <<<"$spelled" | tr '[:upper:]' '[:lower:]')
  if make -s promote VERSION=$VERSION CHANNEL=$spelled REGISTRY="$REPO" >"$WORK/promote-$tag.log" 2>&1 &&
    [ "$("$CRANE" digest "$REL:$tag")" = "$rel_digest" ]; then
    pass "make promote CHANNEL=$spelled: release:$tag = release:$VERSION"
  else
    fail "make promote CHANNEL=$spelled"
    indent <"$WORK/promote-$tag.log"
  fi
done
check "discovery tag pushed once: an empty image, same digest after the promotions ($("$CRANE" digest "$REPO:pod-reloader" 2>&1))" \
  bash -c "'$CRANE' manifest '$REPO:pod-reloader' | jq -e '.layers == []' && grep -q 'discovery tag already there' '$WORK/promote-lts.log'"
PRE_MSG="keeps only the module repository's tags matching"
expect_fail "make release of a prerelease without a channel is refused" "$PRE_MSG" \
  make -s release VERSION=v0.2.0-rc.1 REGISTRY="$REPO"
expect_fail "make release of a prerelease onto a channel is refused" "$PRE_MSG" \
  make -s release VERSION=v0.2.0-rc.1 REGISTRY="$REPO" CHANNEL=alpha
expect_fail "make promote of a prerelease is refused" "$PRE_MSG" \
  make -s promote VERSION=v0.1.0-rc.1 CHANNEL=alpha REGISTRY="$REPO"
check "refused prereleases left no tag behind (module and release repositories: $("$CRANE" ls "$REPO/pod-reloader/release" 2>&1 | tr '\n' ' '))" \
  bash -c "! '$CRANE' ls '$REPO/pod-reloader' | grep -q -- '-rc' && ! '$CRANE' ls '$REPO/pod-reloader/release' | grep -q -- '-rc'"
dhcheck_source() { # dhcheck_source NAME ARGS...: dhcheck source must pass; its findings are listed
  local name=$1 log=$WORK/dhcheck.$((PASSED + FAILED + SKIPPED))
  shift
  if "$DHCHECK" source "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name"
  fi
  indent <"$log"
}
ALL_CHANNELS=alpha,beta,early-access,stable,rock-solid,lts
dhcheck_source "Deckhouse's reading of the module source, all six channels (dhcheck source)" \
  -repo "$REPO" -module pod-reloader -channels "$ALL_CHANNELS" -walk-from "$VERSION" -explicit-enable

# --- 2c. upgrade path v0.1.0 -> v0.2.0 -> v0.2.1 ---------------------------------------
section "upgrade path v0.1.0 -> v0.2.0 -> v0.2.1 (a temporary commit, the images of 1 reused)"
# release.yaml gets changelog entries for the test versions in a throwaway
# clone; the images built in 1 are reused (IMAGES_FROM): same code, so the
# releases build nothing (cargo is stubbed out to prove it).
CLONE=$WORK/clone
changelog_entries() {
  python3 - "$CLONE/release.yaml" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
for v in ("v0.2.0", "v0.2.1", "v0.2.2"):
    text += f"  {v}:\n    features: []\n    fixes:\n      - Test release {v} of tests/release/run.sh (never published).\n"
open(path, "w").write(text)
EOF
}
if git clone -q --shared "$ROOT" "$CLONE" && git -C "$CLONE" checkout -q --detach "$(git rev-parse HEAD)" &&
  changelog_entries &&
  git -C "$CLONE" -c user.name=release-test -c user.email=release-test@invalid commit -q -am "test: changelog of v0.2.0, v0.2.1, v0.2.2"; then
  pass "temporary commit in a clone: release.yaml with changelog entries for v0.2.0, v0.2.1, v0.2.2"
else
  fail "temporary commit in a clone"
  finish
fi
printf '#!/bin/sh\necho "cargo $*" >>"%s/called.log"\nexit 97\n' "$STUBS" >"$STUBS/cargo"
chmod +x "$STUBS/cargo"
release_from_clone() { # release_from_clone VERSION CHANNEL
  ALLOW_DIRTY=1 IMAGES_FROM=$WORK/build1 make -s -C "$CLONE" release VERSION="$1" REGISTRY="$REPO" CHANNEL="$2"
}
walk_check() { # walk_check NAME CHANNELS: dhcheck on CHANNELS, walk from v0.1.0
  dhcheck_source "$1" -repo "$REPO" -module pod-reloader -channels "$2" -walk-from "$VERSION" -explicit-enable
}
timed_release() { # timed_release VERSION CHANNEL
  local t0=$SECONDS log=$WORK/release-$1.log
  if release_from_clone "$1" "$2" >"$log" 2>&1; then
    pass "make release VERSION=$1 CHANNEL=$2 from the clone, images of 1 reused ($((SECONDS - t0)) s)"
  else
    fail "make release VERSION=$1 CHANNEL=$2 from the clone"
    indent <"$log" | tail -n 30
  fi
}
timed_release v0.2.0 alpha
walk_check "walk alpha: v0.1.0 -> v0.2.0" alpha
timed_release v0.2.1 alpha
check "make promote VERSION=v0.2.1 CHANNEL=Beta" make -s -C "$CLONE" promote VERSION=v0.2.1 CHANNEL=Beta REGISTRY="$REPO"
walk_check "all six channels; walk alpha and beta: v0.1.0 -> v0.2.0 -> v0.2.1" "$ALL_CHANNELS"
if [ -s "$STUBS/called.log" ]; then
  fail "the upgrade releases built nothing: $(tr '\n' ';' <"$STUBS/called.log")"
else
  pass "the upgrade releases built nothing (cargo stubbed out; images of 1 reused)"
fi
rm -f "$STUBS/cargo"
echo "changed" >>"$CLONE/README.md"
git -C "$CLONE" -c user.name=release-test -c user.email=release-test@invalid commit -q -am "test: a source change"
expect_fail "IMAGES_FROM is refused when more than release.yaml changed since the images were built" "since then changed: README.md" \
  release_from_clone v0.2.2 alpha

# --- 2d. what the check catches ----------------------------------------------------------
section "what dhcheck catches (a broken module source at $SRC/neg)"
NEG=$SRC/neg
mk_tar() { # mk_tar OUT KIND: a layer tar of a crafted release or bundle
  python3 - "$@" <<'EOF'
import io, json, sys, tarfile
out, kind = sys.argv[1], sys.argv[2]
module_yaml = open("module.yaml", "rb").read()
def add(t, name, data=b"", typ=tarfile.REGTYPE, mode=0o644):
    i = tarfile.TarInfo(name); i.type = typ; i.mode = mode; i.size = len(data) if typ == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as t:
    if kind.startswith("release-"):
        v = kind[len("release-"):]
        add(t, "version.json", json.dumps({"version": v}).encode())
        add(t, "changelog.yaml", b"features:\n  - crafted\n")
        add(t, "module.yaml", module_yaml)
    elif kind == "bundle-evil":
        add(t, "module.yaml", module_yaml)
        add(t, "version.json", b'{"version":"v0.1.0"}')
        add(t, "fifo", typ=tarfile.FIFOTYPE)
        add(t, "../evil", b"outside")
EOF
}
push_tar() { # push_tar KIND REF
  mk_tar "$WORK/$1.tar" "$1" && "$CRANE" append --oci-empty-base -f "$WORK/$1.tar" -t "$2" >/dev/null 2>&1
}
if "$CRANE" append --oci-empty-base --new_layer "" --new_tag "$NEG:pod-reloader" >/dev/null 2>&1 &&
  push_tar release-v0.3.0-rc.1 "$NEG/pod-reloader/release:v0.3.0-rc.1" &&
  "$CRANE" tag "$NEG/pod-reloader/release:v0.3.0-rc.1" alpha >/dev/null 2>&1 &&
  "$CRANE" copy "$REPO/pod-reloader:$VERSION" "$NEG/pod-reloader:v0.3.0-rc.1" >/dev/null 2>&1 &&
  "$CRANE" copy "$REL:$VERSION" "$NEG/pod-reloader/release:$VERSION" >/dev/null 2>&1 &&
  "$CRANE" tag "$NEG/pod-reloader/release:$VERSION" beta >/dev/null 2>&1 &&
  push_tar bundle-evil "$NEG/pod-reloader:$VERSION" &&
  push_tar release-v0.3.0 "$NEG/pod-reloader/release:v0.3.0" &&
  "$CRANE" tag "$NEG/pod-reloader/release:v0.3.0" stable >/dev/null 2>&1 &&
  "$CRANE" copy "$REPO/pod-reloader:$VERSION" "$NEG/pod-reloader:v0.3.0" >/dev/null 2>&1; then
  pass "broken source: alpha on a prerelease, a bundle with a fifo and ../evil, stable on v0.3.0 with no v0.2.x"
  NEG_RC=0
  "$DHCHECK" source -repo "$NEG" -module pod-reloader -channels alpha,beta,stable -walk-from "$VERSION" >"$WORK/neg.log" 2>&1 || NEG_RC=$?
  check "dhcheck fails on it (exit $NEG_RC)" test "$NEG_RC" = 1
  neg_finds() { # neg_finds NAME PATTERN
    if grep -qF -- "$2" "$WORK/neg.log"; then pass "dhcheck finds: $1"; else fail "dhcheck does not find: $1"; indent <"$WORK/neg.log"; fi
  }
  neg_finds "a channel on a prerelease" "version v0.3.0-rc.1 is not ^v"
  neg_finds "a prerelease tag the update walk skips" "tag v0.3.0-rc.1 is not ^v"
  neg_finds "an entry Deckhouse does not extract (fifo)" 'entry "fifo" has tar type'
  neg_finds "an entry name with .. (extraction aborts)" 'entry "../evil" contains ".."'
  neg_finds "a missing minor version on the walk" "no release of v0.2 between v0.1.0 and v0.3.0"
  neg_finds "bundle images missing from the module repository" "is not in $NEG/pod-reloader"
else
  fail "broken source at $NEG (crane append/copy/tag)"
fi
expect_fail "dhcheck: a source repository without the discovery tag (tags/list 404 NAME_UNKNOWN) shows no module" "NAME_UNKNOWN" \
  "$DHCHECK" source -repo "$SRC/check" -module pod-reloader -channels alpha

# --- 3. operator examples ----------------------------------------------------------
section "docs examples on the test bed (tests/release/crds/)"
extract_examples() { # extract_examples DOC OUTDIR: one file per example, named after its kind
  python3 - "$1" "$2" <<'EOF'
import os, re, sys, yaml
doc, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
kinds = {"ModuleSource", "ModuleUpdatePolicy", "ModuleConfig"}
found = {}
for block in re.findall(r"^```yaml\n(.*?)^```", open(doc, encoding="utf-8").read(), flags=re.S | re.M):
    for obj in yaml.safe_load_all(block):
        if isinstance(obj, dict) and obj.get("kind") in kinds:
            if obj["kind"] in found:
                sys.exit(f"{doc}: two {obj['kind']} examples")
            found[obj["kind"]] = obj
            with open(os.path.join(out, obj["kind"] + ".yaml"), "w") as f:
                yaml.safe_dump(obj, f, sort_keys=False)
missing = kinds - set(found)
if missing:
    sys.exit(f"{doc}: no example of {', '.join(sorted(missing))}")
EOF
}
edit_yaml() { # edit_yaml IN OUT STATEMENT: OUT = IN after a Python statement on `o`
  python3 -c 'import sys, yaml
o = yaml.safe_load(open(sys.argv[1]))
exec(sys.argv[3])
yaml.safe_dump(o, open(sys.argv[2], "w"))' "$@"
}
if [ -z "${KUBECONFIG:-}" ] || ! kubectl version >/dev/null 2>&1; then
  skip "docs examples: no test bed (run through make test, or . .testbed/env)"
else
  check "CRD fixtures applied (server-side)" \
    kubectl apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f tests/release/crds/
  check "CRDs Established" \
    kubectl wait --for=condition=Established --timeout=60s \
    crd/modulesources.deckhouse.io crd/moduleupdatepolicies.deckhouse.io crd/moduleconfigs.deckhouse.io
  for doc in docs/RELEASES.md docs/RELEASES.ru.md; do
    out=$WORK/examples/$(basename "$doc")
    check "$doc: one ModuleSource, ModuleUpdatePolicy and ModuleConfig example" extract_examples "$doc" "$out"
    for kind in ModuleSource ModuleUpdatePolicy ModuleConfig; do
      [ -f "$out/$kind.yaml" ] || continue
      check "$doc: $kind passes kubectl apply --server-side --dry-run=server" \
        kubectl apply --server-side --dry-run=server --field-manager="$FIELD_MANAGER" -f "$out/$kind.yaml"
    done
  done
  check "docs/RELEASES.md and docs/RELEASES.ru.md have the same examples" \
    diff -r "$WORK/examples/RELEASES.md" "$WORK/examples/RELEASES.ru.md"
  ex=$WORK/examples/RELEASES.md
  if [ -f "$ex/ModuleConfig.yaml" ] && [ -f "$ex/ModuleSource.yaml" ] && [ -f "$ex/ModuleUpdatePolicy.yaml" ]; then
    check "the ModuleConfig is named after the module and points at the example's source and policy" \
      python3 - "$ex" <<'EOF'
import sys, yaml
d = sys.argv[1]
mc = yaml.safe_load(open(f"{d}/ModuleConfig.yaml"))
ms = yaml.safe_load(open(f"{d}/ModuleSource.yaml"))
mup = yaml.safe_load(open(f"{d}/ModuleUpdatePolicy.yaml"))
module = yaml.safe_load(open("module.yaml"))["name"]
problems = []
if mc["metadata"]["name"] != module: problems.append(f"ModuleConfig name {mc['metadata']['name']} != {module}")
if mc["spec"].get("source") != ms["metadata"]["name"]: problems.append("spec.source does not name the ModuleSource")
if mc["spec"].get("updatePolicy") != mup["metadata"]["name"]: problems.append("spec.updatePolicy does not name the ModuleUpdatePolicy")
if mc["spec"].get("version") != 1: problems.append("spec.version is not 1")
if not mc["spec"].get("enabled"): problems.append("spec.enabled is not true")
sys.exit("\n".join(problems) or None)
EOF
    python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1]))["spec"].get("settings", {}), open(sys.argv[2], "w"))' \
      "$ex/ModuleConfig.yaml" "$WORK/settings.json"
    check "the ModuleConfig's settings pass 'hook check' (hooks binary of the image, schema of the bundle)" \
      env SETTINGS_PATH="$WORK/settings.json" MODULE_DIR="$WORK/bundle" "$WORK/hooks-fs/hooks/pod-reloader-hooks" hook check
    # Broken variants: the fixtures must reject them, or the dry-runs prove nothing.
    edit_yaml "$ex/ModuleUpdatePolicy.yaml" "$WORK/bad-mup.yaml" 'o["spec"]["releaseChannel"] = "Weekly"'
    expect_fail "a ModuleUpdatePolicy on an unknown channel is rejected" "Unsupported value" \
      kubectl apply --server-side --dry-run=server --field-manager="$FIELD_MANAGER" -f "$WORK/bad-mup.yaml"
    edit_yaml "$ex/ModuleSource.yaml" "$WORK/bad-ms.yaml" 'del o["spec"]["registry"]["repo"]'
    expect_fail "a ModuleSource without registry.repo is rejected" "Required value" \
      kubectl apply --server-side --dry-run=server --field-manager="$FIELD_MANAGER" -f "$WORK/bad-ms.yaml"
    edit_yaml "$ex/ModuleConfig.yaml" "$WORK/bad-mc.yaml" 'o["spec"]["enable"] = True'
    expect_fail "a ModuleConfig with a misspelt field is rejected" 'unknown field\|not declared in schema' \
      kubectl apply --server-side --dry-run=server --field-manager="$FIELD_MANAGER" -f "$WORK/bad-mc.yaml"
  fi
fi

# --- SBOMs in the bundle (supply chain; tests/supply/run.sh checks their contents)
section "SBOMs in the bundle"
for bin in pod-reloader pod-reloader-hooks; do
  check "bundle: sbom/$bin.cdx.json is the CycloneDX SBOM scripts/images.sh wrote" bash -c "
    jq -e '.bomFormat == \"CycloneDX\" and (.components | length > 0)' '$WORK/bundle/sbom/$bin.cdx.json' >/dev/null &&
    cmp '$WORK/bundle/sbom/$bin.cdx.json' '$WORK/build1/sbom/$bin.cdx.json'"
done

# --- 4. lint -----------------------------------------------------------------------
section "lint"
if command -v shellcheck >/dev/null; then
  check "shellcheck -x of the release scripts" \
    shellcheck -x scripts/images.sh scripts/release.sh scripts/oci-lib.sh tests/release/run.sh
else
  skip "shellcheck not installed"
fi

finish
