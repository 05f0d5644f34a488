#!/usr/bin/env bash
# fuzz.sh [seconds] — fuzz the HTTP/1.1 request parser with libFuzzer.
#
# Builds tests/fuzz/fuzz_http_parse.c with src/async/http_parse.c using
# clang -fsanitize=fuzzer,address,undefined (nothing else of the library is
# needed), runs it for `seconds` (default 60) on a copy of
# tests/fuzz/corpus/http in a temporary directory (the checked-in seeds are
# never modified), prints one summary line, and exits non-zero if the target
# crashed or an invariant failed (the crashing input is kept and named).
#
# Environment: CC (default clang), FUZZ_KEEP=1 keeps the temporary directory.
set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [seconds]   (a positive whole number, default 60)" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cc=${CC:-clang}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-fuzz-http.XXXXXX")
cleanup() { if [ "${FUZZ_KEEP:-0}" != 1 ] && [ "${keep_tmp:-0}" != 1 ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

bin=$tmp/fuzz_http_parse
"$cc" -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" -I"$root/src" \
  "$root/src/async/http_parse.c" "$root/tests/fuzz/fuzz_http_parse.c" -o "$bin"

mkdir -p "$tmp/corpus" "$tmp/artifacts"
cp "$root"/tests/fuzz/corpus/http/* "$tmp/corpus/"
seeds=$(find "$tmp/corpus" -type f | wc -l)

# Tokens the grammar cares about, so that mutations reach deep states fast.
cat >"$tmp/http.dict" <<'EOF'
"GET "
"POST "
" HTTP/1.1\x0d\x0a"
" HTTP/1.0\x0d\x0a"
"HTTP/"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Content-Length: "
"content-length:"
"Transfer-Encoding: chunked"
"Connection: close"
"Connection: keep-alive"
"Host: "
": "
"99999999999999999999999"
EOF

set +e
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$tmp/http.dict" -artifact_prefix="$tmp/artifacts/" "$tmp/corpus" >"$tmp/log" 2>&1
rc=$?
set -e

# (|| true: a run that crashes at once prints no coverage lines.)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/log" | tail -1 || true)
cov=$(grep -o 'cov: [0-9]*' "$tmp/log" | tail -1 | cut -d' ' -f2 || true)
ft=$(grep -o 'ft: [0-9]*' "$tmp/log" | tail -1 | cut -d' ' -f2 || true)
corpus=$(find "$tmp/corpus" -type f | wc -l)
crash=$(find "$tmp/artifacts" -type f | head -1 || true)

if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
  keep_tmp=1
  grep -E 'ERROR|invariant failed|SUMMARY|^    #[0-9]' "$tmp/log" | head -40 >&2 || true
  echo "fuzz_http_parse: FAILED (exit $rc) after ${runs:-?} runs; input: ${crash:-none}; log: $tmp/log"
  exit 1
fi
echo "fuzz_http_parse: OK ${runs:-?} runs in ${secs}s, no crash; coverage ${cov:-?} edges, ${ft:-?} features; corpus ${seeds} -> ${corpus} inputs"
