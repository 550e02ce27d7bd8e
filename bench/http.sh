#!/usr/bin/env bash
# /readyz throughput and latency: wrk with 64 connections against drainit's
# health endpoint, first with an idle child, then while the child floods
# drainit with orphans to reap (the signal loop and the health thread
# compete for the same two cores). Run by hand; not part of CI.
#
#   bench/http.sh [SECONDS]
#
# Target: at least 20,000 requests/s and p99 under 5 ms on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin drainit --examples
mkdir -p bench/out
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/readyz"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Prints "requests/s p50 p99" from wrk's --latency output.
measure() {
    wrk -t2 -c64 -d"${duration}s" --latency "$url" >bench/out/wrk-$1.txt
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}' bench/out/wrk-$1.txt
}

start() {
    unshare --pid --fork --mount-proc --kill-child ./target/release/drainit --health-addr "127.0.0.1:$port" -- "$@" &
    pids+=($!)
    for _ in $(seq 100); do curl -fs "$url" >/dev/null 2>&1 && return; sleep 0.05; done
    echo "drainit did not come up" >&2; exit 1
}

start sleep 1000
read -r idle_rps idle_p50 idle_p99 < <(measure idle)
cleanup; pids=()

# The child keeps making orphans for the whole run: bursts of 1,000 every
# quarter second (about 4,000 a second), each orphan exiting at once, so
# drainit reaps continuously while wrk measures. Unthrottled, the forking
# itself takes a whole core of the two and the figure says more about the
# machine than about drainit.
start sh -c 'while :; do ./target/release/examples/sigrec --orphans 1000 --exit 0 || exit; sleep 0.25; done'
reaped_before=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^drainit_zombies_reaped_total/ {print $2}')
read -r flood_rps flood_p50 flood_p99 < <(measure flood)
reaped_after=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^drainit_zombies_reaped_total/ {print $2}')

printf '| /readyz, wrk -c64 -d%ss | requests/s | p50 | p99 |\n|---|---|---|---|\n' "$duration"
printf '| idle child | %s | %s | %s |\n' "$idle_rps" "$idle_p50" "$idle_p99"
printf '| child making orphans (%s reaped meanwhile) | %s | %s | %s |\n' \
    "$((reaped_after - reaped_before))" "$flood_rps" "$flood_p50" "$flood_p99"
