#!/usr/bin/env bash
# bench/core.sh: drainit beside tini and dumb-init, each as PID 1 of a fresh
# PID namespace, in one run. Prints a Markdown table for the README and keeps
# the raw numbers in bench/out/core/. Run by hand as root; not part of CI.
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
ROUNDS=${ROUNDS:-3}            # turns each init takes at startup and signals
IDLE_SECS=${IDLE_SECS:-5}      # idle window for wake-ups and CPU ticks
ORPHANS=${ORPHANS:-20000}      # zombies dropped on the init at once
REAP_REPS=${REAP_REPS:-5}      # reaping bursts per init (median taken)
SIGNALS=${SIGNALS:-500}        # SIGUSR1 samples per init, over all rounds
SIGNAL_GAP_US=${SIGNAL_GAP_US:-1000}
SIGREC=${SIGREC:-1}            # also time sigrec --orphans end to end (0: skip)
BUDGET=${BUDGET:-290}          # seconds for the whole script, builds included
PHASES=${PHASES:-"startup idle reap signals"}  # a subset, when iterating

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
# Other benchmarks share bench/out/; this one only ever touches its own part.
OUT=$BENCH/out/core
RES=$OUT/res                   # one small file per measured number
ROWS=(drainit drainit+health tini dumb-init)
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
	drainit-static) INIT_ARGV=("$DRAINIT_MUSL" --health-addr none --) ;;
	tini-static) INIT_ARGV=(/usr/bin/tini-static --) ;;
	*) die "unknown row $1" ;;
	esac
}

# Starts row NAME as PID 1 of a new namespace running "$@"; sets
# UNSHARE_PID and INIT_PID (the init's pid on the host).
start_init() {
	local name=$1
	shift
	init_argv "$name"
	"$UNSHARE" --pid --fork --mount-proc "${INIT_ARGV[@]}" "$@" \
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
	TINI=/usr/bin/tini DUMB_INIT=/usr/bin/dumb-init
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
	say "startup+teardown: hyperfine, $ROUNDS rounds of $per runs of each of 5 commands"
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

# All four idle side by side: nothing runs, so they cannot disturb each
# other, and the window is paid for once instead of four times.
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
	local name=$1 ready=$OUT/sigrec-$name.ready start child n
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
# appended to signals-NAME.txt.
signal_round() {
	local name=$1 count=$2 fifo=$OUT/sig.fifo warm=20
	rm -f "$fifo" "$OUT/sig.tmp"
	mkfifo "$fifo"
	start_init "$name" "$OUT/sigstamp" recv "$fifo" $((count + warm))
	# The FIFO opens only once the receiver has SIGUSR1 blocked, so no
	# signal can reach it (or the not-yet-exec'd init) too early.
	# stdout: "median_us p99_us n init_cpu_ns" of this round.
	bounded "$name signal test" 30 "$OUT/sigstamp" send "$INIT_PID" "$fifo" \
		"$count" "$warm" "$SIGNAL_GAP_US" "$OUT/sig.tmp" >"$OUT/sig.round"
	wait_exit "$UNSHARE_PID" 10
	cat "$OUT/sig.tmp" >>"$OUT/signals-$name.txt"
	cat "$OUT/sig.round" >>"$OUT/signals-$name.rounds"
}

measure_signals() {
	local per=$(((SIGNALS + ROUNDS - 1) / ROUNDS)) round name
	say "SIGUSR1 forwarding: $ROUNDS rounds of $per signals per init, inits taking turns"
	for name in "${ROWS[@]}"; do : >"$OUT/signals-$name.txt" >"$OUT/signals-$name.rounds"; done
	for ((round = 1; round <= ROUNDS; round++)); do
		for name in "${ROWS[@]}"; do try signal_round "$name" "$per"; done
	done
	local f p50 p99
	for name in "${ROWS[@]}"; do
		f=$OUT/signals-$name.txt
		# Percentiles over fewer samples than asked would hide a failed round.
		(($(grep -c . "$f" || true) == per * ROUNDS)) || continue
		p50=$(percentile 50 <"$f") p99=$(percentile 99 <"$f")
		put "sig.$name" "$(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.1f %.1f\n", a / 1e3, b / 1e3 }')"
		put "sigcpu.$name" "$(awk '{ n += $3; c += $4 } END { printf "%.1f\n", c / n / 1e3 }' "$OUT/signals-$name.rounds")"
	done
}

# --- 6. sizes ---------------------------------------------------------------

kib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f\n", b / 1024 }'; }

measure_sizes() {
	put "size.drainit" "$(kib "$DRAINIT")"
	put "size.drainit+health" "$(kib "$DRAINIT")"
	put "size.tini" "$(kib "$TINI")"
	put "size.dumb-init" "$(kib "$DUMB_INIT")"
	if [[ -n $DRAINIT_MUSL ]]; then put "size.drainit-static" "$(kib "$DRAINIT_MUSL")"; fi
	if [[ -x /usr/bin/tini-static ]]; then put "size.tini-static" "$(kib /usr/bin/tini-static)"; fi
	if [[ -n $DRAINIT_MUSL ]]; then put "static.drainit" "$(kib "$DRAINIT_MUSL")"; fi
	if [[ -x /usr/bin/tini-static ]]; then put "static.tini" "$(kib /usr/bin/tini-static)"; fi
	local f
	for f in "$DRAINIT" "$DRAINIT_MUSL" "$TINI" /usr/bin/tini-static "$DUMB_INIT"; do
		if [[ -n $f && -e $f ]]; then
			printf '%s\t%s\t%s\n' "$f" "$(stat -c %s "$f")" "$(file -b "$f" 2>/dev/null || true)"
		fi
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
		sig | sigcpu) phase=signals ;;
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
	sig)
		read -r a b _ <<<"$v"
		echo "$a / $b"
		;;
	size)
		local s
		s=$(get "static.$name")
		echo "$v${s:+ (static: $s)}"
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
	echo "| init | CPU while idle ${IDLE_SECS} s, µs | CPU per forwarded SIGUSR1, µs | CPU reaping $(thousands "$ORPHANS") zombies, ms |"
	echo "|---|---|---|---|"
	for name in "${ROWS[@]}"; do
		printf '| %s | %s | %s | %s |\n' "$name" \
			"$(cell idlecpu "$name")" "$(cell sigcpu "$name")" "$(cell reapcpu "$name")"
	done
}

