#!/usr/bin/env bash
# bench/quiet.sh: rolling stops behind a proxy that follows endpoint
# updates and never probes (issue 15), one row per drainit variant. Run by
# hand as root (PID namespaces); not part of CI.
#
#   sudo bench/quiet.sh                          # the three variants below
#   sudo STOPS=30 RATE=200 bench/quiet.sh
#   sudo VARIANTS='fixed 2 s|--drain-delay 2' bench/quiet.sh
#
# BACKENDS backends, each examples/app under drainit as PID 1 of its own PID
# namespace, behind bench/endpoints-proxy.py, under a steady load from
# examples/loadgen. STOPS times, one backend after the other: the proxy is
# told the backend is going away at the moment its drainit gets SIGTERM, as
# Kubernetes does, and removes it after a random 1-5 s (seeded with SEED:
# every variant draws the same delays in the same order); a replacement
# starts on new ports and is routed as soon as it listens. The next stop
# waits until the old drainit has exited and the proxy has removed it, plus
# SETTLE seconds.
#
# VARIANTS: one per line, "LABEL|drainit options". A variant whose options
# this drainit does not know (exit 2, "unknown option") is reported as
# skipped, so the quiet drain's row waits for the option to exist.
#
# The proxy connects to the apps from PROXY_SOURCE (127.0.0.2), not from
# 127.0.0.1: the quiet drain never counts a peer at exactly 127.0.0.1 (or
# ::1) as traffic, since inside a container those are drainit's own checks
# and probes; any other 127/8 address counts, like Istio's 127.0.0.6. From
# 127.0.0.1 the quiet drain would see no traffic at all here and every
# quiet wait would end at once (PROXY_SOURCE=127.0.0.1 shows it).
#
# Every process it starts is killed by pid when it exits, all traffic stays
# on 127.0.0.0/8, and the whole run stays within BUDGET seconds. Output: a
# Markdown table on stdout (also in bench/out/quiet-<time>/table.md), the
# plot (bench/quiet.py, matplotlib) copied to DOCS_PNG, and per variant the
# proxy's and loadgen's logs, every stop (stops.csv) and each backend's log
# (drainit at DRAINIT_LOG=info: the line that says why each wait ended).
set -euo pipefail

BACKENDS=${BACKENDS:-3}
STOPS=${STOPS:-24}            # stops per variant: 8 per backend with 3
RATE=${RATE:-100}             # requests/s through the proxy
CONNS=${CONNS:-16}            # loadgen's keep-alive connections
WORK_MS=${WORK_MS:-5}         # the app's work per request
SEED=${SEED:-15}              # the proxy's propagation delays
SETTLE=${SETTLE:-0.5}         # pause between one stop's end and the next
PROXY_SOURCE=${PROXY_SOURCE:-127.0.0.2} # the proxy's address towards the apps; not 127.0.0.1 (above)
BUDGET=${BUDGET:-900}         # seconds for the whole script, build included
# --drain-delay 0: the least wait; the default 3 s would hold short stops.
# The wait's cap, --drain-timeout, is --stop-timeout's 10 s: room for the
# 5 s worst case plus the window, and drainit's stop budget holds.
VARIANTS=${VARIANTS:-"--drain-delay 0.5 (too short)|--drain-delay 0.5
--drain-delay 5 (covers the worst case)|--drain-delay 5
--drain-until-quiet 0.5|--drain-until-quiet 0.5 --drain-delay 0"}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/bench/out/quiet-$(date +%Y%m%d-%H%M%S)}
# Where the plot is copied; empty: leave docs/ alone (trial runs).
DOCS_PNG=${DOCS_PNG-$REPO/docs/quiet-drain.png}
DEADLINE=$((SECONDS + BUDGET))

# STARTED, forget and the EXIT trap that kills what is still running.
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

say() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'quiet.sh: error: %s\n' "$*" >&2
	exit 1
}

left() { echo $((DEADLINE - SECONDS)); }
now() { date +%s.%N; }

