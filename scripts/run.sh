#!/usr/bin/env bash
# run.sh [hetmm args...] - install deps, build (release), run hetmm.
# With no arguments: `hetmm run` on the built-in default workload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
dir=$(scripts/build.sh release | tail -1)
if (($# == 0)); then set -- run; fi
exec "$dir/tools/hetmm" "$@"
