#!/usr/bin/env bash
# bench/core.sh: drainit (dynamic and static builds) beside tini, dumb-init
# and catatonit, each as PID 1 of a fresh PID namespace, in one run. Prints a
# Markdown table for the README, each of issue 14's goals marked met or
# missed, and keeps the raw numbers in bench/out/core/. Run by hand as root;
# not part of CI.
#
#   sudo bench/core.sh            # knobs: see the defaults just below
#
# Every process it starts is killed by pid on exit, all traffic stays on
# 127.0.0.1, and every step runs against one overall time budget.
#
# The inits take turns (ROUNDS rounds, each init once per round) rather
# than one after the other, so a load that comes and goes during the run
# is spread over all of them instead of landing on whichever ran then.
set -euo pipefail

# Knobs, overridable from the environment.
RUNS=${RUNS:-300}              # hyperfine runs per command, over all rounds
WARMUP=${WARMUP:-20}           # hyperfine warm-up runs per round
ROUNDS=${ROUNDS:-3}            # turns each init takes at startup
IDLE_SECS=${IDLE_SECS:-5}      # idle window for wake-ups and CPU ticks
ORPHANS=${ORPHANS:-20000}      # zombies dropped on the init at once
REAP_REPS=${REAP_REPS:-5}      # reaping bursts per init (median taken)
SIGNALS=${SIGNALS:-500}        # SIGUSR1 samples per init, over all rounds
# On 2 CPUs a round is fast or slow as a whole (whether the init and its
# child share a CPU), so many short rounds give every init both kinds.
SIGNAL_ROUNDS=${SIGNAL_ROUNDS:-10}
SIGNAL_GAP_US=${SIGNAL_GAP_US:-1000}
SIGREC=${SIGREC:-1}            # also time sigrec --orphans end to end (0: skip)
BUDGET=${BUDGET:-420}          # seconds for the whole script, builds included
PHASES=${PHASES:-"startup idle reap signals"}  # a subset, when iterating

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
# Other benchmarks share bench/out/; this one only ever touches its own part.
OUT=$BENCH/out/core
RES=$OUT/res                   # one small file per measured number
ROWS=(drainit drainit+health tini dumb-init catatonit)
# The peers issue 14 measures drainit against, and the one whose p99 bounds it.
PEERS=(tini dumb-init catatonit)
DEADLINE=$((SECONDS + BUDGET))
MUSL_TARGET=x86_64-unknown-linux-musl

# STARTED, forget and the EXIT trap that kills what is still running.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'core.sh: warning: %s\n' "$*" >&2; }
die() {
	printf 'core.sh: error: %s\n' "$*" >&2
	exit 1
}

state_of() { awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null || true; }

left() { echo $((DEADLINE - SECONDS)); }

# bounded WHAT CAP CMD...: runs CMD for at most CAP seconds (0: no cap of
# its own) and never past the overall budget.
bounded() {
	local what=$1 cap=$2 limit rc=0
	shift 2
	limit=$(left)
	((limit > 0)) || die "time budget of ${BUDGET} s used up before $what"
	((cap == 0 || cap > limit)) || limit=$cap
	# In the background and waited for, so that an INT or TERM to this
	# script acts at once instead of after the step; TERM to timeout is
	# passed on to the command.
	timeout --kill-after=5 "$limit" "$@" &
	local pid=$!
	STARTED+=("$pid:$BASHPID:TERM")
	wait "$pid" || rc=$?
	forget "$pid"
	if ((rc == 124 || rc == 137)); then
		die "$what did not finish within $limit s (budget: BUDGET=$BUDGET)"
	fi
	return "$rc"
}

# Polls until "$@" prints something and prints that; gives up after LIMIT s.
wait_for() {
	local what=$1 limit=$2 out end=$((SECONDS + $2))
	shift 2
	while :; do
		out=$("$@" 2>/dev/null) || true
		if [[ -n $out ]]; then
			printf '%s\n' "$out"
			return 0
		fi
		((SECONDS < end && $(left) > 0)) || {
			warn "timed out after ${limit} s waiting for $what"
			return 1
		}
		sleep 0.01
	done
}

exists() { [[ -e $1 ]] && echo yes || true; }

# 20000 -> 20,000, whatever the locale.
thousands() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

children_of() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

first_child() {
	local c
	read -r c _ < <(children_of "$1") || true
	echo "${c:-}"
}

# The child of PID whose comm is COMM, i.e. that has exec'd COMM.
child_named() {
	local c
	for c in $(children_of "$1"); do
		[[ $(cat "/proc/$c/comm" 2>/dev/null) == "$2" ]] && echo "$c" && return
	done
	return 0
}

