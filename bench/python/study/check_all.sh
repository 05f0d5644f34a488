#!/bin/bash
# check_all.sh — runs the study's Python cases against the ten-sites server,
# checks each one's exit status (0 = every byte count and fib value right) and
# shows its wall/user/kernel time and max RSS; then checks the error paths
# (bad options 2, wrong results 1, missing module 3).
#
#   check_all.sh [--url BASE] [--scale X] [--weft PATH] [--python PY]
#                [--timeout S] [--no-errors] [CASE...]
#
# CASE: numbers like 01 06 (default all 18).  Without --url (or WEFT_STUDY_URL)
# it starts `weft serve --port 0 --scale X` itself (PATH from --weft, $WEFT,
# the PATH, or build dirs) and stops it on exit.  Default scale 0.1, python
# /usr/bin/python3, time limit 300 s per case.  Exit 0 when all checks pass.
set -u

here=$(cd -- "$(dirname -- "$0")" && pwd)
root=$(cd -- "$here/../../.." && pwd)
url=${WEFT_STUDY_URL:-}
scale=${WEFT_STUDY_SCALE:-0.1}
weft=${WEFT:-}
py=${PYTHON:-/usr/bin/python3}
limit=300
errors=1
cases=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case $1 in
    --url) url=${2:?--url needs a value}; shift 2 ;;
    --scale) scale=${2:?--scale needs a value}; shift 2 ;;
    --weft) weft=${2:?--weft needs a value}; shift 2 ;;
    --python) py=${2:?--python needs a value}; shift 2 ;;
    --timeout) limit=${2:?--timeout needs a value}; shift 2 ;;
    --no-errors) errors=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "check_all.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) cases+=("$1"); shift ;;
  esac
