#!/usr/bin/env bash
# make bench: pod-reloader side by side with Stakater Reloader.
#
# Builds Stakater Reloader (bench/reloader, from the Go module proxy) and
# pod-reloader (release), starts a test bed of its own with an audit log
# (state in the cache, so the test bed of `make test` is left alone; 9090
# must be free, Reloader listens there), runs the harness (bench/, a Rust
# binary) and stops the test bed again.
#
#   make bench            full scale, 3 rounds; writes docs/benchmarks.{md,json},
#                         docs/benchmarks-rss.svg and docs/benchmarks-scale.svg
#                         (about an hour)
#   make bench QUICK=1    a tenth of the scale (S6 up to N = 10,000), 2 rounds,
#                         under 15 minutes; writes to
#                         $CARGO_TARGET_DIR/bench-quick/ (set BENCH_OUT=docs to
#                         write the docs instead)
#
# Also: BENCH_ROUNDS=n, BENCH_SCENARIOS=S1,S3, BENCH_S6_POINTS=1000,100000
# (S6's values of N), BENCH_KEEP_TESTBED=1 (leave the test bed running; its
# env file is printed), BENCH_OUT=dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/..
. testbed/lib.sh

quick=${QUICK:-0}
[ "$quick" = 1 ] || quick=0
target=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
if [ "$quick" = 1 ]; then
  out=${BENCH_OUT:-$target/bench-quick}
  make_cmd="make bench QUICK=1"
  rounds=2 # A B, B A: enough to see the spread, and it fits in 15 minutes
else
  out=${BENCH_OUT:-docs}
  make_cmd="make bench"
  rounds=3
fi
t0=$SECONDS

reloader_bin=$(bench/reloader/build.sh)
log "building pod-reloader and the harness (release)…"
cargo build --release -p pod-reloader -p pod-reloader-bench
pod_reloader_bin=$target/release/pod-reloader
harness=$target/release/pod-reloader-bench

if ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq '[:.]9090$'; then
  die "port 9090 is in use; Stakater Reloader serves its metrics there (hard-coded), so the bench needs it free"
fi

export TESTBED_STATE_DIR=${BENCH_TESTBED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/bench-testbed/$(printf %s "$REPO_ROOT" | sha256sum | cut -c1-12)/.testbed}
export TESTBED_AUDIT=1 TESTBED_AUDIT_POLICY=$REPO_ROOT/bench/audit-policy.yaml
# Always a fresh test bed: the audit flags are set when it is set up, and an
# empty etcd keeps runs comparable.
testbed/testbed.sh down >/dev/null
if [ "${BENCH_KEEP_TESTBED:-0}" = 1 ]; then
  trap 'log "test bed left running: . $TESTBED_STATE_DIR/env"' EXIT
else
  trap 'testbed/testbed.sh down >/dev/null' EXIT
fi
testbed/testbed.sh up
# shellcheck disable=SC1091
. "$TESTBED_STATE_DIR/env"

work=$target/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$work"
commit=$(git log -1 --format=%h -- controller core 2>/dev/null || echo unknown)
git diff --quiet HEAD -- controller core 2>/dev/null || commit="$commit, with uncommitted changes"
args=(
  --rounds "${BENCH_ROUNDS:-$rounds}"
  --pod-reloader "$pod_reloader_bin"
  --reloader "$reloader_bin"
  --audit-log "$TESTBED_STATE_DIR/logs/audit.log"
  --work-dir "$work"
  --out "$out"
  --scenarios "${BENCH_SCENARIOS:-S1,S2,S3,S4,S5,S5b,S7,S6}"
  --notes bench/notes.md
)
[ "$quick" = 1 ] && args+=(--quick)
[ -n "${BENCH_S6_POINTS:-}" ] && args+=(--s6-points "$BENCH_S6_POINTS")
# S6 runs last. Its objects (about 200,000 at N = 100,000) go with the test
# bed instead of through the apiserver, unless the test bed stays; QUICK
# (up to N = 10,000) removes them and times it.
if [ "$quick" != 1 ] || [ "${BENCH_KEEP_TESTBED:-0}" = 1 ]; then
  args+=(--keep-s6-objects)
fi
facts=(
  --fact "pod-reloader=$("$pod_reloader_bin" --version | awk '{print $2}') (source as of commit $commit, the last to touch controller/ and core/), release build; default settings (cluster-wide, env-vars strategy, coalesce-window 1s) plus --listen-address=127.0.0.1:PORT --log-format=json and POD_NAMESPACE=bench-system, as the module sets it (its baseline store lives there)"
  --fact "Stakater Reloader=$(basename "$reloader_bin" | sed 's/^reloader-//') (github.com/stakater/Reloader from the Go module proxy, built by bench/reloader/build.sh); default settings (cluster-wide, env-vars strategy), no GOMEMLIMIT"
  --fact "Toolchains=$(go version | awk '{print $3}'), $(rustc --version | awk '{print $1, $2}')"
  --fact "Command=\`$make_cmd\` (scripts/bench.sh), which runs \`pod-reloader-bench ${args[*]}\`"
)
log "running the harness (logs of each controller run in $work/logs)"
"$harness" "${args[@]}" "${facts[@]}"
log "make bench finished in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s; results in $out"
