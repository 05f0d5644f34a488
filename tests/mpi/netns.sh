#!/usr/bin/env bash
# netns.sh — runs an MPI program across three "machines" on this one: three
# network namespaces (each with its own host name, in its own UTS namespace)
# joined through a bridge by veth pairs. mpirun runs on h1 and starts its
# daemons on h2 and h3 through `ip netns exec` (netns-agent.sh, given as
# Open MPI's rsh agent), and the ranks talk TCP over the veth links only
# (btl tcp,self).
#
#   netns.sh MPIRUN SECONDS PROGRAM ARGS...     (3 ranks: one per host)
#
# Exits 77 (a skip, with the reason on stderr) where namespaces cannot be
# made (not root, no CAP_SYS_ADMIN, no iproute2). Everything it creates is
# removed on every exit (trap), and the whole run is bounded by SECONDS.
set -u
mpirun=$1 secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*" >&2; exit 77; }

[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
command -v unshare >/dev/null || skip "no 'unshare' command (util-linux)"

# Names unique to this run, so that runs side by side do not collide.
tag=w$$
sw=${tag}sw
ns=("${tag}h1" "${tag}h2" "${tag}h3")
hosts=(h1 h2 h3)
work=$(mktemp -d /tmp/weft-netns.XXXXXX)

cleanup() {
  for n in "${ns[@]}" "$sw"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 124' INT TERM

ip netns add "$sw" 2>"$work/err" || skip "cannot make a network namespace: $(cat "$work/err")"
ip -n "$sw" link add br0 type bridge || skip "cannot make a bridge"
ip -n "$sw" link set br0 up
for i in 0 1 2; do
  n=${ns[$i]}
  ip netns add "$n" || skip "cannot make namespace $n"
  # The veth pair is made inside the switch namespace and one end moved out,
  # so no interface ever appears in the caller's namespace.
  ip -n "$sw" link add "p$i" type veth peer name eth0 netns "$n" || skip "cannot make a veth pair"
  ip -n "$sw" link set "p$i" master br0 up
  ip -n "$n" addr add "10.77.0.$((i + 11))/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" link set lo up
  echo "${hosts[$i]} ${n}" >>"$work/map"
done
printf 'h1 slots=1\nh2 slots=1\nh3 slots=1\n' >"$work/hosts"
export WEFT_NETNS_MAP=$work/map
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/lsan.supp:print_suppressions=0"
# mpirun itself runs on h1 (its namespace, its host name).
timeout -k 10 "$secs" ip netns exec "${ns[0]}" unshare --uts -- sh -c 'hostname h1 && exec "$@"' sh \
  "$mpirun" -np 3 --hostfile "$work/hosts" --map-by node --bind-to none \
  --mca plm rsh --mca plm_rsh_agent "$here/netns-agent.sh" \
  --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
  --mca oob_tcp_if_include 10.77.0.0/24 \
  -x WEFT_NETNS_MAP -x ASAN_OPTIONS -x LSAN_OPTIONS \
  "$@"
rc=$?
[ $rc = 124 ] && echo "netns: timed out after $secs s" >&2
exit $rc
