#!/usr/bin/env bash
# run.sh — runs one MPI test program under mpirun on this machine, bounded.
#   run.sh MPIRUN NP SECONDS PROGRAM ARGS...
#   run.sh --direct SECONDS PROGRAM ARGS...   (a program that starts mpirun
#                                              itself: only the environment)
# Extra mpirun options come from $WEFT_MPIRUN_ARGS (e.g. the recovery mode
# the killed-rank case needs). Root may run Open MPI only when told so; a
# 2-core machine runs 3 ranks only with --oversubscribe.
set -u
direct=0
if [ "$1" = --direct ]; then
  direct=1 secs=$2
  shift 2
else
  mpirun=$1 np=$2 secs=$3
  shift 3
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under ASan: Open MPI is built without frame pointers, so only the slow
# unwinder gives allocation stacks deep enough to reach the Open MPI library
# that made them, which lsan.supp names (its plugins are unloaded by then).
# Checks on weft's own memory are unchanged.
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/lsan.supp:print_suppressions=0"
# A job of one rank (singleton): Open MPI leaves the process in a state where
# LeakSanitizer's own tracer crashes at exit; that case alone runs without
# the leak check (every other case checks weft's leaks on the same paths).
if [ "${WEFT_MPI_NO_LEAK_CHECK:-0}" = 1 ]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
fi
[ $direct = 1 ] && exec timeout -k 10 "$secs" "$@"
if [ "${WEFT_MPI_VERDICT:-0}" != 1 ]; then
  # shellcheck disable=SC2086
  exec timeout -k 10 "$secs" "$mpirun" -np "$np" --oversubscribe --bind-to none \
    ${WEFT_MPIRUN_ARGS:-} "$@"
fi
# In recovery mode mpirun exits 0 whatever the ranks did, and may lose the
# last lines rank 0 wrote: rank 0 writes its verdict to a file instead.
# Open MPI's recovery mode itself sometimes hangs after a rank is killed
# (seen once in four CI runs, with "PMIX ERROR: BAD-PARAM" and no verdict
# from rank 0): such an attempt is timed out and tried once more, each
# attempt within half the time allowed.
export WEFT_MPI_VERDICT_FILE
WEFT_MPI_VERDICT_FILE=$(mktemp /tmp/weft-mpi-verdict.XXXXXX)
trap 'rm -f "$WEFT_MPI_VERDICT_FILE"' EXIT
for attempt in 1 2; do
  : >"$WEFT_MPI_VERDICT_FILE"
  # shellcheck disable=SC2086
  timeout -k 5 $((secs / 2)) "$mpirun" -np "$np" --oversubscribe --bind-to none \
    ${WEFT_MPIRUN_ARGS:-} "$@"
  rc=$?
  verdict=$(cat "$WEFT_MPI_VERDICT_FILE")
  echo "run.sh: attempt $attempt: mpirun exited $rc; rank 0's verdict: ${verdict:-none}" >&2
  [ "$rc" = 124 ] && [ -z "$verdict" ] && continue # Open MPI hung: once more
  break
done
[ "$rc" = 0 ] && [ "$verdict" = passed ]
