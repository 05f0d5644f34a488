#!/bin/sh
# bench/run.sh [dispatch flags...] — builds weft and the benchmarks in Release
# (build/bench), runs the dispatch benchmark with the given flags (see
# `bench/run.sh --help`) and keeps a copy of its output, with the machine it
# ran on, in docs/results/dispatch-<date>.txt (not tracked by git).
#
# Environment: BUILD_DIR (default build/bench), CC (the compiler CMake uses;
# it must support OpenMP), JOBS (parallel build jobs, default 2).
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/bench}
jobs=${JOBS:-2}

case " $* " in
  *" --help "*|*" -h "*) ;;
  *) echo "bench/run.sh: configuring and building $build (Release)" >&2 ;;
esac
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWEFT_BENCH=ON -DWEFT_TESTS=OFF >/dev/null
cmake --build "$build" --target dispatch -j "$jobs" >/dev/null

case " $* " in
  *" --help "*|*" -h "*) exec "$build/bench/dispatch" "$@" ;;
esac

mkdir -p "$root/docs/results"
out=$root/docs/results/dispatch-$(date +%Y%m%d-%H%M%S).txt
{
  echo "# command: bench/run.sh $*"
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$root" status --porcelain --untracked-files=normal -- src include 2>/dev/null)
  echo "# commit: $commit${dirty:+ (src/ or include/ differ from it)}"
  echo "# nproc: $(nproc)"
  echo "# cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "(family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n 1))" \
    "$(grep -q '^flags.* hypervisor' /proc/cpuinfo && echo 'virtual machine')"
  echo "# kernel: $(uname -sr)"
  cc_path=$(sed -n 's/^CMAKE_C_COMPILER:[^=]*=//p' "$build/CMakeCache.txt")
  echo "# cc: $cc_path ($("$cc_path" --version 2>/dev/null | head -n 1))"
  echo "# libuv: $(pkg-config --modversion libuv 2>/dev/null || echo unknown)"
} >"$out"

# Keep dispatch's exit status through the pipe (plain sh has no pipefail).
status_file=$(mktemp)
trap 'rm -f "$status_file"' EXIT
{
  rc=0
  "$build/bench/dispatch" "$@" 2>&1 || rc=$?
  echo "$rc" >"$status_file"
} | tee -a "$out"
status=$(cat "$status_file")
if [ "$status" -ne 0 ]; then
  mv "$out" "${out%.txt}-failed.txt"
  out=${out%.txt}-failed.txt
fi
echo "bench/run.sh: output saved in ${out#$root/}" >&2
exit "$status"
