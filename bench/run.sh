#!/bin/sh
# bench/run.sh [dispatch|process|coro|async] [flags...] — builds weft and the benchmarks
# in Release (build/bench) and runs them, keeping a copy of each one's output,
# with the machine it ran on, in docs/results/<name>-<date>.txt (not tracked
# by git).
#
#   bench/run.sh                     every benchmark (dispatch, process, coro, async)
#   bench/run.sh dispatch [flags]    the dispatch benchmark, with its flags
#   bench/run.sh process [flags]     the process benchmark, with its flags
#   bench/run.sh coro [flags]        the coroutine switch benchmark
#   bench/run.sh async [flags]       idle-task memory and the HTTP server
#   bench/run.sh mpi [flags]         the mpi executor vs the process pool (with MPI)
#   bench/run.sh --flag ...          flags without a name go to dispatch
#   bench/run.sh NAME --help         a benchmark's flags and measurements
#
# Environment: BUILD_DIR (default build/bench), CC (the compiler CMake uses;
# it must support OpenMP), JOBS (parallel build jobs, default 2).
set -eu

# shellcheck disable=SC1007 # CDPATH= (empty) for this cd only
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/bench}
jobs=${JOBS:-2}

case "${1-}" in
  dispatch|process|coro|async|mpi) names=$1; shift ;;
  -*) names=dispatch ;;
  "") names="dispatch process coro async" ;;
  *) echo "bench/run.sh: unknown benchmark '$1' (dispatch, process, coro, async or mpi)" >&2; exit 2 ;;
esac

help=0
case " $* " in
  *" --help "*|*" -h "*) help=1 ;;
esac

[ "$help" -eq 1 ] || echo "bench/run.sh: configuring and building $build (Release)" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWEFT_BENCH=ON -DWEFT_TESTS=OFF >/dev/null
# shellcheck disable=SC2086 # names is a list of target names
for name in $names; do
  cmake --build "$build" --target "$name" -j "$jobs" >/dev/null
done

if [ "$help" -eq 1 ]; then
  exec "$build/bench/$names" "$@"
fi

mkdir -p "$root/docs/results"
status_file=$(mktemp)
trap 'rm -f "$status_file"' EXIT

# run NAME [flags...]: runs one benchmark, saves its output; returns its status.
run() {
  name=$1
  shift
  out=$root/docs/results/$name-$(date +%Y%m%d-%H%M%S).txt
  {
    echo "# command: bench/run.sh $name $*"
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
    case $name in
      dispatch) echo "# libuv: $(pkg-config --modversion libuv 2>/dev/null || echo unknown)" ;;
      process)
        echo "# python: $(/usr/bin/python3 --version 2>&1 || echo 'none at /usr/bin/python3')"
        echo "# memory: $(sed -n 's/^MemTotal:[[:space:]]*//p' /proc/meminfo)" ;;
      async)
        echo "# python: $(/usr/bin/python3 --version 2>&1 || echo 'none at /usr/bin/python3')"
        echo "# go: $(go version 2>/dev/null || echo none)"
        echo "# nginx: $(/usr/sbin/nginx -v 2>&1 || echo none)"
        echo "# wrk: $(wrk -v 2>&1 | head -n 1 || echo none)" ;;
    esac
  } >"$out"

  # Keep the benchmark's exit status through the pipe (plain sh has no pipefail).
  {
    rc=0
    "$build/bench/$name" "$@" 2>&1 || rc=$?
    echo "$rc" >"$status_file"
  } | tee -a "$out"
  st=$(cat "$status_file")
  if [ "$st" -ne 0 ]; then
    mv "$out" "${out%.txt}-failed.txt"
    out=${out%.txt}-failed.txt
  fi
  echo "bench/run.sh: $name output saved in ${out#"$root"/}" >&2
  return "$st"
}

status=0
# shellcheck disable=SC2086
for name in $names; do
  run "$name" "$@" || status=$?
done
exit "$status"
