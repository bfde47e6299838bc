#!/usr/bin/env bash
# scripts/bench-throughput.sh: iperf3 throughput and ping latency between two
# network namespaces joined by a veth, over (a) the bare veth, (b) x0t with kernel
# TUN, (c) wireguard-go; all measured in one run, interleaved. And (d) x0t
# relayed: a third namespace c hangs off b by a second veth, and a reaches c
# through b (x0t a-b-c), compared with the direct a-b figure of the same run.
# Last, the x0t nodes' heap allocations per packet on the wire during a TCP run.
#
# Usage: sudo scripts/bench-throughput.sh [--rounds N] [--duration S] [--only LIST] [--x0t PATH]
#
# Environment (flags win):
#   ROUNDS=3        rounds; each round measures every cell once, variants alternating
#   DURATION=5      seconds per iperf3 run (-t)
#   ONLY=veth,x0t,relay,wg   variants to run (relay needs x0t)
#   X0T=path        x0t binary (default: go build -o bin/x0t ./cmd/x0t)
#   WG_GO=path      wireguard-go binary (default: wireguard-go on PATH, else
#                   bin/wireguard-go, else go install golang.zx2c4.com/wireguard@latest into bin/)
#   WG_MTU=1440     MTU of both tunnels, wireguard-go's and x0t's (see below)
#   UDP_LEN=1400    UDP payload bytes (-l)
#   PING_COUNT=200  echo requests per variant and round
#   PING_INTERVAL=0.005  seconds between them (rtt)
#   PING_BUSY_INTERVAL=0.0005  the same for a second series, a steady stream
#                   (stream rtt): CPUs that go idle between echoes make every
#                   wakeup slow on a VM, so both are shown
#   BUSY_POLL=10ms  after the rounds, restart the x0t nodes in the low-latency
#                   mode (node up --busy-poll BUSY_POLL) and measure ping and
#                   one-stream TCP again, ROUNDS times; 0 skips it
#   IPERF_LOG=file  append each TCP run's retransmissions (iperf3's count) to file
#   PROFILE=dir     also save 5 s CPU profiles of every x0t node during a
#                   single-stream run, direct and relayed, as
#                   dir/{x0t,relay}-{a,b,c}.pprof (needs curl)
#
# Cells: tcp1 = one TCP stream, tcp4 = four (-P 4), udp = UDP at full speed
# (-u -b 0 -l UDP_LEN), all in Gbit/s as received; rtt = median ping RTT in µs;
# cpu_cores = CPU time of all x0t nodes over the sparse ping series' wall time.
# Every cell is the median over the rounds. Machine-readable lines close the
# report, the last one being
#   RATIO x0t/wireguard-go tcp1=0.93 tcp4=1.02 udp=0.88 rtt=1.10
# (rtt is a ratio of latencies: lower is better for x0t; NA where not measured),
# after
#   RELAY x0t a-b-c/a-b tcp1=0.85 tcp4=0.90 udp=0.80
#   LATENCY x0t-veth rtt_us=+45 stream_rtt_us=+40 relayed_rtt_us=+60 cpu_cores=0.10 (limit +100)
#   LATENCY x0t--busy-poll=10ms-veth rtt_us=+30 stream_rtt_us=+20 relayed_rtt_us=+45 cpu_cores=1.20 (limit +100)
#   ALLOCS x0t node-a mallocs/packet=0.001 node-b mallocs/packet=0.002
#
# Needs root, iproute2, iperf3, iputils-ping, procps; for wg also wireguard-tools
# and Go (to build wireguard-go). Creates namespaces x0t-s<pid>-a/b/c and removes
# them, and every process it started, on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
ONLY=${ONLY:-veth,x0t,relay,wg}
X0T=${X0T:-}
WG_GO=${WG_GO:-}
# wg-quick's default of 1420 leaves room for an IPv6 underlay (80 bytes of
# overhead). Our underlay is IPv4 (60 bytes), so 1440 is the largest MTU that
# does not fragment on the 1500-byte veth, and it lets a 1400-byte UDP payload
# (1428-byte packet) through whole: otherwise wireguard-go would be measured
# fragmenting every UDP datagram and the baseline would look worse than it is.
# x0t's per-packet overhead is the same (32 bytes), so it gets the same MTU.
WG_MTU=${WG_MTU:-1440}
UDP_LEN=${UDP_LEN:-1400}
PING_COUNT=${PING_COUNT:-200}
PING_INTERVAL=${PING_INTERVAL:-0.005}
PING_BUSY_INTERVAL=${PING_BUSY_INTERVAL:-0.0005}
BUSY_POLL=${BUSY_POLL:-10ms}
PROFILE=${PROFILE:-}

