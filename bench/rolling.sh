#!/usr/bin/env bash
# Rolling restarts behind a real HAProxy, measured: drainit vs. the baseline
# users have today. Run by hand (not in CI), as root (PID namespaces):
#
#   bench/rolling.sh                 # 2 rounds over 3 backends per variant
#   ROUNDS=3 RATE=400 bench/rolling.sh
#
# One run measures four variants side by side, each with its own HAProxy
# made from examples/haproxy.cfg (checks every 1s, fall 2, rise 2,
# retries 3, no option redispatch) and 3 backends running examples/app
# (--work-ms 5), under a steady load from examples/loadgen (RATE req/s over
# CONNS keep-alive connections, 2 s per-request timeout):
#
#   a) drainit, fixed --drain-delay 3 (the default, sized 2 x inter + 1 s)
#   b) drainit, --drain-checks 2 (= fall) --drain-delay 30: SIGTERM goes to
#      the app after 2 unready answers + --drain-linger 1
#   c) baseline: the app under tini, HAProxy checking the app's own /ready
#      (what a tini user has: no drain; the app stops accepting on SIGTERM
#      at once and finishes what it has in flight)
#   e) the same baseline under dumb-init.
#   d) the baseline with `option redispatch` added: HAProxy resends a
#      refused connection to another server. On loopback a stopped app
#      refuses instantly, so this hides the missing drain; it cannot where
#      connects time out (a container's address gone) or in-flight requests
#      are dropped. Shown so the table says what retries do and do not buy.
#
# Every backend runs as PID 1 of its own PID namespace (unshare), like in
# a container. Restarting one = SIGTERM to its init, wait for it to exit,
# wait REPLACE_AFTER seconds (a replacement container takes a while to be
# created and started; meanwhile nothing listens on the port), start a new
# one on the same ports, wait until HAProxy routes to it again.
#
# Environment: ROUNDS (2), BACKENDS (3), RATE (200), CONNS (32), WORK_MS (5),
# REPLACE_AFTER (2), SETTLE (1, pause between restarts), VARIANTS, OUT,
# DOCS_PNG (where the plot goes; empty for none).
#
# Output: a Markdown table on stdout (also bench/out/rolling-*/table.md),
# raw data under bench/out/rolling-<time>/ (gitignored), and the timeline
# plot docs/rolling-restart.png (needs python3 with matplotlib).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-2}
BACKENDS=${BACKENDS:-3}
RATE=${RATE:-200}
CONNS=${CONNS:-32}
WORK_MS=${WORK_MS:-5}
SETTLE=${SETTLE:-1}
REPLACE_AFTER=${REPLACE_AFTER:-2}
VARIANTS=${VARIANTS:-"a-drainit-delay b-drainit-checks c-tini-baseline d-tini-redispatch e-dumb-init-baseline"}
OUT=${OUT:-$ROOT/bench/out/rolling-$(date +%Y%m%d-%H%M%S)}
# Where the plot is copied; empty: leave docs/ alone (trial runs).
DOCS_PNG=${DOCS_PNG-$ROOT/docs/rolling-restart.png}

need() { command -v "$1" >/dev/null || { echo "bench/rolling.sh: needs $1 ($2)" >&2; exit 1; }; }
need haproxy "apt-get install haproxy"
need tini "apt-get install tini"
need dumb-init "apt-get install dumb-init"
need unshare "util-linux"
PY=python3
if ! "$PY" -c 'import matplotlib' 2>/dev/null && /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    PY=/usr/bin/python3
fi
HELPER="$PY $ROOT/bench/rolling.py"

echo "building (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet --bin drainit --example app --example loadgen)
DRAINIT=$ROOT/target/release/drainit
APP=$ROOT/target/release/examples/app
LOADGEN=$ROOT/target/release/examples/loadgen
mkdir -p "$OUT"

