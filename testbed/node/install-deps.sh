#!/usr/bin/env bash
# Installs the Debian packages of the test bed's node, only if one is missing:
#   containerd, runc, containernetworking-plugins (bridge, host-local, loopback).
# Their services are never started (a policy-rc.d refuses it while apt runs):
# testbed/node/node.sh runs its own containerd with its own paths.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(containerd runc containernetworking-plugins)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

command -v apt-get >/dev/null || { echo "error: missing packages ${missing[*]} and no apt-get; install them by hand" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: missing packages ${missing[*]}; run as root" >&2; exit 1; }
echo "installing Debian packages: ${missing[*]}" >&2

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, written by pod-reloader testbed/node/install-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

aptlog=$(mktemp)
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
if ! { timeout 600 apt-get install "${apt_opts[@]}" "${missing[@]}" || { timeout 300 apt-get update -q && timeout 600 apt-get install "${apt_opts[@]}" "${missing[@]}"; }; } >"$aptlog" 2>&1; then
  tail -n 30 "$aptlog" >&2
  rm -f "$aptlog"
  echo "error: apt-get failed installing ${missing[*]}" >&2
  exit 1
fi
rm -f "$aptlog"
# Should the package have started a system containerd anyway, stop it: it is not ours to keep.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
echo "installed: ${missing[*]}" >&2