while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2 && shift 2 ;;
	--duration | -t) DURATION=$2 && shift 2 ;;
	--only) ONLY=$2 && shift 2 ;;
	--x0t) X0T=$2 && shift 2 ;;
	-h | --help) usage && exit 0 ;;
	*) usage >&2 && exit 2 ;;
	esac
done
for v in ROUNDS DURATION WG_MTU UDP_LEN PING_COUNT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || lib_die "$v must be a positive integer, not '${!v}'"
done
ONLY=${ONLY//wireguard-go/wg}
for v in ${ONLY//,/ }; do
	[[ $v == veth || $v == x0t || $v == relay || $v == wg ]] || lib_die "ONLY: unknown variant '$v' (veth, x0t, relay, wg)"
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
want relay && ! want x0t && lib_die "ONLY: relay needs x0t"

lib_need_root
lib_need_cmd ip iperf3 ping ps awk timeout
[[ -n $PROFILE ]] && lib_need_cmd curl && mkdir -p "$PROFILE" && PROFILE=$(cd "$PROFILE" && pwd)
want wg && lib_need_cmd wg

# ---------------------------------------------------------------- binaries
if want x0t; then
	if [[ -z $X0T ]]; then
		[[ -d $repo/cmd/x0t ]] || lib_die "no ./cmd/x0t to build; set X0T=path or ONLY=veth,wg"
		lib_log "building x0t: go build -o bin/x0t ./cmd/x0t"
		(cd "$repo" && go build -o bin/x0t ./cmd/x0t)
		X0T=$repo/bin/x0t
	fi
	[[ -x $X0T ]] || lib_die "X0T=$X0T is not an executable"
fi
if want wg; then
	if [[ -z $WG_GO ]]; then
		if command -v wireguard-go >/dev/null 2>&1; then
			WG_GO=$(command -v wireguard-go)
		elif [[ -x $repo/bin/wireguard-go ]]; then
			WG_GO=$repo/bin/wireguard-go
		else
			lib_need_cmd go
			lib_log "installing wireguard-go: go install golang.zx2c4.com/wireguard@latest (cached in bin/)"
			mkdir -p "$repo/bin"
			gobin=$(mktemp -d)
			GOBIN=$gobin go install golang.zx2c4.com/wireguard@latest
			# The module's command is called "wireguard"; give it its usual name.
			mv "$gobin/wireguard" "$repo/bin/wireguard-go"
			rmdir "$gobin"
			WG_GO=$repo/bin/wireguard-go
		fi
	fi
	[[ -x $WG_GO ]] || lib_die "WG_GO=$WG_GO is not an executable"
fi

# ---------------------------------------------------------------- topology
lib_init
lib_tmpdir
T=$LIB_TMP
lib_netns_add a
lib_netns_add b
NS_A=$(lib_ns_name a)
NS_B=$(lib_ns_name b)
lib_veth "$NS_A" 10.99.0.1/24 "$NS_B" 10.99.0.2/24
SIDES=(a b)
if want relay; then
	lib_netns_add c
	NS_C=$(lib_ns_name c)
	lib_veth "$NS_B" 10.98.0.1/24 "$NS_C" 10.98.0.2/24 veth1 veth0
	SIDES+=(c)
fi

declare -A ADDR=([veth]=10.99.0.2 [x0t]=100.64.0.2 [relay]=100.64.0.3 [wg]=10.77.0.2 [x0tbp]=100.64.0.2 [relaybp]=100.64.0.3)
declare -A LABEL=([veth]=veth [x0t]=x0t [relay]=x0t-relay [wg]=wireguard-go [x0tbp]=x0t-busy-poll [relaybp]=x0t-relay-busy-poll)
declare -A MTU=([veth]=1500)
declare -A INFO=()
declare -A X0T_PID=() WG_PID=()
VARIANTS=()
want veth && VARIANTS+=(veth)
want x0t && VARIANTS+=(x0t)
want relay && VARIANTS+=(relay)
want wg && VARIANTS+=(wg)

# wait_ping NS ADDR SECONDS PID: poll until ADDR answers from NS; fail early if
# the daemon PID died.
wait_ping() {
	local i
	for ((i = 0; i < $3 * 5; i++)); do
		ip netns exec "$1" ping -n -q -c 1 -W 0.2 "$2" >/dev/null 2>&1 && return 0
		[[ -n ${4:-} ]] && ! lib_alive "$4" && return 1
		sleep 0.2
	done
	return 1
}

link_mtu() { ip -n "$1" -o link show dev "$2" | sed -n 's/.* mtu \([0-9]*\) .*/\1/p'; }

# iperf3 server for every variant: it listens on all of b's addresses.
lib_bg "$NS_B" "$T/iperf3-server.log" iperf3 -s
IPERF_PIDS=("$LIB_LAST_PID")
if want relay; then
	lib_bg "$NS_C" "$T/iperf3-server-c.log" iperf3 -s
	IPERF_PIDS+=("$LIB_LAST_PID")
fi

if want wg; then
	wg_a=wgx$$a wg_b=wgx$$b # unique: wireguard-go's control socket path is global
	for side in a b; do
		ns=$(lib_ns_name "$side")
		ifname=wgx$$$side
		(umask 077 && wg genkey >"$T/wg-$side.key")
		wg pubkey <"$T/wg-$side.key" >"$T/wg-$side.pub"
		LIB_FILES+=("/var/run/wireguard/$ifname.sock") # left behind if it is SIGKILLed
		# -f: stay in the foreground so that we hold its PID; the variable silences
		# the "use the kernel module" banner.
		lib_bg "$ns" "$T/wireguard-go-$side.log" env WG_PROCESS_FOREGROUND=1 "$WG_GO" -f "$ifname"
		WG_PID[$side]=$LIB_LAST_PID
	done
	for ((i = 0; i < 100; i++)); do
		[[ -S /var/run/wireguard/$wg_a.sock && -S /var/run/wireguard/$wg_b.sock ]] && break
		sleep 0.05
	done
	ip netns exec "$NS_A" wg set "$wg_a" private-key "$T/wg-a.key" listen-port 51820 \
		peer "$(cat "$T/wg-b.pub")" allowed-ips 10.77.0.2/32 endpoint 10.99.0.2:51820
	ip netns exec "$NS_B" wg set "$wg_b" private-key "$T/wg-b.key" listen-port 51820 \
		peer "$(cat "$T/wg-a.pub")" allowed-ips 10.77.0.1/32 endpoint 10.99.0.1:51820
	ip -n "$NS_A" addr add 10.77.0.1/24 dev "$wg_a"
	ip -n "$NS_B" addr add 10.77.0.2/24 dev "$wg_b"
	ip -n "$NS_A" link set "$wg_a" mtu "$WG_MTU" up
	ip -n "$NS_B" link set "$wg_b" mtu "$WG_MTU" up
	if ! wait_ping "$NS_A" 10.77.0.2 10 "${WG_PID[a]}"; then
		tail -n 20 "$T"/wireguard-go-*.log >&2 || true
		lib_die "no ping over wireguard-go"
	fi
	MTU[wg]=$(link_mtu "$NS_A" "$wg_a")
	INFO[wg]="$WG_GO ($(go version -m "$WG_GO" 2>/dev/null | awk '$1 == "mod" {print $3}' || true))"
fi

# start_x0t [ARG...]: start an x0t node in every namespace, with ARGs added to
# `node up`, and wait until a reaches b (and c through b).
start_x0t() {
	local side
	for side in "${SIDES[@]}"; do
		lib_bg "$(lib_ns_name "$side")" "$T/x0t-$side.log" "$X0T" node up --config "$T/x0t-$side.yaml" \
			--debug-listen 127.0.0.1:6060 "$@"
		X0T_PID[$side]=$LIB_LAST_PID
	done
	if ! wait_ping "$NS_A" 100.64.0.2 30 "${X0T_PID[a]}" || ! wait_ping "$NS_B" 100.64.0.1 5 "${X0T_PID[b]}" ||
		{ want relay && ! wait_ping "$NS_A" 100.64.0.3 30 "${X0T_PID[c]}"; }; then
		for side in "${SIDES[@]}"; do
			echo "--- x0t node $side:" >&2
			tail -n 30 "$T/x0t-$side.log" >&2 || true
		done
		lib_die "no ping over x0t within 30 s"
	fi
}

# stop_x0t: the nodes must stop cleanly on SIGTERM and take their TUN with them.
stop_x0t() {
	local side rc left
	for side in "${SIDES[@]}"; do
		rc=0
		lib_stop "${X0T_PID[$side]}" 5 || rc=$?
		left=$(ip -n "$(lib_ns_name "$side")" -o link show dev x0t0 2>/dev/null || true)
		lib_log "x0t node $side stopped: exit status $rc${left:+; x0t0 still exists}"
	done
}

if want x0t; then
	"$X0T" ca init --name bench --out "$T/ca" >"$T/x0t-ca.log" 2>&1 ||
		{ cat "$T/x0t-ca.log" >&2; lib_die "x0t ca init failed"; }
	n=0
	for side in "${SIDES[@]}"; do
		n=$((n + 1))
		"$X0T" cert sign --ca "$T/ca" --name "node-$side" --ip "100.64.0.$n/10" --out "$T/$side" >"$T/x0t-cert-$side.log" 2>&1 ||
			{ cat "$T/x0t-cert-$side.log" >&2; lib_die "x0t cert sign failed"; }
		for f in "$T/ca/ca.crt" "$T/$side/node.crt" "$T/$side/node.key"; do
			[[ -s $f ]] || lib_die "x0t did not write $f"
		done
	done
	# a - b [- c]: a and c are each other's peers only through b, which
	# listens on both of its veths.
	declare -A LISTEN=([a]=10.99.0.1:4242 [b]=0.0.0.0:4242 [c]=10.98.0.2:4242)
	declare -A PEERS=([a]="b=10.99.0.2:4242 c=" [b]="a=10.99.0.1:4242 c=10.98.0.2:4242" [c]="b=10.98.0.1:4242 a=")
	for side in "${SIDES[@]}"; do
		{
			echo "listen: ${LISTEN[$side]}"
			echo "ca: \"$T/ca/ca.crt\""
			echo "cert: \"$T/$side/node.crt\""
			echo "key: \"$T/$side/node.key\""
			echo "tun: x0t0"
			echo "mtu: $WG_MTU"
			echo "socket: \"$T/x0t-$side.sock\""
			echo "peers:"
			for pe in ${PEERS[$side]}; do
				peer=${pe%%=*} ep=${pe#*=}
				[[ -d $T/$peer ]] || continue
				echo "  - cert: \"$T/$peer/node.crt\""
				[[ -n $ep ]] && echo "    endpoints: [$ep]"
			done
		} >"$T/x0t-$side.yaml"
	done
	start_x0t
	MTU[x0t]=$(link_mtu "$NS_A" x0t0)
	INFO[x0t]=$X0T
fi

declare -A DEV=([veth]=veth0 [x0t]=x0t0 [relay]=x0t0 [wg]=wgx$$a)
MTU[relay]=${MTU[x0t]:-}
INFO[relay]="a -> b -> c"

for v in "${VARIANTS[@]}"; do
	# A figure is worthless if the traffic took another path (say, a stray route
	# sending overlay addresses over the bare veth).
	via=$(ip -n "$NS_A" route get "${ADDR[$v]}" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
	[[ $via == "${DEV[$v]}" ]] || lib_die "${ADDR[$v]} is routed via '$via', not ${DEV[$v]}"
	if ((UDP_LEN + 28 > ${MTU[$v]:-0})); then
		lib_warn "${LABEL[$v]} MTU ${MTU[$v]:-?} < $((UDP_LEN + 28)): its UDP datagrams will be fragmented"
	fi
done

# ---------------------------------------------------------------- measurements
RESULTS=$T/results # lines: variant cell value

# iperf_once VARIANT CELL: print the receiver's Gbit/s, or NA.
iperf_once() {
	local args=(-c "${ADDR[$1]}" -t "$DURATION" -J) out bps
	case $2 in
	tcp4) args+=(-P 4) ;;
	udp) args+=(-u -b 0 -l "$UDP_LEN") ;;
	esac
	for _ in 1 2 3; do
		# The server refuses a new test for a moment after a UDP flood ("server is
		# busy"); retry then.
		out=$(timeout $((DURATION + 30)) ip netns exec "$NS_A" iperf3 "${args[@]}" 2>&1) && break
		sleep 1
	done
	# iperf3 -J is pretty-printed, one key per line: take end.sum_received, which
	# for UDP too (iperf3 >= 3.1) counts what arrived, not what was sent.
	bps=$(awk '/"sum_received":/ {f = 1} f && /"bits_per_second":/ {gsub(/[^0-9.eE+-]/, "", $2); print $2; exit}' <<<"$out")
	if [[ -z $bps ]]; then
		lib_warn "iperf3 ${LABEL[$1]} $2 failed: $(grep -m1 '"error"' <<<"$out" || tail -n 1 <<<"$out")"
		echo NA
		return
	fi
	[[ -n ${IPERF_LOG:-} ]] && printf "%s %s retransmits=%s\n" "$1" "$2" "$(awk '/"sum_sent":/ {f = 1} f && /"retransmits":/ {gsub(/[^0-9]/, "", $2); print $2; exit}' <<<"$out")" >>"$IPERF_LOG"
	awk -v b="$bps" 'BEGIN {printf "%.3f\n", b / 1e9}'
}

# x0t_ticks: CPU time so far of the running x0t nodes, in clock ticks
# (/proc/PID/stat utime + stime; the command name in field 2 has no spaces).
x0t_ticks() {
	local side sum=0 f
	for side in "${SIDES[@]}"; do
		read -ra f <"/proc/${X0T_PID[$side]}/stat" || continue
		sum=$((sum + f[13] + f[14]))
	done
	echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)

# ping_once VARIANT CELL INTERVAL: append per-packet RTTs in µs to RESULTS;
# for an x0t variant also the nodes' CPU use meanwhile, as cell cpu_CELL.
ping_once() {
	local t0 c0 t1 c1
	[[ $1 == x0t* || $1 == relay* ]] && t0=$(date +%s.%N) c0=$(x0t_ticks)
	ip netns exec "$NS_A" ping -n -c "$PING_COUNT" -i "$3" -W 1 "${ADDR[$1]}" 2>/dev/null |
		awk -v v="$1" -v c="$2" '/time=/ {sub(/.*time=/, ""); printf "%s %s %.0f\n", v, c, $1 * 1000}' >>"$RESULTS" || true
	if [[ -n ${c0:-} ]]; then
		t1=$(date +%s.%N) c1=$(x0t_ticks)
		awk -v v="$1" -v c="$2" -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v s="$t0" -v e="$t1" \
			'BEGIN {printf "%s cpu_%s %.3f\n", v, c, t / hz / (e - s)}' >>"$RESULTS"
	fi
}

CELLS=(tcp1 tcp4 udp)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
lib_log "measuring ${VARIANTS[*]}: $ROUNDS rounds x ${#CELLS[@]} iperf3 runs x ${DURATION}s per variant, plus ping"
: >"$RESULTS"
for ((r = 1; r <= ROUNDS; r++)); do
	for c in "${CELLS[@]}"; do
		line="round $r/$ROUNDS $c:"
		for v in "${VARIANTS[@]}"; do
			g=$(iperf_once "$v" "$c")
			echo "$v $c $g" >>"$RESULTS"
			line+=" ${LABEL[$v]}=$g"
		done
		lib_log "$line"
	done
	for v in "${VARIANTS[@]}"; do
		ping_once "$v" rtt "$PING_INTERVAL"
		ping_once "$v" rttb "$PING_BUSY_INTERVAL"
	done
done

# mallocs NS: the Go heap's allocation count of the x0t node in NS (its
# debug listener's heap profile ends with the runtime's MemStats).
mallocs() {
	ip netns exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6060 && printf "GET /debug/pprof/heap?debug=1 HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
		awk '/^# Mallocs = / {print $4; exit}'
}
# wire_bytes NS: bytes in and out of NS's veth0 so far.
wire_bytes() {
	ip netns exec "$1" cat /sys/class/net/veth0/statistics/rx_bytes /sys/class/net/veth0/statistics/tx_bytes |
		awk '{n += $1} END {printf "%.0f\n", n}'
}
# profile VARIANT: CPU profiles of the x0t nodes during a tcp1 run of VARIANT.
profile() {
	local side pids=()
	for side in "${SIDES[@]}"; do
		ip netns exec "$(lib_ns_name "$side")" curl -sf -o "$PROFILE/$1-$side.pprof" \
			"http://127.0.0.1:6060/debug/pprof/profile?seconds=5" &
		pids+=($!)
	done
	sleep 0.2
	DURATION=6 iperf_once "$1" tcp1 >/dev/null
	wait "${pids[@]}" || lib_log "a profile could not be fetched"
	lib_log "profiles of $1: $PROFILE/$1-{${SIDES[*]}}.pprof"
}
ALLOCS_LINE=
if want x0t; then
	# Allocations per packet through the real kernel TUN and UDP socket: one
	# more single-stream run, counting the nodes' mallocs and the datagrams
	# on the wire around it.
	# Datagrams are counted as full-size ones (bytes / (MTU + 60)): the veth
	# carries GSO batches, whose packet counter counts batches.
	m_a0=$(mallocs "$NS_A") m_b0=$(mallocs "$NS_B") p_a0=$(wire_bytes "$NS_A") p_b0=$(wire_bytes "$NS_B")
	g=$(iperf_once x0t tcp1)
	m_a1=$(mallocs "$NS_A") m_b1=$(mallocs "$NS_B") p_a1=$(wire_bytes "$NS_A") p_b1=$(wire_bytes "$NS_B")
	if [[ -n $m_a0 && -n $m_a1 && -n $m_b0 && -n $m_b1 ]]; then
		ALLOCS_LINE=$(awk -v ma=$((m_a1 - m_a0)) -v mb=$((m_b1 - m_b0)) -v ba=$((p_a1 - p_a0)) -v bb=$((p_b1 - p_b0)) \
			-v s=$((MTU[x0t] + 60)) -v g="$g" \
			'BEGIN {pa = ba / s; pb = bb / s; printf "ALLOCS x0t node-a mallocs/packet=%.5f node-b mallocs/packet=%.5f (tcp1 %s Gbit/s, %d and %d datagrams)", ma / pa, mb / pb, g, pa, pb}')
		lib_log "${ALLOCS_LINE#ALLOCS }"
	else
		lib_log "could not read the nodes' allocation counts from their debug listeners"
	fi
	if [[ -n $PROFILE ]]; then
		profile x0t
		want relay && profile relay
	fi
	stop_x0t
	# The low-latency mode: the same nodes restarted with --busy-poll. Sparse
	# echoes are where it matters (docs/perf.md: every echo otherwise wakes
	# four threads on idle vCPUs); one TCP stream shows what it costs or buys
	# under load.
	if [[ $BUSY_POLL != 0 ]]; then
		lib_log "restarting the x0t nodes with --busy-poll $BUSY_POLL"
		start_x0t --busy-poll "$BUSY_POLL"
		for ((r = 1; r <= ROUNDS; r++)); do
			g=$(iperf_once x0tbp tcp1)
			echo "x0tbp tcp1 $g" >>"$RESULTS"
			lib_log "round $r/$ROUNDS busy-poll: tcp1 ${LABEL[x0tbp]}=$g"
			for v in x0tbp relaybp; do
				[[ $v == relaybp ]] && ! want relay && continue
				ping_once "$v" rtt "$PING_INTERVAL"
				ping_once "$v" rttb "$PING_BUSY_INTERVAL"
			done
		done
		stop_x0t
	fi
fi
for pid in "${IPERF_PIDS[@]}"; do lib_stop "$pid" 2 || true; done

# ---------------------------------------------------------------- report
# median VARIANT CELL: median of the numeric samples, or NA.
median() {
	awk -v v="$1" -v c="$2" '$1 == v && $2 == c && $3 != "NA" {print $3}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
spread() {
	awk -v v="$1" -v c="$2" '$1 == v && $2 == c && $3 != "NA" {print $3}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END {if (NR) printf "%s..%s", a[1], a[NR]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f\n", a / b}'; }
fmt() { awk -v x="$1" -v d="$2" 'BEGIN {if (x == "NA") print "NA"; else printf "%.*f\n", d, x}'; }

declare -A M=()
for v in veth x0t relay wg x0tbp relaybp; do
	for c in "${CELLS[@]}" rtt rttb cpu_rtt; do
		M[$v.$c]=$(median "$v" "$c") # NA where not measured
	done
done

echo
echo "bench-throughput: $(uname -r), $(nproc) CPUs, $ROUNDS rounds, iperf3 -t $DURATION, UDP -l $UDP_LEN, ping x$PING_COUNT per round"
# Other work on the machine skews everything; the load says how much there was.
echo "load average: at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
for v in "${VARIANTS[@]}"; do
	printf '  %-13s MTU %-5s %s\n' "${LABEL[$v]}" "${MTU[$v]:-?}" "${INFO[$v]:-}"
done
echo
printf '%-14s %10s %10s %14s %10s\n' "" veth x0t wireguard-go x0t/wg
for c in "${CELLS[@]}"; do
	printf '%-14s %10s %10s %14s %10s\n' "$c Gbit/s" "$(fmt "${M[veth.$c]}" 2)" "$(fmt "${M[x0t.$c]}" 2)" \
		"$(fmt "${M[wg.$c]}" 2)" "$(ratio "${M[x0t.$c]}" "${M[wg.$c]}")"
done
printf '%-14s %10s %10s %14s %10s\n' "rtt µs (med)" "$(fmt "${M[veth.rtt]}" 0)" "$(fmt "${M[x0t.rtt]}" 0)" \
	"$(fmt "${M[wg.rtt]}" 0)" "$(ratio "${M[x0t.rtt]}" "${M[wg.rtt]}")"
printf '%-14s %10s %10s %14s %10s\n' "rtt, stream" "$(fmt "${M[veth.rttb]}" 0)" "$(fmt "${M[x0t.rttb]}" 0)" \
	"$(fmt "${M[wg.rttb]}" 0)" "$(ratio "${M[x0t.rttb]}" "${M[wg.rttb]}")"
if want relay; then
	echo
	printf '%-14s %10s %10s %14s\n' "" "x0t a-b" "x0t a-b-c" "relayed/direct"
	for c in "${CELLS[@]}"; do
		printf '%-14s %10s %10s %14s\n' "$c Gbit/s" "$(fmt "${M[x0t.$c]}" 2)" "$(fmt "${M[relay.$c]}" 2)" "$(ratio "${M[relay.$c]}" "${M[x0t.$c]}")"
	done
	printf '%-14s %10s %10s %14s\n' "rtt µs (med)" "$(fmt "${M[x0t.rtt]}" 0)" "$(fmt "${M[relay.rtt]}" 0)" "$(ratio "${M[relay.rtt]}" "${M[x0t.rtt]}")"
fi
if [[ ${M[x0tbp.rtt]} != NA ]]; then
	echo
	echo "low-latency mode, node up --busy-poll $BUSY_POLL (same nodes, restarted):"
	printf '%-14s %10s %10s %14s %10s %14s\n' "" veth x0t "x0t busy-poll" x0t-relay "relay busy-poll"
	printf '%-14s %10s %10s %14s %10s %14s\n' "rtt µs (med)" "$(fmt "${M[veth.rtt]}" 0)" "$(fmt "${M[x0t.rtt]}" 0)" \
		"$(fmt "${M[x0tbp.rtt]}" 0)" "$(fmt "${M[relay.rtt]}" 0)" "$(fmt "${M[relaybp.rtt]}" 0)"
	printf '%-14s %10s %10s %14s %10s %14s\n' "rtt, stream" "$(fmt "${M[veth.rttb]}" 0)" "$(fmt "${M[x0t.rttb]}" 0)" \
		"$(fmt "${M[x0tbp.rttb]}" 0)" "$(fmt "${M[relay.rttb]}" 0)" "$(fmt "${M[relaybp.rttb]}" 0)"
	printf '%-14s %10s %10s %14s %10s %14s\n' "CPU, cores" "" "$(fmt "${M[x0t.cpu_rtt]}" 2)" \
		"$(fmt "${M[x0tbp.cpu_rtt]}" 2)" "$(fmt "${M[relay.cpu_rtt]}" 2)" "$(fmt "${M[relaybp.cpu_rtt]}" 2)"
	printf '%-14s %10s %10s %14s\n' "tcp1 Gbit/s" "$(fmt "${M[veth.tcp1]}" 2)" "$(fmt "${M[x0t.tcp1]}" 2)" "$(fmt "${M[x0tbp.tcp1]}" 2)"
	echo "  (CPU: all x0t nodes' CPU time over the wall time of the echoes ${PING_INTERVAL}s apart)"
fi
echo
echo "samples (min..max over rounds):"
for v in "${VARIANTS[@]}" x0tbp relaybp; do
	[[ ${M[$v.rtt]} == NA ]] && continue
	line="  ${LABEL[$v]}:"
	for c in "${CELLS[@]}"; do [[ ${M[$v.$c]} != NA ]] && line+=" $c $(spread "$v" "$c")"; done
	line+=" rtt_us $(spread "$v" rtt) stream_rtt_us $(spread "$v" rttb)"
	echo "$line"
done
echo
for v in veth x0t relay wg; do
	want "$v" || continue
	echo "RESULT ${LABEL[$v]} tcp1=$(fmt "${M[$v.tcp1]}" 2) tcp4=$(fmt "${M[$v.tcp4]}" 2) udp=$(fmt "${M[$v.udp]}" 2) rtt_us=$(fmt "${M[$v.rtt]}" 0)"
done
want relay && echo "RELAY x0t a-b-c/a-b tcp1=$(ratio "${M[relay.tcp1]}" "${M[x0t.tcp1]}") tcp4=$(ratio "${M[relay.tcp4]}" "${M[x0t.tcp4]}") udp=$(ratio "${M[relay.udp]}" "${M[x0t.udp]}")"
if want x0t && want veth; then
	diff() { awk -v x="$1" -v v="$2" 'BEGIN {if (x == "NA" || v == "NA") print "NA"; else printf "%+.0f\n", x - v}'; }
	for v in x0t x0tbp; do
		[[ ${M[$v.rtt]} == NA ]] && continue
		r=relay name=x0t-veth
		[[ $v == x0tbp ]] && r=relaybp name="x0t--busy-poll=$BUSY_POLL-veth"
		echo "LATENCY $name rtt_us=$(diff "${M[$v.rtt]}" "${M[veth.rtt]}") stream_rtt_us=$(diff "${M[$v.rttb]}" "${M[veth.rttb]}")" \
			"relayed_rtt_us=$(diff "${M[$r.rtt]}" "${M[veth.rtt]}") cpu_cores=$(fmt "${M[$v.cpu_rtt]}" 2) (limit +100)"
	done
fi
[[ -n $ALLOCS_LINE ]] && echo "$ALLOCS_LINE"
echo "RATIO x0t/wireguard-go tcp1=$(ratio "${M[x0t.tcp1]}" "${M[wg.tcp1]}") tcp4=$(ratio "${M[x0t.tcp4]}" "${M[wg.tcp4]}") udp=$(ratio "${M[x0t.udp]}" "${M[wg.udp]}") rtt=$(ratio "${M[x0t.rtt]}" "${M[wg.rtt]}")"