# Every process started here, by pid, for the exit trap.
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        # Only if it is still our own child (a pid can be reused).
        if [ "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" = "$$" ]; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N | cut -c1-14; }

# start_backend DIR VARIANT NAME APP_PORT HEALTH_PORT: sets OUTER and INIT
# (the init's pid as seen from here).
start_backend() {
    local dir=$1 variant=$2 name=$3 app_port=$4 health_port=$5
    local app=("$APP" --listen "127.0.0.1:$app_port" --name "$name" --work-ms "$WORK_MS")
    local init
    case $variant in
        a-drainit-delay)
            init=("$DRAINIT" --health-addr "127.0.0.1:$health_port"
                  --ready-http "http://127.0.0.1:$app_port/ready" --drain-delay 3 --) ;;
        b-drainit-checks)
            init=("$DRAINIT" --health-addr "127.0.0.1:$health_port"
                  --ready-http "http://127.0.0.1:$app_port/ready"
                  --drain-checks 2 --drain-delay 30 --stop-timeout 40 --) ;;
        c-tini-baseline | d-tini-redispatch)
            init=(tini --) ;;
        e-dumb-init-baseline)
            init=(dumb-init) ;;
    esac
    unshare --pid --fork --mount-proc --kill-child "${init[@]}" "${app[@]}" \
        >>"$dir/$name.log" 2>&1 &
    OUTER=$!
    PIDS+=("$OUTER")
    INIT=""
    local i
    for i in $(seq 200); do
        INIT=$(cut -d' ' -f1 "/proc/$OUTER/task/$OUTER/children" 2>/dev/null || true)
        [ -n "$INIT" ] && break
        sleep 0.01
    done
    [ -n "$INIT" ] || { echo "no init under unshare $OUTER" >&2; exit 1; }
}