# Waits for a background child of this shell to exit; returns its status.
wait_exit() {
	local pid=$1 limit=$2 end=$((SECONDS + $2)) rc=0
	while [[ -e /proc/$pid && $(state_of "$pid") != Z ]]; do
		((SECONDS < end)) || {
			warn "pid $pid still running after ${limit} s"
			return 124
		}
		sleep 0.01
	done
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# INIT_ARGV: the command line that makes row NAME the init of what follows.
init_argv() {
	case $1 in
	drainit) INIT_ARGV=("$DRAINIT" --health-addr none --) ;;
	drainit+health) INIT_ARGV=("$DRAINIT" --health-addr "127.0.0.1:$PORT" --) ;;
	tini) INIT_ARGV=("$TINI" --) ;;
	dumb-init) INIT_ARGV=("$DUMB_INIT") ;;
	catatonit) INIT_ARGV=("$CATATONIT" --) ;;
	drainit-static) INIT_ARGV=("$DRAINIT_MUSL" --health-addr none --) ;;
	tini-static) INIT_ARGV=(/usr/bin/tini-static --) ;;
	*) die "unknown row $1" ;;
	esac
}

# Prefix for the commands of a measurement that must all run on one CPU.
PIN=()

# Starts row NAME as PID 1 of a new namespace running "$@"; sets
# UNSHARE_PID and INIT_PID (the init's pid on the host).
start_init() {
	local name=$1
	shift
	init_argv "$name"
	"${PIN[@]}" "$UNSHARE" --pid --fork --mount-proc "${INIT_ARGV[@]}" "$@" \
		</dev/null >>"$OUT/logs/$name.log" 2>&1 &
	UNSHARE_PID=$!
	STARTED+=("$UNSHARE_PID:$BASHPID:KILL")
	# unshare forks the namespace's PID 1 and that child execs the init.
	INIT_PID=$(wait_for "$name to start" 10 first_child "$UNSHARE_PID")
	STARTED+=("$INIT_PID:$UNSHARE_PID:KILL")
}

# Runs one measurement in a subshell with errexit on and its own cleanup,
# so a failure marks that cell "error" instead of losing the whole table.
# Waited for in the background like bounded(), for the same reason; the
# EXIT trap's TERM makes the subshell clean up after itself.
try() {
	local pid rc=0
	(
		set -e
		STARTED=()
		trap cleanup EXIT
		trap 'exit 143' TERM
		"$@"
	) &
	pid=$!
	STARTED+=("$pid:$BASHPID:TERM")
	wait "$pid" || rc=$?
	forget "$pid"
	((rc == 0)) || warn "$* failed (exit $rc); see $OUT/logs/"
}

put() { printf '%s\n' "$2" >"$RES/$1"; }
wanted() { [[ " $PHASES " == *" $1 "* ]]; }

# Nearest-rank percentile P of the numbers on stdin: always a measured value.
percentile() { sort -n | awk -v p="$1" '{ v[NR] = $1 } END { i = int((NR * p + 99) / 100); print v[i < 1 ? 1 : i] }'; }
get() { cat "$RES/$1" 2>/dev/null || true; }

# --- setup ------------------------------------------------------------------