done
[ ${#cases[@]} -eq 0 ] && cases=(01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18)
command -v "$py" >/dev/null || { echo "check_all.sh: no python at $py" >&2; exit 2; }

tmp=$(mktemp -d /tmp/weft-study-check.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, within 10 s.
wait_line() {
  for _ in $(seq 100); do
    grep -m1 -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

if [ -z "$url" ]; then
  if [ -z "$weft" ]; then
    for c in "$(command -v weft 2>/dev/null)" "$root/build/weft" /tmp/b-py/weft; do
      [ -n "$c" ] && [ -x "$c" ] && { weft=$c; break; }
    done
  fi
  [ -x "${weft:-}" ] || {
    echo "check_all.sh: no server: give --url, or --weft PATH to start one" >&2; exit 2; }
  "$weft" serve --port 0 --scale "$scale" >"$tmp/serve.out" 2>&1 &
  pids+=($!)
  line=$(wait_line "$tmp/serve.out" '^serving ') || {
    echo "check_all.sh: server did not start:" >&2; cat "$tmp/serve.out" >&2; exit 1; }
  url=$(printf '%s\n' "$line" | grep -o 'http://[^/ ]*')
fi
export WEFT_STUDY_URL=$url WEFT_STUDY_SCALE=$scale
ncores=$("$py" -c 'import os; print(len(os.sched_getaffinity(0)))')
echo "server $url, scale $scale, $("$py" --version 2>&1), $ncores cores"

fails=0
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -o "$tmp/time" -f "%e %U %S %M")
printf '%-40s %4s %7s %7s %7s %9s  %s\n' case exit wall_s user_s sys_s maxrss_KiB result
for c in "${cases[@]}"; do
  case $c in [0-9]|[0-9][0-9]) c=$(printf '%02d' "$((10#$c))") ;; esac
  matches=("$here/$c"-*.py)
  f=${matches[0]}
  [ -e "$f" ] || { echo "check_all.sh: no case $c" >&2; fails=$((fails + 1)); continue; }
  name=$(basename "$f" .py)
  start=$(date +%s.%N)
  "${timer[@]}" timeout "$limit" "$py" "$f" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ ${#timer[@]} -gt 0 ]; then
    # The last line: time puts "Command exited with non-zero status" before it.
    read -r wall user sys rss < <(tail -n 1 "$tmp/time")
  else
    wall=$(echo "$(date +%s.%N) - $start" | bc); user=- sys=- rss=-
  fi
  if [ $rc -eq 0 ] && grep -q ", ok" "$tmp/out"; then result=$(sed 's/.*, ok/ok/' "$tmp/out")
  else result="FAILED"; fails=$((fails + 1)); fi
  [ $rc -eq 124 ] && result="FAILED (time limit ${limit}s)"
  printf '%-40s %4s %7s %7s %7s %9s  %s\n' "$name" "$rc" "$wall" "$user" "$sys" "$rss" "$result"
  [ "$result" = FAILED ] && sed 's/^/    /' "$tmp/err" "$tmp/out" | tail -20
done

# expect WANT DESC CMD...: the command must exit with status WANT.
expect() {
  local want=$1 desc=$2; shift 2
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq "$want" ]; then
    printf 'ok    exit %d  %s\n' "$rc" "$desc"
  else
    printf 'FAIL  exit %d, want %d  %s\n' "$rc" "$want" "$desc"
    sed 's/^/    /' "$tmp/err" | tail -5
    fails=$((fails + 1))
  fi
}

if [ $errors -eq 1 ]; then
  echo "error paths:"
  s01="$here/01-io-sequential.py" s03="$here/03-io-processes.py" s06="$here/06-io-async.py"
  expect 2 "unknown option" "$py" "$s01" --bogus
  expect 2 "no server address" env -u WEFT_STUDY_URL "$py" "$s01"
  expect 2 "--scale 0" "$py" "$s01" --scale 0
  expect 2 "WEFT_STUDY_SCALE=abc" env WEFT_STUDY_SCALE=abc "$py" "$s01"
  expect 2 "--url not http" "$py" "$s01" --url 127.0.0.1:1
  # A server whose sites have the wrong sizes (one byte short): every kind of
  # fetch (sequential, process, async) must notice.
  mkdir -p "$tmp/www/site"
  for i in 0 1 2 3 4 5 6 7 8 9; do head -c 99 /dev/zero >"$tmp/www/site/$i"; done
  "$py" -u -m http.server --bind 127.0.0.1 --directory "$tmp/www" 0 >"$tmp/http.out" 2>&1 &
  pids+=($!)
  if line=$(wait_line "$tmp/http.out" 'port [0-9]'); then
    bad="http://127.0.0.1:$(printf '%s\n' "$line" | sed 's/.*port \([0-9]*\).*/\1/')"
    expect 1 "wrong sizes, sequential" "$py" "$s01" --url "$bad"
    expect 1 "wrong sizes, processes" "$py" "$s03" --url "$bad"
    expect 1 "wrong sizes, async" "$py" "$s06" --url "$bad"
  else
    echo "FAIL  could not start python's http.server"; fails=$((fails + 1))
  fi
  expect 1 "404 from the server" "$py" "$s06" --url "$url/nope"
  # common.finish() itself, fed one wrong fib value, then one fetch short.
  pre="import sys; sys.path.insert(0, '$here')"
  expect 1 "wrong fib value" "$py" -c "$pre; sys.argv = ['08-cpu-sequential.py']
import common; a = common.setup()
common.finish(a, fibs=[(n, common.fib_expected(n) + (n == 30)) for n in a.numbers])"
  expect 1 "a fetch missing" "$py" -c "$pre; sys.argv = ['01-io-sequential.py']
import common; a = common.setup()
common.finish(a, fetches=[(u, common.SIZES[int(u[-1])]) for u in a.urls[1:]])"
  # A module that cannot be imported stands in for a missing one.
  mkdir -p "$tmp/fake"
  echo 'raise ImportError("simulated")' >"$tmp/fake/httpx.py"
  echo 'raise ImportError("simulated")' >"$tmp/fake/requests.py"
  expect 3 "httpx missing" env PYTHONPATH="$tmp/fake" "$py" "$s06"
  expect 3 "requests missing" env PYTHONPATH="$tmp/fake" "$py" "$s01"
  grep -q python3-requests "$tmp/err" || {
    echo "FAIL  the message does not name python3-requests"; fails=$((fails + 1)); }
fi

if [ $fails -ne 0 ]; then echo "check_all.sh: $fails FAILED"; exit 1; fi
echo "check_all.sh: all ok"
