#!/usr/bin/env bash
# scripts/test.sh [STAGE...] — the test stages of `make test` (the CI job).
# Each stage configures its own build directory build/<dir>, builds it with
# -Werror and runs ctest (--output-on-failure, -j$JOBS). With no argument all
# stages run, in this order:
#
#   gcc       build/asan-gcc     gcc, Debug, ASan+UBSan       every test
#   clang     build/asan-clang   clang, Debug, ASan+UBSan     every test
#   tsan      build/tsan-clang   clang, RelWithDebInfo, TSan  ctest -L concurrency -LE notsan
#   memcheck  build/memcheck     gcc, RelWithDebInfo, each test case under
#                                valgrind memcheck with WEFT_TEST_SCALE=0.02
#                                (cases labelled novalgrind, the README examples
#                                and the install test run natively)   every test
#   fuzz      (a temp dir)       the HTTP request parser under libFuzzer
#                                (scripts/fuzz.sh, FUZZ_SECONDS, default 60)
#
# and one more on request:
#   install   build/memcheck     ctest -L install: install into build/memcheck/stage,
#                                build an outside project with find_package(weft)
#                                and with pkg-config (also part of every full run)
#
# Every stage runs even when an earlier one failed (FAIL_FAST=1 stops at the
# first failure). The output ends with one line per stage and then the plain
# total `total: N passed, N failed`; the exit status is 0 only if every stage
# built and passed.
#
# Environment: JOBS (default 2), BUILD (default build), FAIL_FAST, and any of
# ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS to override the defaults below.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
jobs=${JOBS:-2}
build=${BUILD:-build}
all_stages=(gcc clang tsan memcheck fuzz)
known_stages=(gcc clang tsan memcheck install fuzz)
if [ $# -gt 0 ]; then stages=("$@"); else stages=("${all_stages[@]}"); fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

total_pass=0 total_fail=0 status=0
report=()

# configure DIR CC BUILD_TYPE [cmake args...]
configure() {
  local dir=$1 cc=$2 type=$3
  shift 3
  mkdir -p "$dir"
  cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE="$type" \
    -DWEFT_WERROR=ON "$@" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; return 1; }
  cmake --build "$dir" -j"$jobs"
}

# run_ctest NAME DIR [PREFIX_COMMAND...] -- [CTEST_ARGS...]
# Runs ctest in DIR (optionally under a prefix command such as setarch), keeps
# its output in DIR/ctest-NAME.log, and adds its counts to the totals.
run_ctest() {
  local name=$1 dir=$2
  shift 2
  local prefix=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do prefix+=("$1"); shift; done
  shift
  local log=$dir/ctest-$name.log rc
  (cd "$dir" && "${prefix[@]}" ctest --output-on-failure -j"$jobs" "$@") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local line total failed
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  elif grep -q 'No tests were found' "$log"; then
    failed=0 total=0
  else
    failed=1 total=1 # ctest itself broke: count it as one failure
  fi
  [ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1 total=$((total + 1))
  total_pass=$((total_pass + total - failed))
  total_fail=$((total_fail + failed))
  report+=("$(printf '%-9s %4d tests %4d failed  %4ds  %s' "$name" "$total" "$failed" \
    $((SECONDS - stage_start)) "$([ "$failed" -eq 0 ] && echo ok || echo FAILED)")")
  [ "$failed" -eq 0 ]
}

build_failed() {
  total_fail=$((total_fail + 1))
  report+=("$(printf '%-9s build FAILED  %4ds' "$1" $((SECONDS - stage_start)))")
  return 1
}

run() {
  local stage=$1 dir
  stage_start=$SECONDS
  echo
  echo "======== stage $stage ========"
  case "$stage" in
    gcc)
      dir=$build/asan-gcc
      configure "$dir" gcc Debug -DWEFT_SANITIZE=address,undefined || { build_failed "$stage"; return 1; }
      run_ctest "$stage" "$dir" --
      ;;
    clang)
      dir=$build/asan-clang
      configure "$dir" clang Debug -DWEFT_SANITIZE=address,undefined || { build_failed "$stage"; return 1; }
      run_ctest "$stage" "$dir" --
      ;;
    tsan)
      # TSan wants a narrow address layout; kernels with many ASLR bits break
      # it ("unexpected memory mapping"), so the tests run with ASLR off.
      dir=$build/tsan-clang
      configure "$dir" clang RelWithDebInfo -DWEFT_SANITIZE=thread || { build_failed "$stage"; return 1; }
      run_ctest "$stage" "$dir" setarch "$(uname -m)" -R -- -L concurrency -LE notsan
      ;;
    install | memcheck)
      dir=$build/memcheck
      configure "$dir" gcc RelWithDebInfo -DWEFT_VALGRIND=ON || { build_failed "$stage"; return 1; }
      if [ "$stage" = install ]; then
        run_ctest "$stage" "$dir" -- -L install
      else
        run_ctest "$stage" "$dir" --
      fi
      ;;
    fuzz)
      # The HTTP request parser under libFuzzer (clang, ASan+UBSan), for a
      # bounded time (FUZZ_SECONDS, default 60); one test: crash or not.
      local log=$build/fuzz.log
      bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}" 2>&1 | tee "$log"
      if [ "${PIPESTATUS[0]}" -eq 0 ]; then
        total_pass=$((total_pass + 1))
        report+=("$(printf '%-9s %4d tests %4d failed  %4ds  %s' fuzz 1 0 $((SECONDS - stage_start)) ok)")
      else
        total_fail=$((total_fail + 1))
        report+=("$(printf '%-9s %4d tests %4d failed  %4ds  %s' fuzz 1 1 $((SECONDS - stage_start)) FAILED)")
        return 1
      fi
      ;;
    *)
      echo "scripts/test.sh: unknown stage '$stage' (stages: ${known_stages[*]})" >&2
      exit 2
      ;;
  esac
}

mkdir -p "$build"
for stage in "${stages[@]}"; do
  if ! run "$stage"; then
    status=1
    [ "${FAIL_FAST:-0}" = 1 ] && break
  fi
done

echo
echo "======== summary ========"
printf '%s\n' "${report[@]}"
echo "total: $total_pass passed, $total_fail failed"
exit "$status"
