# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Shared settings for the pod-reloader test bed. Source it; do not execute it.
#
# Versions are pinned here (Kubernetes) and in the committed go.mod/go.sum
# files under testbed/tools/ (etcd, helm, kubeconform). Changing K8S_VERSION
# means regenerating testbed/tools/k8s with testbed/tools/k8s/update-gomod.sh.

K8S_VERSION=v1.36.3          # k8s.io/kubernetes
K8S_STAGING_VERSION=v0.36.3  # k8s.io/<staging module>

TESTBED_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTBED_LIB_DIR/.." && pwd)
TOOLS_DIR=$TESTBED_LIB_DIR/tools

CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader/$K8S_VERSION
BIN_DIR=$CACHE_DIR/bin
TESTBED_DIR=$REPO_ROOT/.testbed

export DEBIAN_FRONTEND=noninteractive

log()  { printf '%s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Shared by testbed.sh and node/node.sh: clocks, process liveness, logs, and
# (below) the one supervisor both use.
now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100)); }
# A zombie counts as gone: it no longer runs, only waits to be reaped.
alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
show_logs() { # show_logs <component...>: the last lines of each one's log in $LOGS
  local name
  for name in "$@"; do
    [ -f "$LOGS/$name.log" ] || continue
    log "---- last lines of $LOGS/$name.log"
    tail -n 30 "$LOGS/$name.log" >&2
  done
}

# ---------------------------------------------------------------- processes
# The supervisor of testbed.sh and node/node.sh. The caller sets CMDS (saved
# command lines, `cmd=(...)` per component), PIDS and LOGS. Pid files hold
# "<pid> <start time>", so a reused pid is never mistaken for ours.

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

pid_in() { # pid_in <pid file>: the pid if that process still runs
  local pid st
  [ -f "$1" ] || return 1
  read -r pid st 2>/dev/null <"$1" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # A pid file without a start time was written before pid files carried one
  # (a test bed started by an older testbed.sh, which also checks the cmdline).
  [ -z "$st" ] || [ "$(starttime "$pid")" = "$st" ] || return 1
  alive "$pid" || return 1
  echo "$pid"
}

start_component() { # start_component <name>: from the saved command line, in its own session
  local name=$1
  [ -f "$CMDS/$name" ] || die "no saved command line for $name ($CMDS/$name); run its 'up' first"
  local -a cmd
  # shellcheck disable=SC1090
  . "$CMDS/$name" # defines cmd=(...)
  command -v "${cmd[0]}" >/dev/null || die "${cmd[0]} is missing; run testbed/build-tools.sh"
  printf '\n==== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$LOGS/$name.log"
  # setsid: own session, so the caller's job control or terminal never
  # signals it. 9>&-: the daemons must not inherit node.sh's lock.
  setsid "${cmd[@]}" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid $(starttime "$pid")" >"$PIDS/$name.pid"
}

stop_pids() { # stop_pids <grace tenths> <pid...>: TERM, then KILL after the grace period
  # STOP_QUIET=1: a KILL after the grace is expected, not logged.
  local grace=$1 t p; shift
  [ "$#" -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for (( t = 0; t < grace; t++ )); do
    local any=0
    for p in "$@"; do alive "$p" && any=1; done
    [ "$any" = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do
    alive "$p" || continue
    [ "${STOP_QUIET:-0}" = 1 ] || log "pid $p ($(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-80)) did not stop on TERM; killing it"
    kill -KILL "$p" 2>/dev/null || true
  done
  for (( t = 0; t < 50; t++ )); do
    local any=0
    for p in "$@"; do alive "$p" && any=1; done
    [ "$any" = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do alive "$p" && { log "pid $p is still running after KILL"; return 1; }; done
  return 0
}

# ---------------------------------------------------------------- children
# A script's own background processes (a controller, a registry,
# addon-operator, a receiver): a free port for them, a readiness wait that
# gives up as soon as the process has exited, and a stop that reaps it.

free_port() { # a free TCP port on 127.0.0.1
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_while_alive() { # wait_while_alive <pid> <tries> <interval> <check...>: check succeeds while pid runs
  local pid=$1 tries=$2 interval=$3 _
  shift 3
  for _ in $(seq 1 "$tries"); do
    "$@" && return 0
    alive "$pid" || return 1
    sleep "$interval"
  done
  return 1
}

stop_child() { # stop_child <pid>: TERM a child of this shell and reap it (no-op without a pid)
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
