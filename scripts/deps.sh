#!/usr/bin/env bash
# Install what hetmm needs to build and test, if it is missing (Debian 12).
# Packages and why:
#   meson ninja-build pkg-config  the build system
#   gcc clang                     both compilers must build it warning-free
#   liburcu-dev                   RCU (call_rcu/synchronize_rcu) for lock-free walkers
#   libcmocka-dev                 the unit-test framework
#   python3                       totals test results (meson needs it anyway)
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc clang liburcu-dev libcmocka-dev python3)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "hetmm: installing ${missing[*]}" >&2
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
