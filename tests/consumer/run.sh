#!/usr/bin/env bash
# The install test (CTest "install.consumer", label "install"):
#  1. installs the weft build at --build into <build>/stage;
#  2. configures, builds and runs this directory's outside project with
#     find_package(weft) (CMAKE_PREFIX_PATH=<stage>), shared and static;
#  3. compiles the same main.c with `cc $(pkg-config --cflags --libs weft)`
#     (PKG_CONFIG_PATH inside the stage), shared and static, and runs both.
# Any failing step fails the test.
#
# usage: run.sh --build DIR [--config CFG] [--cc CC] [--cflags "FLAGS"] [--generator GEN]
set -euo pipefail

build="" config="" cc="${CC:-cc}" cflags="" generator=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    --cflags) cflags=$2; shift 2 ;;
    --generator) generator=$2; shift 2 ;;
    *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$build" ] || { echo "run.sh: --build DIR is required" >&2; exit 2; }
build=$(cd "$build" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
stage=$build/stage
work=$build/consumer
read -r -a cflag_list <<<"$cflags"

current="start"
trap 'echo "install test FAILED at: $current" >&2' ERR
step() { current=$*; echo "== $*"; }
fail() { echo "install test: $*" >&2; exit 1; }
# Checks that a program loads libweft.so from the stage (want=shared) or not
# at all (want=static).
check_linkage() {
  local exe=$1 want=$2 line
  line=$(ldd "$exe" | grep 'libweft\.so' || true)
  if [ "$want" = shared ]; then
    case "$line" in *"$stage"/*) ;; *) fail "$exe does not load libweft.so from the stage: '$line'" ;; esac
  elif [ -n "$line" ]; then
    fail "$exe should be linked statically but loads: $line"
  fi
}

rm -rf "$stage" "$work"
mkdir -p "$work"

step "install into $stage"
cmake --install "$build" ${config:+--config "$config"} --prefix "$stage"
[ -f "$stage/include/weft.h" ] || fail "missing $stage/include/weft.h"
for f in libweft.so libweft.a weft.pc weftConfig.cmake weftConfigVersion.cmake weftTargets.cmake; do
  [ -n "$(find "$stage" -name "$f" -print -quit)" ] || fail "missing $f under $stage"
done

step "find_package(weft): configure"
cmake -S "$here" -B "$work/cmake" ${generator:+-G "$generator"} \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
  -DCMAKE_PREFIX_PATH="$stage" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
found=$(sed -n 's/^weft_DIR:PATH=//p' "$work/cmake/CMakeCache.txt")
case "$found" in "$stage"/*) ;; *) fail "find_package found weft outside the stage: $found" ;; esac

step "find_package(weft): build"
cmake --build "$work/cmake"

step "find_package(weft): run consumer (weft::weft)"
"$work/cmake/consumer"
check_linkage "$work/cmake/consumer" shared

step "find_package(weft): run consumer_static (weft::weft_static)"
"$work/cmake/consumer_static"
check_linkage "$work/cmake/consumer_static" static

step "pkg-config"
pc=$(find "$stage" -name weft.pc -print -quit)
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
pkg-config --exists --print-errors weft
echo "weft.pc: version $(pkg-config --modversion weft): $(pkg-config --cflags --libs weft)"
case "$(pkg-config --variable=includedir weft)" in "$stage"/*) ;; *) fail "weft.pc includedir is not in the stage" ;; esac
libdir=$(pkg-config --variable=libdir weft)
case "$libdir" in "$stage"/*) ;; *) fail "weft.pc libdir is not in the stage" ;; esac

step "pkg-config: cc \$(pkg-config --cflags --libs weft)"
# shellcheck disable=SC2046
"$cc" "${cflag_list[@]}" -std=c11 -Wall -Wextra -Werror "$here/main.c" -o "$work/pc-shared" \
  $(pkg-config --cflags --libs weft) -Wl,-rpath,"$libdir"
"$work/pc-shared"
check_linkage "$work/pc-shared" shared

step "pkg-config: cc ... \$(pkg-config --static --libs weft), libweft.a"
# shellcheck disable=SC2046
"$cc" "${cflag_list[@]}" -std=c11 -Wall -Wextra -Werror "$here/main.c" -o "$work/pc-static" \
  $(pkg-config --cflags weft) \
  -Wl,-Bstatic $(pkg-config --static --libs-only-L --libs-only-l weft) -Wl,-Bdynamic \
  $(pkg-config --static --libs-only-other weft)
"$work/pc-static"
check_linkage "$work/pc-static" static

current="done"
echo "install test: all steps passed"