preflight() {
	[[ $(uname -s) == Linux ]] || die "needs Linux (PID namespaces)"
	((EUID == 0)) || die "run as root: unshare --pid needs CAP_SYS_ADMIN"
	[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 or later"
	local need=()
	[[ -x /usr/bin/tini ]] || need+=(tini)
	[[ -x /usr/bin/dumb-init ]] || need+=(dumb-init)
	[[ -x /usr/bin/catatonit ]] || need+=(catatonit)
	command -v hyperfine >/dev/null || need+=(hyperfine)
	command -v gcc >/dev/null || need+=(gcc libc6-dev)
	if ((${#need[@]})); then
		command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
		say "installing ${need[*]}"
		bounded "apt-get update" 120 apt-get update -qq
		bounded "apt-get install" 120 env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	command -v cargo >/dev/null || die "cargo not found (install Rust, or run with PATH including ~/.cargo/bin)"
	UNSHARE=$(command -v unshare) || die "unshare (util-linux) not found"
	TINI=/usr/bin/tini DUMB_INIT=/usr/bin/dumb-init CATATONIT=/usr/bin/catatonit
	[[ -e /proc/self/task/$$/children ]] || die "kernel lacks /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)"
	# The burst needs ORPHANS pids at once, on top of what the host uses.
	local pid_max used
	pid_max=$(</proc/sys/kernel/pid_max)
	used=$(awk '{ split($4, a, "/"); print a[2] }' /proc/loadavg)
	((used + ORPHANS + 1000 < pid_max)) ||
		die "kernel.pid_max ($pid_max) leaves no room for $ORPHANS zombies beside $used tasks: lower ORPHANS= or raise the sysctl"
}

build() {
	say "building drainit and its examples (cargo build --release)"
	cd "$REPO"
	bounded "cargo build --release" 0 cargo build --release --quiet ||
		die "cargo build --release failed (src/ may be mid-edit); nothing to measure"
	bounded "cargo build --release --examples" 0 cargo build --release --examples --quiet ||
		die "cargo build --release --examples failed"
	DRAINIT=$REPO/target/release/drainit
	SIGREC_BIN=$REPO/target/release/examples/sigrec
	DRAINIT_MUSL=
	if ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
		say "adding the $MUSL_TARGET target for the static build"
		bounded "rustup target add" 120 rustup target add "$MUSL_TARGET" >/dev/null 2>&1 ||
			warn "cannot add $MUSL_TARGET: no static rows, and the static goals have no data"
	fi
	if rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
		say "building the static musl drainit"
		if bounded "musl build" 0 cargo build --release --quiet --target "$MUSL_TARGET" --bin drainit; then
			DRAINIT_MUSL=$REPO/target/$MUSL_TARGET/release/drainit
		else
			warn "musl build failed; its size is left out"
		fi
	fi
	say "compiling bench/sigstamp.c and bench/zombies.c"
	gcc -O2 -Wall -Wextra -o "$OUT/sigstamp" "$BENCH/sigstamp.c"
	gcc -O2 -Wall -Wextra -o "$OUT/zombies" "$BENCH/zombies.c"
}

# A loopback port nobody listens on, below the ephemeral range so no
# outgoing connection can grab it meanwhile.
pick_port() {
	local port tries
	for tries in {1..50}; do
		port=$((20000 + RANDOM % 12000))
		if command -v ss >/dev/null; then
			ss -Htln "sport = :$port" | grep -q . || { echo "$port" && return; }
		elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port" && return
		fi
	done
	die "no free loopback port found"
}

# Each init must run /bin/true cleanly before it is timed, or hyperfine
# would time an error path.
smoke_test() {
	local name rc
	for name in "${ROWS[@]}"; do
		init_argv "$name"
		rc=0
		bounded "$name smoke test" 10 "$UNSHARE" --pid --fork --mount-proc "${INIT_ARGV[@]}" /bin/true \
			</dev/null >>"$OUT/logs/$name.log" 2>&1 || rc=$?
		((rc == 0)) || die "$name as PID 1 running /bin/true exited $rc; see $OUT/logs/$name.log"
	done
}

# --- 1. startup + teardown ----------------------------------------------------

measure_startup() {
	local per=$(((RUNS + ROUNDS - 1) / ROUNDS)) round name
	say "startup+teardown: hyperfine, $ROUNDS rounds of $per runs of each of $((${#ROWS[@]} + 1)) commands"
	for ((round = 1; round <= ROUNDS; round++)); do
		local args=(-N --warmup "$WARMUP" --runs "$per" --style basic
			--export-json "$OUT/startup-$round.json" --export-csv "$OUT/startup-$round.csv"
			-n baseline "$(printf '%q ' "$UNSHARE" --pid --fork --mount-proc /bin/true)")
		for name in "${ROWS[@]}"; do
			init_argv "$name"
			args+=(-n "$name" "$(printf '%q ' "$UNSHARE" --pid --fork --mount-proc "${INIT_ARGV[@]}" /bin/true)")
		done
		bounded "hyperfine" 0 hyperfine "${args[@]}" >>"$OUT/logs/hyperfine.log" 2>&1 ||
			die "hyperfine failed; see $OUT/logs/hyperfine.log"
	done
	# CSV: command,mean,stddev,median,user,system,min,max (seconds). The
	# rounds are pooled exactly: sum of squares within plus between rounds.
	# The fastest run is kept too: on a busy machine it is the steadiest
	# estimate of what the init itself costs.
	awk -F, -v res="$RES" -v n="$per" 'FNR > 1 {
		c = $1; k[c]++; m[c, k[c]] = $2 * 1000; s[c, k[c]] = $3 * 1000
		if (!(c in lo) || $7 * 1000 < lo[c]) lo[c] = $7 * 1000
	}
	END {
		for (c in k) {
			mean = 0
			for (i = 1; i <= k[c]; i++) mean += m[c, i] / k[c]
			ss = 0
			for (i = 1; i <= k[c]; i++) ss += (n - 1) * s[c, i]^2 + n * (m[c, i] - mean)^2
			printf "%.4f %.4f %d %.4f\n", mean, sqrt(ss / (n * k[c] - 1)), n * k[c], lo[c] > (res "/startup." c)
		}
	}' "$OUT"/startup-*.csv
	# The median of all runs, from the JSON's "times": what the goals use,
	# since a busy machine's outliers move the mean far more.
	awk -v res="$RES" '
	/"command":/ { c = $2; gsub(/[",]/, "", c) }
	/"times": \[/ { in_times = 1; next }
	in_times && /\]/ { in_times = 0 }
	in_times { gsub(/,/, ""); print c, $1 * 1000 }' "$OUT"/startup-*.json |
		sort -k1,1 -k2,2g | awk -v res="$RES" '
	{ v[$1, ++n[$1]] = $2 }
	END { for (c in n) printf "%.4f\n", v[c, int((n[c] + 1) / 2)] > (res "/startup-median." c) }'
}

# --- 2+3. idle RSS, wake-ups, CPU ticks ------------------------------------

# "rss_kib switches ticks threads cpu_ns" of a process, all threads summed.
# cpu_ns (schedstat) is there because a tick is 10 ms: far too coarse to
# see what a few wake-ups cost.
snapshot() {
	local pid=$1 rss ticks switches=0 threads=0 cpu=0 t n c
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
	# utime and stime are fields 14 and 15; after "pid (comm) " they are 12, 13.
	ticks=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
	for t in /proc/"$pid"/task/*; do
		n=$(awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }' "$t/status" 2>/dev/null) || continue
		read -r c _ <"$t/schedstat" || c=0
		switches=$((switches + n)) threads=$((threads + 1)) cpu=$((cpu + c))
	done
	echo "$rss $switches $ticks $threads $cpu"
}

# The health server must really be on, or the +health row means nothing.
probe_health() {
	local fd line
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	printf 'GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&"$fd"
	IFS= read -r -t 2 line <&"$fd" || true
	exec {fd}>&-
	[[ $line == *" 200"* ]] || {
		warn "GET /livez on 127.0.0.1:$PORT answered '${line%$'\r'}'"
		return 1
	}
}

# All of them idle side by side: nothing runs, so they cannot disturb each
# other, and the window is paid for once instead of once per init.
measure_idle() {
	say "idle: RSS, wake-ups and CPU ticks over ${IDLE_SECS} s, all inits side by side"
	local name unshare_of=() init_of=() sleep_of=() before=() after=() i
	for i in "${!ROWS[@]}"; do
		start_init "${ROWS[i]}" sleep 1000
		unshare_of[i]=$UNSHARE_PID init_of[i]=$INIT_PID
		sleep_of[i]=$(wait_for "${ROWS[i]}'s sleep" 10 child_named "$INIT_PID" sleep)
	done
	# Probed before the window, like a kubelet would have: the window then
	# shows what an endpoint that has served a request costs while idle.
	probe_health || warn "drainit+health: health endpoint not answering"
	# Startup work (thread creation, lazy binding) must be over first.
	sleep 1
	for i in "${!ROWS[@]}"; do before[i]=$(snapshot "${init_of[i]}"); done
	sleep "$IDLE_SECS"
	for i in "${!ROWS[@]}"; do after[i]=$(snapshot "${init_of[i]}"); done
	for i in "${!ROWS[@]}"; do
		name=${ROWS[i]}
		{
			echo "# rss_kib switches ticks threads cpu_ns; before, then after ${IDLE_SECS} s"
			echo "${before[i]}"
			echo "${after[i]}"
			echo "# /proc/${init_of[i]}/status after:"
			cat "/proc/${init_of[i]}/status"
		} >"$OUT/idle-$name.txt"
		read -r rss0 sw0 tk0 _ cpu0 <<<"${before[i]}"
		read -r rss1 sw1 tk1 th1 cpu1 <<<"${after[i]}"
		put "idlecpu.$name" "$(((cpu1 - cpu0) / 1000))"
		put "rss.$name" "$rss1"
		put "wake.$name" "$((sw1 - sw0)) $((tk1 - tk0)) $th1"
	done
	# The sleep is killed, not the init: each init then exits on its own
	# (a SIGTERM would make drainit+health wait out its drain delay).
	for i in "${!ROWS[@]}"; do kill -KILL "${sleep_of[i]}"; done
	for i in "${!ROWS[@]}"; do
		wait_exit "${unshare_of[i]}" 10 || true
	done
}

# --- 4. reaping -------------------------------------------------------------

# One burst; appends zombies' "reap_ms=... reparent_ms=... init_cpu_ms=...
# zombies_left=0 n=..." to reap-NAME.txt. zombies exits non-zero (and the
# init with it) if any zombie is left.
reap_burst() {
	local name=$1 rc=0
	rm -f "$OUT/reap.tmp"
	start_init "$name" "$OUT/zombies" burst "$ORPHANS" "$OUT/reap.tmp"
	wait_exit "$UNSHARE_PID" 90 || rc=$?
	((rc == 0)) || {
		warn "$name: reaping burst exited $rc"
		return 1
	}
	cat "$OUT/reap.tmp" >>"$OUT/reap-$name.txt"
}

measure_reap() {
	local rep name n
	say "reaping: $REAP_REPS bursts of $ORPHANS zombies per init, inits taking turns"
	for name in "${ROWS[@]}"; do : >"$OUT/reap-$name.txt"; done
	for ((rep = 1; rep <= REAP_REPS; rep++)); do
		for name in "${ROWS[@]}"; do try reap_burst "$name"; done
	done
	for name in "${ROWS[@]}"; do
		n=$(grep -c . "$OUT/reap-$name.txt" || true)
		# A median of fewer bursts than asked would hide a failing one.
		((n == REAP_REPS)) || continue
		put "reap.$name" "$(sed 's/.*reap_ms=\([0-9.]*\).*/\1/' "$OUT/reap-$name.txt" |
			percentile 50 | awk '{ printf "%.4f\n", $1 / 1000 }')"
		put "reapcpu.$name" "$(sed 's/.*init_cpu_ms=\([0-9.-]*\).*/\1/' "$OUT/reap-$name.txt" |
			percentile 50 | awk '{ printf "%.1f\n", $1 }')"
	done
}

# The obvious way, kept as a cross-check: sigrec makes its orphans one by
# one while the init reaps, so this mostly times fork(); see bench/zombies.c.
measure_sigrec() {
	local name=$1
	local ready=$OUT/sigrec-$name.ready start child n
	rm -f "$ready"
	start=$EPOCHREALTIME
	start_init "$name" "$SIGREC_BIN" --orphans "$ORPHANS" --ready "$ready"
	wait_for "sigrec under $name to fork $ORPHANS orphans" 60 exists "$ready" >/dev/null
	until n=$("$OUT/zombies" count "$INIT_PID") && ((n == 0)); do
		(($(left) > 0)) || return 1
		sleep 0.01
	done
	put "sigrec.$name" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", b - a }')"
	child=$(first_child "$INIT_PID")
	kill -KILL "$child"
	wait_exit "$UNSHARE_PID" 10 || true
}

# --- 5. signal forwarding -----------------------------------------------------

# One round: COUNT signals to a fresh instance of NAME, latencies (ns)
# appended to signalsKIND-NAME.txt; KIND "-cpu0" runs the sender, the init
# and its child all on CPU 0.
signal_round() {
	local name=$1 count=$2 kind=${3:-} fifo=$OUT/sig.fifo warm=20
	if [[ $kind == -cpu0 ]]; then PIN=(taskset -c 0); fi
	rm -f "$fifo" "$OUT/sig.tmp"
	mkfifo "$fifo"
	start_init "$name" "$OUT/sigstamp" recv "$fifo" $((count + warm))
	# The FIFO opens only once the receiver has SIGUSR1 blocked, so no
	# signal can reach it (or the not-yet-exec'd init) too early.
	# stdout: "median_us p99_us n init_cpu_ns" of this round.
	bounded "$name signal test" 30 "${PIN[@]}" "$OUT/sigstamp" send "$INIT_PID" "$fifo" \
		"$count" "$warm" "$SIGNAL_GAP_US" "$OUT/sig.tmp" >"$OUT/sig.round"
	wait_exit "$UNSHARE_PID" 10
	cat "$OUT/sig.tmp" >>"$OUT/signals$kind-$name.txt"
	cat "$OUT/sig.round" >>"$OUT/signals$kind-$name.rounds"
}

# KIND "" as in a container, "-cpu0" with everything on one CPU: how long
# the init's own path takes, apart from where the scheduler puts the three
# processes (on 2 CPUs that decides most of the figure).
measure_signals() {
	local kind=$1 per=$(((SIGNALS + SIGNAL_ROUNDS - 1) / SIGNAL_ROUNDS)) round name
	say "SIGUSR1 forwarding${kind:+ on CPU 0}: $SIGNAL_ROUNDS rounds of $per signals per init, inits taking turns"
	for name in "${ROWS[@]}"; do : >"$OUT/signals$kind-$name.txt" && : >"$OUT/signals$kind-$name.rounds"; done
	for ((round = 1; round <= SIGNAL_ROUNDS; round++)); do
		for name in "${ROWS[@]}"; do try signal_round "$name" "$per" "$kind"; done
	done
	local f p50 p99 metric=sig${kind:+1}
	for name in "${ROWS[@]}"; do
		f=$OUT/signals$kind-$name.txt
		# Percentiles over fewer samples than asked would hide a failed round.
		(($(grep -c . "$f" || true) == per * SIGNAL_ROUNDS)) || continue
		p50=$(percentile 50 <"$f") p99=$(percentile 99 <"$f")
		put "$metric.$name" "$(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.1f %.1f\n", a / 1e3, b / 1e3 }')"
		[[ -n $kind ]] && continue
		# A round whose init was gone before its CPU time was read says -1.
		put "sigcpu.$name" "$(awk '$4 >= 0 { n += $3; c += $4 } END { if (n) printf "%.1f\n", c / n / 1e3 }' \
			"$OUT/signals-$name.rounds")"
	done
}

# --- 6. sizes ---------------------------------------------------------------

kib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f\n", b / 1024 }'; }

measure_sizes() {
	local name
	for name in "${ROWS[@]}"; do
		init_argv "$name"
		put "size.$name" "$(kib "${INIT_ARGV[0]}")"
		printf '%s\t%s\t%s\n' "${INIT_ARGV[0]}" "$(stat -c %s "${INIT_ARGV[0]}")" \
			"$(file -b "${INIT_ARGV[0]}" 2>/dev/null || true)"
	done >"$OUT/sizes.txt"
}

# --- report -----------------------------------------------------------------

# A cell for one row: "–" when its phase was skipped, "error" when the
# measurement failed (the warning and logs/ say why).
cell() {
	local metric=$1 name=$2 v base a b c phase
	v=$(get "$metric.$name")
	if [[ -z $v ]]; then
		case $metric in
		rss | wake | idlecpu) phase=idle ;;
		sig | sig1 | sigcpu) phase=signals ;;
		reapcpu) phase=reap ;;
		*) phase=$metric ;;
		esac
		if wanted "$phase"; then echo "error"; else echo "–"; fi
		return
	fi
	case $metric in
	startup)
		read -r a b _ <<<"$v"
		read -r base _ <<<"$(get startup.baseline)"
		awk -v m="$a" -v s="$b" -v z="${base:-0}" 'BEGIN { printf "%.2f ± %.2f (%+.2f)", m, s, m - z }'
		;;
	wake)
		read -r a b c <<<"$v"
		echo "$a ($b ticks; $c thread$( ((c == 1)) || echo s))"
		;;
	sig | sig1)
		read -r a b _ <<<"$v"
		echo "$a / $b"
		;;
	*) echo "$v" ;;
	esac
}

