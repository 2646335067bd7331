#!/usr/bin/env bash
# Installs the Debian packages the tests need, only if one is missing:
#   prometheus (for promtool), openssl, curl, jq, iproute2 (ss).
# Quiet when everything is there. Runs `apt-get update` at most once.
# The prometheus service itself is never started: only promtool is used.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(prometheus openssl curl jq iproute2)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

command -v apt-get >/dev/null || { echo "error: missing packages ${missing[*]} and no apt-get; install them by hand" >&2; exit 1; }
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: missing packages ${missing[*]}; run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo -n)
fi

echo "installing Debian packages: ${missing[*]}" >&2

# Keep maintainer scripts from starting services (prometheus would otherwise
# start a server on :9090). Debian's invoke-rc.d honours policy-rc.d exit 101.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, written by pod-reloader testbed/install-deps.sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
aptlog=$(mktemp)
if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
       "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"; } >"$aptlog" 2>&1; then
  tail -n 40 "$aptlog" >&2
  rm -f "$aptlog"
  echo "error: apt-get failed installing ${missing[*]}" >&2
  exit 1
fi
rm -f "$aptlog"

# Belt and braces: should a prometheus server have been started or enabled
# anyway, stop it and keep it from starting at boot.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    "${SUDO[@]}" service prometheus stop >/dev/null 2>&1 || true
  fi
  "${SUDO[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

for tool in promtool openssl curl jq ss; do
  command -v "$tool" >/dev/null || { echo "error: $tool still not found after installing ${missing[*]}" >&2; exit 1; }
done
echo "installed: ${missing[*]}" >&2
