#!/usr/bin/env bash
# The README's C examples as tests. Every fenced ```c block of README.md that
# contains `int main(` is a whole program: it must compile with
# -std=c11 -Wall -Wextra -Werror against weft and exit 0.
#
#   readme-examples.sh --count README.md            prints how many there are
#   readme-examples.sh --matches N README.md FILE   the Nth program is FILE, exactly
#   readme-examples.sh --run N README.md --cc CC --cflags "F" --include DIR \
#                      --lib LIBWEFT.a --workdir DIR   builds and runs the Nth
set -euo pipefail

# Prints the Nth program block (N >= 1), or the number of them (N = 0).
extract() {
  awk -v want="$1" '
    /^```[cC][[:space:]]*$/ && !inb { inb = 1; buf = ""; next }
    /^```[[:space:]]*$/ && inb {
      inb = 0
      if (buf ~ /int[[:space:]]+main[[:space:]]*\(/) { n++; if (n == want) printf "%s", buf }
      next
    }
    inb { buf = buf $0 "\n" }
    END { if (want == 0) print n + 0 }
  ' "$2"
}

mode=${1:-}
case "$mode" in
  --count)
    extract 0 "$2"
    ;;
  --matches)
    if diff -u "$4" <(extract "$2" "$3"); then
      echo "README example $2 is identical to $4"
    else
      echo "README example $2 differs from $4 (diff above): keep them identical" >&2
      exit 1
    fi
    ;;
  --run)
    n=$2 readme=$3; shift 3
    cc=${CC:-cc} cflags="" include="" lib="" workdir=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --cc) cc=$2 ;;
        --cflags) cflags=$2 ;;
        --include) include=$2 ;;
        --lib) lib=$2 ;;
        --workdir) workdir=$2 ;;
        *) echo "readme-examples.sh: unknown argument: $1" >&2; exit 2 ;;
      esac
      shift 2
    done
    if [ -z "$include" ] || [ -z "$lib" ] || [ -z "$workdir" ]; then
      echo "readme-examples.sh: --include, --lib and --workdir are required" >&2
      exit 2
    fi
    mkdir -p "$workdir"
    src=$workdir/example$n.c
    extract "$n" "$readme" >"$src"
    [ -s "$src" ] || { echo "README.md has no example $n" >&2; exit 1; }
    read -r -a cflag_list <<<"$cflags"
    echo "== README example $n ($src)"
    "$cc" "${cflag_list[@]}" -std=c11 -Wall -Wextra -Werror -I"$include" "$src" "$lib" -pthread -lcurl \
      -o "$workdir/example$n"
    (cd "$workdir" && "./example$n")
    ;;
  *)
    echo "usage: readme-examples.sh --count README.md | --matches N README.md FILE | --run N README.md --cc CC --cflags F --include DIR --lib LIB --workdir DIR" >&2
    exit 2
    ;;
esac