table() {
	local name base
	read -r a b _ <<<"$(get startup.baseline)"
	echo "| init | startup+teardown, ms (Δ vs no init) | idle RSS, KiB | idle wake-ups in ${IDLE_SECS} s | reap $(thousands "$ORPHANS") orphans, s | SIGUSR1 forward, µs median / p99 | binary, KiB |"
	echo "|---|---|---|---|---|---|---|"
	if [[ -n ${a:-} ]]; then
		printf '| *no init* | %.2f ± %.2f | – | – | – | – | – |\n' "$a" "$b"
	else
		echo "| *no init* | $(cell startup baseline) | – | – | – | – | – |"
	fi
	for name in "${ROWS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
			"$(cell startup "$name")" "$(cell rss "$name")" "$(cell wake "$name")" \
			"$(cell reap "$name")" "$(cell sig "$name")" "$(cell size "$name")"
	done
}

# What the init itself spends, from schedstat. It moves less than the
# wall-clock columns when other work shares the machine (though in a VM,
# time the host takes the vCPU away still counts).
cpu_table() {
	local name
	echo "| init | CPU while idle ${IDLE_SECS} s, µs | CPU per forwarded SIGUSR1, µs | CPU reaping $(thousands "$ORPHANS") zombies, ms | SIGUSR1 forward, all on CPU 0, µs median / p99 |"
	echo "|---|---|---|---|---|"
	for name in "${ROWS[@]}"; do
		printf '| %s | %s | %s | %s | %s |\n' "$name" \
			"$(cell idlecpu "$name")" "$(cell sigcpu "$name")" "$(cell reapcpu "$name")" "$(cell sig1 "$name")"
	done
}