# Polls until "$@" succeeds, for at most LIMIT s and never past the budget.
wait_until() {
	local what=$1 limit=$2 end=$((SECONDS + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || die "timed out after $limit s waiting for $what"
		(($(left) > 0)) || die "time budget of $BUDGET s used up waiting for $what"
		sleep 0.01
	done
}

child_of() {
	local c=
	read -r c _ <"/proc/$1/task/$1/children" || true
	[[ -n $c ]] && echo "$c"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ports() { python3 "$REPO/bench/rolling.py" free-ports "$1"; }

# The peers of the established connections to 127.0.0.1:PORT, one a line.
peers() { ss -Htn state established "( sport = :$1 )" | awk '{ sub(/:[0-9]+$/, "", $NF); print $NF }' | sort -u; }

# ctl COMMAND...: one command to the proxy's control port; prints the answer.
ctl() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$CONTROL"
	printf '%s\n' "$*" >&3
	read -r -t "$(left)" reply <&3 || die "no answer from the proxy to: $*"
	exec 3<&-
	printf '%s\n' "$reply"
}

# start_backend DIR NAME OPTIONS...: the app under drainit as PID 1 of a new
# PID namespace, on new ports; sets OUTER (unshare), INIT (drainit's pid
# here) and APP_PORT. No control socket: the backends share the host's
# /run, and the first one would take /run/drainit.sock from whatever else
# runs drainit on this machine (tests, other benchmarks); the bench drives
# drainit by signals only.
start_backend() {
	local dir=$1 name=$2 health
	shift 2
	read -r APP_PORT health <<<"$(ports 2)"
	DRAINIT_LOG=info unshare --pid --fork --mount-proc --kill-child \
		"$DRAINIT" --health-addr "127.0.0.1:$health" --control-socket none "$@" -- \
		"$APP" --listen "127.0.0.1:$APP_PORT" --name "$name" --work-ms "$WORK_MS" \
		</dev/null >>"$dir/$name.log" 2>&1 &
	OUTER=$!
	STARTED+=("$OUTER:$BASHPID:KILL")
	wait_until "drainit of $name" 10 child_of "$OUTER"
	INIT=$(child_of "$OUTER")
	wait_until "$name to listen on $APP_PORT" 20 listening "$APP_PORT"
}

# Writes the time PID is gone to FILE, from the background: the stop goes
# on meanwhile. drainit's parent, unshare, reaps it at once.
note_exit() {
	(
		while [[ -e /proc/$1 ]]; do sleep 0.01; done
		now >"$2"
	) &
	STARTED+=("$!:$BASHPID:TERM")
}

# The drainit options of a variant work with this drainit (0), are unknown
# to it (1, the variant is skipped), or are wrong (the run stops).
known() {
	local rc=0 err
	err=$("$DRAINIT" --health-addr none "$@" -- true 2>&1) || rc=$?
	((rc == 0)) && return 0
	if ((rc == 2)) && grep -q 'unknown option' <<<"$err"; then
		say "skipped: $err"
		return 1
	fi
	die "drainit $* failed ($rc): $err"
}

# One stop of slot I: SIGTERM and the proxy's news at once, the replacement,
# then the wait until the old one is gone from both places.
stop_one() {
	local dir=$1 i=$2 k=$3
	shift 3
	local old=${NAMES[i]} init=${INITS[i]} outer=${OUTERS[i]} t_term delay removed
	t_term=$(now)
	delay=$(ctl gone "$old")
	kill -TERM "$init"
	note_exit "$init" "$dir/$old.exit"
	local name=s$((i + 1))-$k
	start_backend "$dir" "$name" "$@"
	[[ $(ctl add "$name" "127.0.0.1:$APP_PORT") == ok ]] || die "the proxy refused $name"
	NAMES[i]=$name INITS[i]=$INIT OUTERS[i]=$OUTER
	wait_until "$old to exit" 60 test -s "$dir/$old.exit"
	wait "$outer" || true
	forget "$outer"
	removed=$(ctl wait-removed "$old")
	printf '%s,%s,%s,%s,%s\n' "$old" "$delay" "$t_term" "$(cat "$dir/$old.exit")" "$removed" \
		>>"$dir/stops.csv"
	awk -v n="$old" -v d="$delay" -v a="$t_term" -v e="$(cat "$dir/$old.exit")" \
		'BEGIN { printf "  stop %s: propagation %.2f s, SIGTERM -> exit %.2f s\n", n, d, e - a }' >&2
}

run_variant() {
	local dir=$1
	shift
	# Fresh, or an old stop file and old exit times would end things early.
	mkdir "$dir"
	local front i k proxy loadgen
	read -r front CONTROL <<<"$(ports 2)"
	NAMES=() INITS=() OUTERS=()
	local specs=()
	for ((i = 0; i < BACKENDS; i++)); do
		start_backend "$dir" "s$((i + 1))-0" "$@"
		NAMES+=("s$((i + 1))-0") INITS+=("$INIT") OUTERS+=("$OUTER")
		specs+=("s$((i + 1))-0=127.0.0.1:$APP_PORT")
	done
	python3 "$REPO/bench/endpoints-proxy.py" --listen "$front" --control "$CONTROL" \
		--seed "$SEED" --source "$PROXY_SOURCE" --log "$dir/proxy.jsonl" "${specs[@]}" \
		2>"$dir/proxy.err" &
	proxy=$!
	STARTED+=("$proxy:$BASHPID:TERM")
	wait_until "the proxy" 10 listening "$CONTROL"
	"$LOADGEN" --url "http://127.0.0.1:$front/" --rate "$RATE" --conns "$CONNS" --timeout 2 \
		--duration 3600 --until-file "$dir/stop" --events "$dir/events.csv" >"$dir/loadgen.json" &
	loadgen=$!
	STARTED+=("$loadgen:$BASHPID:TERM")
	sleep 2
	# The premise of the quiet row: the apps see the proxy at PROXY_SOURCE.
	local seen
	seen=$(peers "${specs[0]##*:}" | paste -sd ' ')
	[[ $seen == "$PROXY_SOURCE" ]] || die "the first app's peers are '$seen', not $PROXY_SOURCE"
	echo "backend,propagation_s,t_term,t_exit,t_removed" >"$dir/stops.csv"
	for ((k = 1; k <= STOPS; k++)); do
		(($(left) > 0)) || die "time budget of $BUDGET s used up after $((k - 1)) stops"
		stop_one "$dir" $(((k - 1) % BACKENDS)) "$k" "$@"
		sleep "$SETTLE"
	done
	sleep 1
	touch "$dir/stop"
	wait "$loadgen" || true
	kill -TERM "$proxy"
	wait "$proxy" || true
	for i in "${!OUTERS[@]}"; do
		kill -KILL "${OUTERS[i]}"
		{ wait "${OUTERS[i]}" || true; } 2>/dev/null
	done
	# Everything this variant started is gone and waited for.
	STARTED=()
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "building (release); load average $LOAD_START on $(nproc) cores"
(cd "$REPO" && timeout "$(left)" cargo build --release --quiet --bin drainit --example app --example loadgen)
DRAINIT=$REPO/target/release/drainit
APP=$REPO/target/release/examples/app
LOADGEN=$REPO/target/release/examples/loadgen
mkdir -p "$OUT"
say "output: $OUT"
command -v ss >/dev/null || die "needs ss (apt-get install iproute2)"
# The plot needs matplotlib: Debian's python3-matplotlib, when the first
# python3 on the PATH lacks it.
PY=python3
if ! "$PY" -c 'import matplotlib' 2>/dev/null && /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
	PY=/usr/bin/python3
fi

mapfile -t LINES <<<"$VARIANTS"
ROWS=()
for n in "${!LINES[@]}"; do
	IFS='|' read -r label options <<<"${LINES[n]}"
	read -r -a opts <<<"$options"
	say "$label"
	if ! known "${opts[@]}"; then
		ROWS+=("| $label | \`$options\` | skipped: this drainit does not know the option | | | | | | | |")
		continue
	fi
	run_variant "$OUT/variant-$n" "${opts[@]}"
	python3 -c 'import json, sys; json.dump({"label": sys.argv[1], "options": sys.argv[2]}, sys.stdout)' \
		"$label" "$options" >"$OUT/variant-$n/meta.json"
	ROWS+=("$("$PY" "$REPO/bench/quiet.py" row "$OUT/variant-$n")")
done

{
	echo "<!-- bench/quiet.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average $LOAD_START at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end; BACKENDS=$BACKENDS STOPS=$STOPS RATE=$RATE CONNS=$CONNS WORK_MS=$WORK_MS SEED=$SEED SETTLE=$SETTLE PROXY_SOURCE=$PROXY_SOURCE -->"
	echo
	echo "| variant | drainit options | stops | failed / requests | SIGTERM → old drainit exits, mean / p50 / max | exit − propagation delay, mean | exit − proxy's removal, mean (min to max) | wait ended | propagation delay drawn, mean (min-max) | loadgen sent late, p99 / max |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	"$PY" "$REPO/bench/quiet.py" notes "$OUT"
} | tee "$OUT/table.md"

"$PY" "$REPO/bench/quiet.py" plot "$OUT" "$OUT/quiet-drain.png"
if [[ -f $OUT/quiet-drain.png && -n $DOCS_PNG ]]; then
	mkdir -p "$(dirname "$DOCS_PNG")"
	cp "$OUT/quiet-drain.png" "$DOCS_PNG"
	say "$DOCS_PNG updated"
fi