# PASS/FAIL of drainit against tini for each stated target. Timing
# comparisons allow 10% for run-to-run noise; the rest are exact.
verdicts() {
	local name ref pair pairs=(drainit:tini drainit+health:tini)
	if [[ " ${ROWS[*]} " == *" drainit-static "* ]]; then pairs+=(drainit-static:tini-static); fi
	for pair in "${pairs[@]}"; do
		name=${pair%%:*} ref=${pair#*:}
		awk -v name="$name" -v ref="$ref" \
			-v st="$(get "startup.$name")" -v st_t="$(get "startup.$ref")" \
			-v rss="$(get "rss.$name")" -v rss_t="$(get "rss.$ref")" \
			-v wk="$(get "wake.$name")" \
			-v rp="$(get "reap.$name")" -v rp_t="$(get "reap.$ref")" \
			-v sg="$(get "sig.$name")" -v sg_t="$(get "sig.$ref")" '
		function line(what, have, known, ok) {
			printf "- %s %s: %s", name, what, !known ? "no data\n" : (ok ? "PASS" : "**FAIL**") " — " have "\n"
		}
		BEGIN {
			split(st, a, " "); split(st_t, b, " ")
			line("startup+teardown no worse than " ref, sprintf("mean %.2f vs %.2f ms (fastest run %.2f vs %.2f ms)", a[1], b[1], a[4], b[4]),
				st != "" && st_t != "", a[1] <= b[1] * 1.10)
			split(sg, a, " "); split(sg_t, b, " ")
			line("SIGUSR1 latency no worse than " ref, sprintf("median %s vs %s µs, p99 %s vs %s µs", a[1], b[1], a[2], b[2]),
				sg != "" && sg_t != "", a[1] <= b[1] * 1.10 && a[2] <= b[2] * 1.10)
			line("reaping at least as fast as " ref, sprintf("%s vs %s s", rp, rp_t),
				rp != "" && rp_t != "", rp <= rp_t * 1.10)
			split(wk, a, " ")
			line("0 idle wake-ups", sprintf("%s wake-ups, %s CPU ticks in the window", a[1], a[2]),
				wk != "", a[1] == 0)
			line("RSS within 1 MiB of " ref, sprintf("%s vs %s KiB (%+d)", rss, rss_t, rss - rss_t),
				rss != "" && rss_t != "", rss - rss_t <= 1024)
		}'
	done
}

environment() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	printf 'Linux %s, %s CPUs (%s), load average %s before and %s after; %s; tini %s; dumb-init %s; hyperfine %s; %s.\n' \
		"$(uname -r)" "$(nproc)" "${cpu:-unknown CPU}" "$LOAD_BEFORE" "$LOAD_AFTER" \
		"$("$DRAINIT" --version 2>/dev/null)" \
		"$("$TINI" --version 2>/dev/null | awk '{ print $3 }')" \
		"$("$DUMB_INIT" --version 2>&1 | awk '{ print $2 }')" \
		"$(hyperfine --version | awk '{ print $2 }')" "$(date -u +%Y-%m-%d)"
}

report() {
	{
		table
		echo
		echo "Measured with \`bench/core.sh\` as root; each init is PID 1 of \`unshare --pid --fork --mount-proc\`. $(environment)"
		echo "Startup: hyperfine mean ± σ of $RUNS runs of \`INIT /bin/true\` in $ROUNDS rounds. RSS: VmRSS supervising \`sleep 1000\`. Wake-ups: context switches of all the init's threads in ${IDLE_SECS} s idle (ticks = utime+stime, 1 tick = 1/$(getconf CLK_TCK) s). Reap: median of $REAP_REPS bursts of $(thousands "$ORPHANS") zombies reparented at once (\`bench/zombies.c\`). SIGUSR1: kill() on the host to sigwaitinfo() in the child, $(((SIGNALS + ROUNDS - 1) / ROUNDS * ROUNDS)) signals one at a time, ${SIGNAL_GAP_US} µs apart, in $ROUNDS rounds (\`bench/sigstamp.c\`). Binary: stripped size as installed/built."
		echo
		cpu_table
		echo
		echo "CPU time of all the init's threads (/proc/PID/task/*/schedstat) during the same measurements (reaping: median of the bursts)."
	} >"$OUT/table.md"
	{
		echo "Targets (drainit vs tini; timings allow 10% noise):"
		verdicts
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
	# Static builds pair up: what a FROM scratch image runs. Dynamic
	# drainit pays for loading libgcc_s and relocating a larger binary.
	if [[ -n $DRAINIT_MUSL && -x /usr/bin/tini-static ]]; then ROWS+=(drainit-static tini-static); fi
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
	if wanted signals; then measure_signals; fi
	LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
	report
}

main "$@"