# The first field of METRIC for row NAME, or nothing.
first() { local v; v=$(get "$1.$2") && echo "${v%% *}"; }

# startup+teardown overhead of NAME over the no-init row: median, mean,
# and fastest run against fastest run; nothing when any is missing.
overhead() {
	local a b am bm
	a=$(get "startup.$1") b=$(get startup.baseline)
	am=$(get "startup-median.$1") bm=$(get startup-median.baseline)
	[[ -n $a && -n $b && -n $am && -n $bm ]] || return 0
	awk -v a="$a" -v b="$b" -v am="$am" -v bm="$bm" 'BEGIN {
		split(a, x, " "); split(b, y, " "); printf "%.4f %.4f %.4f\n", am - bm, x[1] - y[1], x[4] - y[4]
	}'
}

# "NAME VALUE" of the peer with the lowest VALUE, VALUE being what
# "$@ PEER" prints (first field); nothing when no peer has one.
best_peer() {
	local peer v
	for peer in "${PEERS[@]}"; do
		v=$("$@" "$peer" | awk '{ print $1 }')
		[[ -n $v ]] && echo "$peer $v"
	done | sort -g -k2 | head -n 1
}

# One line: "- WHAT: met — HOW", "**missed**", or "no data".
goal() {
	local what=$1 known=$2 ok=$3 how=$4
	if [[ $known != 1 ]]; then
		echo "- $what: no data"
	elif [[ $ok == 1 ]]; then
		echo "- $what: met — $how"
	else
		echo "- $what: **missed** — $how"
	fi
}

