#!/usr/bin/env bash
# netns-agent.sh HOST COMMAND... — Open MPI's "rsh agent" for netns.sh: runs
# COMMAND on HOST as ssh would (the words joined and run by a shell), where
# HOST is a network namespace named in $WEFT_NETNS_MAP ("host namespace"
# lines), under that host name (a UTS namespace of its own).
set -u
host=$1
shift
ns=$(awk -v h="$host" '$1 == h { print $2 }' "${WEFT_NETNS_MAP:?}")
[ -n "$ns" ] || { echo "netns-agent: unknown host '$host'" >&2; exit 255; }
exec ip netns exec "$ns" unshare --uts -- sh -c 'hostname "$1" && shift && eval "$*"' sh "$host" "$@"
