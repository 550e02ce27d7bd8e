#!/usr/bin/env bash
# bench/soak.sh: the hardening suite (tests/hardening_*.rs, tests/fuzz_http.rs)
# at sizes too big for CI. Run by hand, as root (PID and network namespaces):
#
#   bench/soak.sh              # release build, the sizes below
#   PROFILE=debug bench/soak.sh
#
# Knobs (environment), with CI's defaults in brackets:
#   HARDENING_BURSTS   orphan bursts                    [20]   here 100
#   HARDENING_ORPHANS  orphans per burst (< pid_max/2)  [5000] here 5000
#   HARDENING_FLOOD    slow connections held            [2000] here 8000
#   HARDENING_STORM_SECS  first phase of the storm, s   [1.2]  here 20
#   PROPTEST_CASES     cases per property               [2000] here 200000
#
# The tests print their figures as "figures: ..." lines; they are collected
# in bench/out/soak-figures.txt (gitignored). Every process the tests start
# is theirs to clean up (by pid); this script starts nothing else. In the
# release build /debug/panic does not exist, so the handler-panic test is
# compiled out there (PROFILE=debug runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

export HARDENING_BURSTS=${HARDENING_BURSTS:-100}
export HARDENING_ORPHANS=${HARDENING_ORPHANS:-5000}
export HARDENING_FLOOD=${HARDENING_FLOOD:-8000}
export HARDENING_STORM_SECS=${HARDENING_STORM_SECS:-20}
export PROPTEST_CASES=${PROPTEST_CASES:-200000}
PROFILE=${PROFILE:-release}

pid_max=$(cat /proc/sys/kernel/pid_max)
if (( HARDENING_ORPHANS * 2 + 2000 > pid_max )); then
    echo "soak.sh: HARDENING_ORPHANS=$HARDENING_ORPHANS needs 2 x that many pids; pid_max is $pid_max" >&2
    exit 2
fi
# 8,000 client sockets plus drainit's: the tests raise their own soft
# limit to the hard one; the hard one must allow it.
if (( $(ulimit -Hn) < HARDENING_FLOOD + 512 )); then
    echo "soak.sh: the hard RLIMIT_NOFILE ($(ulimit -Hn)) is below HARDENING_FLOOD + 512" >&2
    exit 2
fi

flags=()
[[ $PROFILE == release ]] && flags=(--release)
# The examples (sigrec) are built only by a full `cargo test` run.
cargo build "${flags[@]}" --quiet --bin drainit --examples

mkdir -p bench/out
rm -f bench/out/soak-*.log
out=bench/out/soak-figures.txt
: >"$out"
start=$SECONDS
for t in fuzz_http hardening_http hardening_control hardening_faults \
         hardening_signals hardening_flood hardening_reap; do
    echo "==> $t" >&2
    t0=$SECONDS
    cargo test "${flags[@]}" --quiet --test "$t" -- --nocapture 2>&1 \
        | tee -a bench/out/soak-$t.log | grep -oE 'figures:.*|test result.*|panicked.*' || true
    grep -ohE 'figures:.*' bench/out/soak-$t.log >>"$out" || true
    echo "    $t: $((SECONDS - t0)) s" >&2
done
echo "soak: done in $((SECONDS - start)) s; figures in $out" >&2
if grep -q 'test result: FAILED' bench/out/soak-*.log; then
    echo "soak: FAILURES (see bench/out/soak-*.log)" >&2
    exit 1
fi