# a <= b * f, with awk's numbers; false when either is empty.
within() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" -v f="${3:-1}" 'BEGIN { exit !(a <= b * f) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
known() { [[ -n $1 && -n $2 ]] && echo 1 || echo 0; }
ok() { "$@" && echo 1 || echo 0; }

# Issue 14's goals for one build (row NAME), each met or missed, against
# the best of tini, dumb-init and catatonit in this run.
build_goals() {
	local name=$1 label=$2 peer v mine p99 p99_t oh oh_mean oh_fast best ref ref_mean ref_fast rss ref_rss
	read -r mine p99 <<<"$(get "sig.$name")"
	read -r peer v <<<"$(best_peer first sig)"
	goal "$label: SIGUSR1 hand-off median within 1.1× of the best peer's" "$(known "$mine" "$v")" \
		"$(ok within "$mine" "$v" 1.1)" "$mine µs vs ${peer:-?} ${v:-?} µs ($(ratio "${mine:-0}" "${v:-0}"))"
	read -r _ p99_t <<<"$(get sig.tini)"
	goal "$label: SIGUSR1 hand-off p99 no worse than tini's" "$(known "$p99" "$p99_t")" \
		"$(ok within "$p99" "$p99_t")" "$p99 µs vs ${p99_t:-?} µs"
	read -r oh oh_mean oh_fast <<<"$(overhead "$name")"
	read -r best ref <<<"$(best_peer overhead)"
	read -r _ ref_mean ref_fast <<<"$(overhead "${best:-none}")"
	goal "$label: start+stop overhead of \`INIT true\` within 1.1× of the best peer's (medians)" \
		"$(known "$oh" "$ref")" "$(ok within "$oh" "$ref" 1.1)" \
		"$(awk -v a="${oh:-0}" -v b="${ref:-0}" -v ma="${oh_mean:-0}" -v mb="${ref_mean:-0}" \
			-v fa="${oh_fast:-0}" -v fb="${ref_fast:-0}" -v p="${best:-?}" \
			'BEGIN { printf "+%.2f ms vs %s +%.2f ms (means: +%.2f vs +%.2f; fastest runs: +%.2f vs +%.2f ms)", a, p, b, ma, mb, fa, fb }')"
	rss=$(get "rss.$name")
	if [[ $name == drainit-static ]]; then
		ref_rss=$(get rss.catatonit)
		goal "$label: idle RSS within 64 KiB of catatonit's" "$(known "$rss" "$ref_rss")" \
			"$(ok within "$rss" "$((${ref_rss:-0} + 64))")" "$rss vs ${ref_rss:-?} KiB ($((${rss:-0} - ${ref_rss:-0})) KiB)"
	else
		ref_rss=$(get rss.tini)
		goal "$label: idle RSS at or below tini's" "$(known "$rss" "$ref_rss")" \
			"$(ok within "$rss" "$ref_rss")" "$rss vs ${ref_rss:-?} KiB ($((${rss:-0} - ${ref_rss:-0})) KiB)"
	fi
}

