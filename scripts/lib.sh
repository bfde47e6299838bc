# shellcheck shell=bash
# scripts/lib.sh: helpers shared by the scripts in this directory. Source it, call
# lib_init once, then create namespaces and background processes through
# lib_netns_add and lib_bg: a single EXIT trap stops every process we started (by
# PID) and deletes every namespace we created, however the script ends.
#
# Namespaces made here are named x0t-s<pid>-<label>, where <pid> is the script's
# own. The "s" keeps them apart from the Go helper e2e/netns (x0t-<pid>-<hex>-...)
# and the pid from parallel runs; lib_init removes ones whose script no longer runs
# (a script killed with SIGKILL never runs its trap).

LIB_NETNS=()   # namespaces to delete, in creation order
LIB_PIDS=()    # background processes to stop
LIB_FILES=()   # files and directories to remove
LIB_LAST_PID=  # set by lib_bg

# lib_log: progress lines with the time, on a terminal only (or with
# X0T_VERBOSE=1): in a pipe a script prints its results and nothing else.
lib_log() {
	[[ -t 2 || ${X0T_VERBOSE:-} == 1 ]] || return 0
	printf '%s %s\n' "$(date +%T)" "$*" >&2
}
lib_warn() { printf '%s warning: %s\n' "$(date +%T)" "$*" >&2; }
lib_die() {
	printf '%s error: %s\n' "$(date +%T)" "$*" >&2
	exit 1
}

lib_need_root() {
	[[ $EUID -eq 0 ]] || lib_die "must run as root (network namespaces)"
}

# lib_need_cmd CMD...: fail with the Debian package hint if a command is missing.
lib_need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || lib_die "$c not found (Debian: apt-get install iproute2 iperf3 iputils-ping wireguard-tools procps)"
	done
}

# lib_init: install the cleanup trap and sweep namespaces leaked by dead runs.
lib_init() {
	trap lib_cleanup EXIT
	# Turn signals into a normal exit so that the EXIT trap runs.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	lib_sweep_stale
}

# lib_ns_name LABEL: the namespace name this script uses for LABEL.
lib_ns_name() { printf 'x0t-s%d-%s' "$$" "$1"; }

# lib_sweep_stale: delete x0t-s<pid>-* namespaces whose script is gone, after
# killing (by PID) any process still inside them: those were started by that dead
# run of one of our scripts.
lib_sweep_stale() {
	local ns pid p
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ $ns =~ ^x0t-s([0-9]+)- ]] || continue
		pid=${BASH_REMATCH[1]}
		kill -0 "$pid" 2>/dev/null && continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null && lib_log "removed stale namespace $ns (pid $pid is gone)"
	done
	return 0
}

# lib_netns_add LABEL: create namespace $(lib_ns_name LABEL) with lo up, and
# record it for cleanup.
lib_netns_add() {
	local ns
	ns=$(lib_ns_name "$1")
	ip netns add "$ns"
	LIB_NETNS+=("$ns")
	ip -n "$ns" link set lo up
}

# lib_wait_oper NS DEV: wait until DEV in NS is operationally up. Asking for the
# link by name also makes the kernel process the deferred carrier change (its
# linkwatch work, otherwise delayed up to a second), during which packets are
# dropped.
lib_wait_oper() {
	local i
	for ((i = 0; i < 500; i++)); do
		ip -n "$1" -j link show dev "$2" | grep -q '"operstate":"UP"' && return 0
		sleep 0.01
	done
	lib_die "$2 in $1 did not come up"
}

# lib_veth NS_A ADDR_A NS_B ADDR_B [DEV_A [DEV_B]]: a veth pair (named veth0 at
# both ends unless told), created directly inside the namespaces (never in
# ours), addressed and up.
lib_veth() {
	local da=${5:-veth0} db=${6:-veth0}
	ip -n "$1" link add "$da" type veth peer name "$db" netns "$3"
	ip -n "$1" addr add "$2" dev "$da"
	ip -n "$3" addr add "$4" dev "$db"
	ip -n "$1" link set "$da" up
	ip -n "$3" link set "$db" up
	lib_wait_oper "$1" "$da"
	lib_wait_oper "$3" "$db"
}

# lib_bg NS LOGFILE CMD [ARGS...]: run CMD inside NS in the background with its
# output in LOGFILE; its PID goes to LIB_LAST_PID and the cleanup list. ip netns
# exec replaces itself with CMD, so the PID is CMD's own. Use `env VAR=x CMD` to
# pass environment variables.
lib_bg() {
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	LIB_LAST_PID=$!
	LIB_PIDS+=("$LIB_LAST_PID")
}

# lib_alive PID: the process exists and has not exited. (An exited child of ours
# stays a zombie until we wait for it, and a zombie still answers kill -0.)
lib_alive() {
	kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# lib_stop PID [GRACE_SECONDS]: SIGTERM, wait up to GRACE (default 5), then
# SIGKILL; reaps the process and drops it from the cleanup list, so that the trap
# never signals the PID again once the kernel may have given it to someone else.
# Returns the process's exit status (0 when it stopped cleanly).
lib_stop() {
	local pid=$1 grace=${2:-5} i rc=0 keep=()
	if lib_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < grace * 20; i++)); do
			lib_alive "$pid" || break
			sleep 0.05
		done
		if lib_alive "$pid"; then
			lib_log "pid $pid ignored SIGTERM for ${grace}s; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || rc=$?
	for i in "${LIB_PIDS[@]}"; do
		[[ $i == "$pid" ]] || keep+=("$i")
	done
	LIB_PIDS=("${keep[@]}")
	return "$rc"
}

# lib_tmpdir: make a temporary directory, removed at exit, and put its path in
# LIB_TMP. (It does not print the path: dir=$(lib_tmpdir) would run in a subshell
# and the cleanup entry would be lost with it.)
lib_tmpdir() {
	LIB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/x0t-bench.XXXXXX")
	LIB_FILES+=("$LIB_TMP")
}

# lib_cleanup: the EXIT trap. Never fails, so it cannot hide the script's status.
lib_cleanup() {
	local rc=$? i pids=("${LIB_PIDS[@]}")
	set +e
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		lib_stop "${pids[i]}" 3
	done
	for ((i = ${#LIB_NETNS[@]} - 1; i >= 0; i--)); do
		ip netns del "${LIB_NETNS[i]}" 2>/dev/null || lib_log "could not delete namespace ${LIB_NETNS[i]}"
	done
	for i in "${LIB_FILES[@]}"; do
		rm -rf -- "$i"
	done
	LIB_PIDS=() LIB_NETNS=() LIB_FILES=()
	return "$rc"
}
