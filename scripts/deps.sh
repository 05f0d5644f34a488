#!/usr/bin/env bash
# scripts/deps.sh [build|test|bench|all] — installs the Debian packages weft
# needs for that job, and only those that are missing (checked with
# dpkg-query): one `apt-get update`, then one `apt-get install -y`.
# Works as root with no tty; as another user it uses `sudo -n` if it can.
# This is the one list of the project's system packages.
set -euo pipefail

# Compile and install the library.
# libcurl: the HTTP client (blocking and multi socket).
build_pkgs=(build-essential gcc make cmake pkg-config libcurl4-openssl-dev)
# `make test`: the gcc and clang sanitizer builds (clang's sanitizer runtimes
# are only a Recommends of clang, so named here), valgrind; the bench peers are
# included so that CI proves they build.
# Open MPI and iproute2 (network namespaces): the mpi executor's tests.
test_pkgs=("${build_pkgs[@]}" clang libclang-rt-dev valgrind python3 libuv1-dev libomp-dev
  libopenmpi-dev openmpi-bin iproute2)
# `make bench`: the peers libuv and OpenMP (libgomp comes with gcc; clang needs libomp).
# The async benchmark: wrk drives the HTTP servers, nginx is the peer server,
# Go (golang-go) the goroutine peer; python3-httpx and python3-requests are
# the study's Python clients.
bench_pkgs=("${build_pkgs[@]}" clang libuv1-dev libomp-dev python3 wrk nginx-light golang-go
  python3-httpx python3-requests libopenmpi-dev openmpi-bin)

job=${1:-all}
case "$job" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${test_pkgs[@]}") ;;
  bench) want=("${bench_pkgs[@]}") ;;
  all) want=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: scripts/deps.sh [build|test|bench|all]" >&2; exit 2 ;;
esac

# Each package once, in order.
read -r -a want <<<"$(printf '%s\n' "${want[@]}" | awk '!seen[$0]++' | tr '\n' ' ')"
missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps ($job): all ${#want[@]} packages present"
  exit 0
fi

echo "deps ($job): installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "deps: missing packages (${missing[*]}) and not root; install them or run as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o DPkg::Lock::Timeout=600)
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update </dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y "${missing[@]}" </dev/null