# What must not regress: no wake-ups while idle, reaping as fast as the
# best peer (10% for noise).
regressions() {
	local name switches ticks peer v r
	for name in drainit drainit+health drainit-static; do
		[[ " ${ROWS[*]} " == *" $name "* ]] || continue
		read -r switches ticks _ <<<"$(get "wake.$name")"
		goal "$name: 0 idle wake-ups" "$(known "$switches" 0)" "$(ok test "${switches:-1}" -eq 0)" \
			"$switches wake-ups, $ticks CPU ticks in ${IDLE_SECS} s"
		r=$(get "reap.$name")
		read -r peer v <<<"$(best_peer get_reap)"
		goal "$name: reaping within 10% of the best peer" "$(known "$r" "$v")" "$(ok within "$r" "$v" 1.1)" \
			"$r s vs ${peer:-?} ${v:-?} s"
	done
}
get_reap() { get "reap.$1"; }

goals() {
	build_goals drainit "dynamic build"
	if [[ " ${ROWS[*]} " == *" drainit-static "* ]]; then
		build_goals drainit-static "static build"
	else
		echo "- static build: no data (no $MUSL_TARGET build)"
	fi
	regressions
}

environment() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	printf 'Linux %s, %s CPUs (%s), load average %s before and %s after; %s; tini %s; dumb-init %s; catatonit %s; hyperfine %s; %s.\n' \
		"$(uname -r)" "$(nproc)" "${cpu:-unknown CPU}" "$LOAD_BEFORE" "$LOAD_AFTER" \
		"$("$DRAINIT" --version 2>/dev/null)" \
		"$("$TINI" --version 2>/dev/null | awk '{ print $3 }')" \
		"$("$DUMB_INIT" --version 2>&1 | awk '{ print $2 }')" \
		"$("$CATATONIT" --version 2>&1 | awk '{ sub(/_catatonit$/, "", $3); print $3 }')" \
		"$(hyperfine --version | awk '{ print $2 }')" "$(date -u +%Y-%m-%d)"
}

