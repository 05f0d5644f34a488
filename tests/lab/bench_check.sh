#!/bin/sh
# The lab's end-to-end check (ctest lab.bench_quick, and CI):
#   bench_check.sh WEFT_BIN OUTDIR [weft bench options...]
# runs `weft bench` with the options, writes OUTDIR/bench.{json,md,svg}, and
# checks the JSON with check_bench.py (every run ok, the orderings hold).
set -e
weft=$1
out=$2
shift 2
mkdir -p "$out"
"$weft" bench "$@" --json "$out/bench.json" --markdown "$out/bench.md" --svg "$out/bench.svg"
exec /usr/bin/python3 "$(dirname "$0")/check_bench.py" "$out/bench.json"
