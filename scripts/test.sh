#!/usr/bin/env bash
# make test: start the test bed (if it is not up already), run every test
# against it, and stop it again even when a test fails. Exits non-zero on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
. testbed/lib.sh

started_here=0
if ! testbed/testbed.sh status >/dev/null 2>&1; then
  started_here=1
fi
cleanup() {
  if [ "$started_here" = 1 ]; then testbed/testbed.sh down; fi
}
trap cleanup EXIT

testbed/testbed.sh up || { echo "test bed failed to start" >&2; exit 1; }
. .testbed/env

failed=()
step() {
  local name=$1; shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    echo "==> $name: ok ($((SECONDS - t0))s)"
  else
    echo "==> $name: FAILED ($((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# Integration tests share one control plane; a few threads keep the 2-core
# machine responsive while each test runs its own controller process. The
# module package's checks (moduletests/: helm, kubeconform, dry-run,
# promtool, dmt; controller/tests/module_*.rs: RBAC, configs) are among them.
step "cargo test (module checks included)" cargo test --workspace -- --test-threads="${TEST_THREADS:-4}"

step "addon-operator runs the module's hooks (tests/hooks/addon-operator.sh)" tests/hooks/addon-operator.sh
step "release: images without Docker, module source, channels (tests/release/run.sh)" tests/release/run.sh
# After the release suite, whose image builds leave the musl cache warm.
step "supply chain: toolchain, werf build context, cargo deny, licenses, SBOMs (tests/supply/run.sh)" tests/supply/run.sh
step "node end-to-end (containerd, kubelet; the chart in-cluster)" tests/node/run.sh

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "all test steps passed"
