# shellcheck shell=bash
# The PASS/FAIL/SKIP reporting of the shell test suites (tests/release,
# tests/node, tests/hooks, tests/supply). The caller sets WORK (a scratch
# directory for command logs) before calling check or expect_fail.

PASSED=0
FAILED=0
SKIPPED=0
# Lines of a failed command's log shown under its FAIL line.
CHECK_TAIL=${CHECK_TAIL:-40}
# 1: expect_fail matches its pattern ignoring case.
EXPECT_FAIL_IGNORE_CASE=${EXPECT_FAIL_IGNORE_CASE:-0}

pass() { PASSED=$((PASSED + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }
skip() { SKIPPED=$((SKIPPED + 1)); printf 'SKIP %s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }
indent() { sed 's/^/    /'; }

# summary: "N passed, N failed" (", N skipped" when something was skipped).
summary() {
  if ((SKIPPED)); then
    printf '\n%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
  else
    printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
  fi
}

# check NAME CMD...: run CMD with its output in a log; print the log on failure.
check() {
  local name=$1
  shift
  local log=$WORK/log.$((PASSED + FAILED + SKIPPED))
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name"
    indent <"$log" | tail -n "$CHECK_TAIL"
  fi
}

# expect_fail NAME PATTERN CMD...: CMD must fail and print PATTERN (grep BRE).
expect_fail() {
  local name=$1 pattern=$2 opts=-q
  shift 2
  [[ $EXPECT_FAIL_IGNORE_CASE == 1 ]] && opts=-qi
  local log=$WORK/log.$((PASSED + FAILED + SKIPPED))
  if "$@" >"$log" 2>&1; then
    fail "$name (succeeded, expected a refusal)"
    indent <"$log" | tail -n 20
  elif grep "$opts" -- "$pattern" "$log"; then
    pass "$name"
  else
    fail "$name (failed without \"$pattern\")"
    indent <"$log" | tail -n 20
  fi
}
