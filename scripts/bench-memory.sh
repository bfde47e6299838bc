#!/usr/bin/env bash
# scripts/bench-memory.sh: resident memory of an x0t node, idle and with 1,000
# configured peers. Runs each node on a kernel TUN in its own network namespace
# (root), waits SETTLE seconds, and prints VmRSS and VmHWM from /proc.
#
#   sudo ./scripts/bench-memory.sh          # PEERS=1000 SETTLE=10
#
# The 1,000 peers have certificates from the same CA and endpoints in a subnet
# that exists only inside the namespace, so the node starts (and retries)
# handshakes with every one of them, as it would in a large static mesh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

PEERS=${PEERS:-1000}
SETTLE=${SETTLE:-10}
X0T=${X0T:-}

lib_need_root
lib_need_cmd ip
lib_init
lib_tmpdir
T=$LIB_TMP

if [[ -z $X0T ]]; then
	X0T=$T/x0t
	go build -o "$X0T" ./cmd/x0t
fi

lib_log "making a CA and $PEERS peer certificates"
"$X0T" ca init --name mem --out "$T/ca" >/dev/null
"$X0T" cert sign --ca "$T/ca" --name self --ip 100.64.0.1/10 --out "$T/self" >/dev/null
peers_yaml=$T/peers.yaml
: >"$peers_yaml"
for ((i = 0; i < PEERS; i++)); do
	host=$((i + 2))
	ip4="100.$((64 + host / 65536)).$(((host / 256) % 256)).$((host % 256))"
	"$X0T" cert sign --ca "$T/ca" --name "p$i" --ip "$ip4/10" --out "$T/p$i" >/dev/null
	printf '  - cert: %s\n    endpoints: [10.98.%d.%d:4242]\n' "$T/p$i/node.crt" $((i / 250)) $((i % 250 + 1)) >>"$peers_yaml"
done

# rss NAME CONFIG: start a node with CONFIG in a fresh namespace, print its memory.
rss() {
	local name=$1 cfg=$2 ns pid
	lib_netns_add "$name"
	ns=$(lib_ns_name "$name")
	# A veth pair inside the namespace gives the underlay a subnet (this kernel
	# has no dummy links); the peers' addresses on it never answer.
	ip -n "$ns" link add u0 type veth peer name u1
	ip -n "$ns" addr add 10.98.0.254/16 dev u0
	ip -n "$ns" link set u0 up
	ip -n "$ns" link set u1 up
	lib_bg "$ns" "$T/$name.log" "$X0T" node up --config "$cfg" ${DEBUG_LISTEN:+--debug-listen "$DEBUG_LISTEN"}
	pid=$LIB_LAST_PID
	sleep "$SETTLE"
	if [[ -n ${HEAP_PROFILE:-} ]]; then
		ip netns exec "$ns" curl -s -o "$HEAP_PROFILE.$name" "http://$DEBUG_LISTEN/debug/pprof/heap" || true
	fi
	lib_alive "$pid" || {
		cat "$T/$name.log" >&2
		lib_die "node $name exited"
	}
	local rss hwm anon file
	rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
	hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
	# RSS = the process's own memory (anon) + pages of the binary it has
	# mapped in (file: shared page cache, most of it text the package inits
	# touched, and the kernel maps neighbouring cached pages with each fault).
	anon=$(awk '/^RssAnon/{print $2}' "/proc/$pid/status")
	file=$(awk '/^RssFile/{print $2}' "/proc/$pid/status")
	printf '%-22s RSS %6.1f MiB (anon %5.1f, file %5.1f)   peak %6.1f MiB\n' "$3" "$(echo "$rss / 1024" | bc -l)" \
		"$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
	echo "RESULT $name rss_kib=$rss anon_kib=$anon file_kib=$file hwm_kib=$hwm"
	lib_stop "$pid" 5 || true
}

base="listen: 10.98.0.254:4242
ca: $T/ca/ca.crt
cert: $T/self/node.crt
key: $T/self/node.key
tun: x0t0
log_level: warn"
printf '%s\npeers: []\n' "$base" >"$T/idle.yaml"
printf '%s\npeers:\n' "$base" >"$T/full.yaml"
cat "$peers_yaml" >>"$T/full.yaml"

echo "bench-memory: $(uname -r), $(nproc) CPUs, settle ${SETTLE}s"
rss idle "$T/idle.yaml" "idle node"
rss full "$T/full.yaml" "node with $PEERS peers"
