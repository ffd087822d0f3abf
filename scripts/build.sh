#!/usr/bin/env bash
# build.sh [KIND] - configure (once) and build one configuration.
# KIND: release (default), debug, asan (ASan+UBSan), tsan, clang (debug with clang).
# The build directory is build-KIND; prints its path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
dir=build-$kind
opts=()
cc=${CC:-gcc}
case $kind in
release) opts=(-Dbuildtype=release) ;;
debug) opts=(-Dbuildtype=debug) ;;
asan) opts=(-Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1) ;;
tsan) opts=(-Dbuildtype=debug -Db_sanitize=thread -Db_lundef=false -Doptimization=1) ;;
clang) opts=(-Dbuildtype=debug); cc=clang ;;
*) echo "build.sh: unknown kind '$kind' (release|debug|asan|tsan|clang)" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
	CC=$cc meson setup "$dir" "${opts[@]}" >/dev/null
fi
ninja -C "$dir" >/dev/null
echo "$dir"