run_variant() {
    local variant=$1 label=$2 dir=$OUT/$1
    mkdir -p "$dir"
    local ports
    read -r -a ports <<<"$($HELPER free-ports $((1 + 2 * BACKENDS)))"
    local front=${ports[0]} sock=$dir/admin.sock check_path=/readyz redispatch=0 baseline=0
    case $variant in
        c-tini-baseline) baseline=1 check_path=/ready ;;
        d-tini-redispatch) baseline=1 check_path=/ready redispatch=1 ;;
        e-dumb-init-baseline) baseline=1 check_path=/ready ;;
    esac
    local names=() app_ports=() health_ports=() specs=() outers=() inits=()
    local i
    for ((i = 0; i < BACKENDS; i++)); do
        names+=("s$((i + 1))")
        app_ports+=("${ports[$((1 + 2 * i))]}")
        health_ports+=("${ports[$((2 + 2 * i))]}")
        # The baseline's checks go to the app's own port.
        if [ "$baseline" = 1 ]; then
            specs+=("s$((i + 1)):${app_ports[$i]}:${app_ports[$i]}")
        else
            specs+=("s$((i + 1)):${app_ports[$i]}:${health_ports[$i]}")
        fi
    done
    $HELPER config "$ROOT/examples/haproxy.cfg" "$dir/haproxy.cfg" "$front" "$sock" "$check_path" "$redispatch" "${specs[@]}"
    for ((i = 0; i < BACKENDS; i++)); do
        start_backend "$dir" "$variant" "${names[$i]}" "${app_ports[$i]}" "${health_ports[$i]}"
        outers+=("$OUTER")
        inits+=("$INIT")
    done
    haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    local haproxy_pid=$!
    PIDS+=("$haproxy_pid")
    for ((i = 0; i < BACKENDS; i++)); do
        $HELPER wait "$sock" "${names[$i]}" up 20 >/dev/null
    done
    printf '{"key":"%s","label":"%s","rate":%s,"conns":%s,"work_ms":%s,"backends":%s}\n' \
        "$variant" "$label" "$RATE" "$CONNS" "$WORK_MS" "$BACKENDS" >"$dir/meta.json"
    rm -f "$dir/stop"
    "$LOADGEN" --url "http://127.0.0.1:$front/" --rate "$RATE" --conns "$CONNS" --timeout 2 \
        --duration 900 --until-file "$dir/stop" --timeline "$dir/timeline.csv" \
        --events "$dir/events.csv" >"$dir/loadgen.json" &
    local loadgen_pid=$!
    PIDS+=("$loadgen_pid")
    sleep 2
    echo "server,t_term,t_down,t_exit,t_up" >"$dir/restarts.csv"
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((i = 0; i < BACKENDS; i++)); do
            local name=${names[$i]}
            # Watch for HAProxy to stop routing to it, from before SIGTERM on.
            $HELPER wait "$sock" "$name" down 60 >"$dir/down.tmp" &
            local watcher=$!
            PIDS+=("$watcher")
            sleep 0.05
            local t_term t_exit t_up t_down
            t_term=$(now)
            kill -TERM "${inits[$i]}"
            wait "${outers[$i]}" || true
            t_exit=$(now)
            wait "$watcher" || true
            t_down=$(cat "$dir/down.tmp" 2>/dev/null || true)
            # A replacement container takes a while to be created and started.
            sleep "$REPLACE_AFTER"
            start_backend "$dir" "$variant" "$name" "${app_ports[$i]}" "${health_ports[$i]}"
            outers[$i]=$OUTER
            inits[$i]=$INIT
            t_up=$($HELPER wait "$sock" "$name" up 30)
            echo "$name,$t_term,${t_down:-nan},$t_exit,$t_up" >>"$dir/restarts.csv"
            awk -v v="$variant" -v r="$round" -v n="$name" -v a="$t_term" -v d="${t_down:-nan}" \
                -v e="$t_exit" -v u="$t_up" 'BEGIN { printf "  %s round %d %s: old exited %.2fs, HAProxy stopped routing %ss, new one up %.2fs after SIGTERM\n", v, r, n, e - a, (d == "nan" ? "never" : sprintf("%.2f", d - a)), u - a }' >&2
            sleep "$SETTLE"
        done
    done
    sleep 2
    touch "$dir/stop"
    wait "$loadgen_pid" || true
    # HAProxy's counters for the run (before the backends are stopped).
    $HELPER stat "$sock" >"$dir/haproxy-stat.csv" || true
    for ((i = 0; i < BACKENDS; i++)); do
        kill -TERM "${inits[$i]}" 2>/dev/null || true
    done
    for ((i = 0; i < BACKENDS; i++)); do
        wait "${outers[$i]}" || true
    done
    kill -TERM "$haproxy_pid" 2>/dev/null || true
    wait "$haproxy_pid" || true
    rm -f "$dir/down.tmp" "$dir/stop" "$sock"
    echo "  $variant: $(cat "$dir/loadgen.json")" >&2
}

echo "output: $OUT" >&2
for v in $VARIANTS; do
    case $v in
        a-drainit-delay) label="drainit --drain-delay 3" ;;
        b-drainit-checks) label="drainit --drain-checks 2" ;;
        c-tini-baseline) label="tini (baseline, no drain)" ;;
        d-tini-redispatch) label="tini + option redispatch" ;;
        e-dumb-init-baseline) label="dumb-init (baseline, no drain)" ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    echo "== $v ($label)" >&2
    run_variant "$v" "$label"
done

{
    echo "# bench/rolling.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
    echo "# ROUNDS=$ROUNDS BACKENDS=$BACKENDS RATE=$RATE CONNS=$CONNS WORK_MS=$WORK_MS"
} >"$OUT/README"
$HELPER report "$OUT"
if [ -f "$OUT/rolling-restart.png" ] && [ -n "$DOCS_PNG" ]; then
    mkdir -p "$(dirname "$DOCS_PNG")"
    cp "$OUT/rolling-restart.png" "$DOCS_PNG"
    echo "$DOCS_PNG updated" >&2
fi
