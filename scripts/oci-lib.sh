# shellcheck shell=bash disable=SC2034  # globals set here are read by the scripts that source this file
# Helpers shared by scripts/images.sh, scripts/release.sh and
# tests/release/run.sh. Source it (after testbed/lib.sh); do not execute it.
#
#   oci_tools             build crane and the distribution registry if missing
#                         (testbed/build-tools.sh) and set CRANE / REGISTRY_BIN
#   registry_start DIR    start a throwaway registry on 127.0.0.1:<free port>
#                         storing into DIR; sets REGISTRY_ADDR, REGISTRY_PID
#   registry_stop         stop the registry started by registry_start
#   crane ARGS...         run crane quietly (its warnings go to stderr only on
#                         failure)
#   release_tool ARGS...  scripts/release-tool.py under a Python that has PyYAML
#   git_meta              set GIT_COMMIT, GIT_DIRTY (0/1), SOURCE_DATE_EPOCH and
#                         CREATED (commit time, RFC 3339 UTC)
#   make_layer ROOTFS FILE  deterministic gzip'd tar of ROOTFS (no "./" prefix;
#                         owner 0, mtime SOURCE_DATE_EPOCH)
#
# Every registry here listens on 127.0.0.1 only and keeps its data in a
# temporary directory; traces are off (OTEL_TRACES_EXPORTER=none).

RELEASE_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pod-reloader
MODULE_NAME=pod-reloader

oci_tools() {
  "$REPO_ROOT/testbed/build-tools.sh" crane registry
  CRANE=$BIN_DIR/crane
  REGISTRY_BIN=$BIN_DIR/registry
  if [ ! -x "$CRANE" ] || [ ! -x "$REGISTRY_BIN" ]; then
    die "crane/registry missing in $BIN_DIR"
  fi
}

crane() {
  local err rc=0
  err=$(mktemp)
  "$CRANE" "$@" 2>"$err" || rc=$?
  if [ "$rc" != 0 ]; then
    sed 's/^/crane: /' "$err" >&2
  fi
  rm -f "$err"
  return "$rc"
}

registry_start() {
  local dir=$1 port try
  mkdir -p "$dir/data"
  for try in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
EOF
    OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none OTEL_SDK_DISABLED=true \
      "$REGISTRY_BIN" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    REGISTRY_ADDR=127.0.0.1:$port
    if wait_while_alive "$REGISTRY_PID" 100 0.1 curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; then
      return 0
    fi
    stop_child "$REGISTRY_PID"
    log "registry on port $port did not start (try $try):"
    tail -n 5 "$dir/registry.log" >&2
  done
  die "could not start a local registry"
}

registry_stop() {
  stop_child "${REGISTRY_PID:-}"
  REGISTRY_PID=
}

# make_layer ROOTFS FILE: deterministic gzip'd tar of ROOTFS (no "./" prefix).
make_layer() {
  local rootfs=$1 file=$2
  (cd "$rootfs" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
    tar --create --file=- --directory="$rootfs" --no-recursion --verbatim-files-from --files-from=- \
      --format=gnu --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" \
      --no-acls --no-xattrs --no-selinux |
    gzip -9n >"$file"
}

git_meta() {
  GIT_COMMIT=$(git -C "$REPO_ROOT" rev-parse HEAD)
  SOURCE_DATE_EPOCH=$(git -C "$REPO_ROOT" log -1 --format=%ct HEAD)
  CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  GIT_DIRTY=0
  if [ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ]; then
    GIT_DIRTY=1
  fi
  export SOURCE_DATE_EPOCH
}

release_tool() {
  if [ -z "${RELEASE_PY:-}" ]; then
    local py
    for py in python3 /usr/bin/python3; do
      if "$py" -c 'import yaml' >/dev/null 2>&1; then
        RELEASE_PY=$py
        break
      fi
    done
    [ -n "${RELEASE_PY:-}" ] || die "no python3 with PyYAML (apt-get install python3-yaml)"
  fi
  "$RELEASE_PY" "$REPO_ROOT/scripts/release-tool.py" "$@"
}
