#!/usr/bin/env bash
# Runs a command inside a private network namespace made for it: `lo` up, and a veth pair
# 10.200.0.1 <-> 10.200.0.2 with a default route (with `lo` alone Chromium gathers no ICE
# candidates). Nothing inside can reach the machine's own network or beyond; the namespace
# disappears with the command. Browser tests that use WebRTC run only through this script.
#
#   scripts/netns.sh COMMAND [ARGS...]     (as root)
set -euo pipefail
if [ "${ANTIPHON_NETNS:-}" != "inside" ]; then
  exec unshare --net env ANTIPHON_NETNS=inside "$0" "$@"
fi
ip link set lo up
ip link add antiphon0 type veth peer name antiphon1
ip addr add 10.200.0.1/24 dev antiphon0
ip addr add 10.200.0.2/24 dev antiphon1
ip link set antiphon0 up
ip link set antiphon1 up
ip route add default via 10.200.0.2 dev antiphon0
exec "$@"
