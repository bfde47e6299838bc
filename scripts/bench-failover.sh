#!/usr/bin/env bash
# scripts/bench-failover.sh: failover time of the mesh. Builds the diamond
# alpha–beta–delta / alpha–gamma–delta in four network namespaces (root), runs a
# numbered UDP probe from alpha to delta every 5 ms, cuts alpha's link on the
# active path (`ip link set DEV down`) CUTS times, and prints the longest gap in
# the probe stream after each cut, then the median and the maximum.
#
#   sudo ./scripts/bench-failover.sh          # CUTS=20
#
# The work is done by e2e.TestFailoverFigures (the namespace helpers live there);
# this script only sets it off and passes its figures through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CUTS=${CUTS:-20}
lib_need_root
lib_need_cmd ip go

echo "bench-failover: $(uname -r), $(nproc) CPUs, $CUTS cuts, load average $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(X0T_FAILOVER_CUTS=$CUTS go test -count=1 -timeout 30m -run '^TestFailoverFigures$' -v ./e2e/ 2>&1) || {
	printf '%s\n' "$out" >&2
	lib_die "the failover run failed"
}
printf '%s\n' "$out" | grep -E '^(cut |FAILOVER )'
result=$(printf '%s\n' "$out" | grep '^FAILOVER ' || true)
[[ -n $result ]] || lib_die "no FAILOVER line in the output"