report() {
	{
		table
		echo
		echo "Measured with \`bench/core.sh\` as root; each init is PID 1 of \`unshare --pid --fork --mount-proc\`. $(environment)"
		echo "Startup: hyperfine mean ± σ of $RUNS runs of \`INIT /bin/true\` in $ROUNDS rounds. RSS: VmRSS supervising \`sleep 1000\`. Wake-ups: context switches of all the init's threads in ${IDLE_SECS} s idle (ticks = utime+stime, 1 tick = 1/$(getconf CLK_TCK) s). Reap: median of $REAP_REPS bursts of $(thousands "$ORPHANS") zombies reparented at once (\`bench/zombies.c\`). SIGUSR1: kill() on the host to sigwaitinfo() in the child, $(((SIGNALS + SIGNAL_ROUNDS - 1) / SIGNAL_ROUNDS * SIGNAL_ROUNDS)) signals one at a time, ${SIGNAL_GAP_US} µs apart, in $SIGNAL_ROUNDS rounds (\`bench/sigstamp.c\`). Binary: stripped size as installed/built."
		echo
		cpu_table
		echo
		echo "CPU time of all the init's threads (/proc/PID/task/*/schedstat) during the same measurements (reaping: median of the bursts). The last column repeats the SIGUSR1 measurement with the sender, the init and its child pinned to CPU 0 (taskset): the init's own path, apart from where the scheduler puts the three processes."
	} >"$OUT/table.md"
	{
		echo "Issue 14's goals, against the best of ${PEERS[*]} in this run (/readyz throughput: bench/http.sh):"
		goals
		if wanted reap && [[ $SIGREC == 1 ]]; then
			echo
			printf 'Cross-check, sigrec --orphans %s from start to no zombies left (mostly fork time, see bench/zombies.c):' "$ORPHANS"
			for name in "${ROWS[@]}"; do
				v=$(get "sigrec.$name")
				printf ' %s %s;' "$name" "$(if [[ -n $v ]]; then echo "$v s"; else echo error; fi)"
			done
			echo
		fi
	} >"$OUT/targets.md"
	echo
	cat "$OUT/table.md"
	echo
	cat "$OUT/targets.md"
	echo
	say "raw results in $OUT (startup-*.json, idle-*.txt, reap-*.txt, signals-*.txt in ns, sizes.txt); finished in $SECONDS s"
}

main() {
	preflight
	rm -rf "$OUT"
	mkdir -p "$OUT/logs" "$RES"
	LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
	if awk -v l="$LOAD_BEFORE" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
		warn "load average is $LOAD_BEFORE on $(nproc) CPUs: timings will be noisy; run on a quiet machine for README numbers"
	fi
	build
	# The static builds: what a FROM scratch image runs (catatonit, as
	# Debian ships it, is static too).
	if [[ -n $DRAINIT_MUSL ]]; then ROWS+=(drainit-static); fi
	if [[ -x /usr/bin/tini-static ]]; then ROWS+=(tini-static); fi
	PORT=$(pick_port)
	say "drainit+health listens on 127.0.0.1:$PORT"
	smoke_test
	measure_sizes
	if wanted startup; then measure_startup; fi
	if wanted idle; then try measure_idle; fi
	if wanted reap; then measure_reap; fi
	local name
	if wanted reap && [[ $SIGREC == 1 ]]; then
		say "cross-check: sigrec --orphans $ORPHANS per init"
		for name in "${ROWS[@]}"; do try measure_sigrec "$name"; done
	fi
	if wanted signals; then
		measure_signals ""
		measure_signals -cpu0
	fi
	LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
	report
}

main "$@"
