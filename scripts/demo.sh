#!/usr/bin/env bash
# Builds drainit and the example app, runs the app under drainit, and walks
# through a graceful stop: readiness flips to 503 at once, the app keeps
# serving during the drain wait, and only then gets SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin drainit --example app
health=127.0.0.1:${HEALTH_PORT:-18099}
app=127.0.0.1:${APP_PORT:-18080}

say() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%T.%3N)" "$*"; }
get() { python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=2); print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
except Exception as e:
    print("error:", e)
PY
}

say "starting: drainit -v -s --health-addr $health --drain-delay 2 -- app --listen $app"
./target/release/drainit -v -s --health-addr "$health" --drain-delay 2 -- \
    ./target/release/examples/app --listen "$app" --name demo &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT

for _ in $(seq 50); do get "http://$health/readyz" | grep -q '^200' && break; sleep 0.1; done
say "GET /readyz  -> $(get "http://$health/readyz")"
say "GET app /    -> $(get "http://$app/")"
say "docker stop would send SIGTERM now"
kill -TERM $pid
sleep 0.2
say "GET /readyz  -> $(get "http://$health/readyz")   (the proxy stops routing here)"
say "GET app /    -> $(get "http://$app/")   (still serving during the drain)"
wait $pid && rc=0 || rc=$?
say "drainit exited with $rc (the app's own status)"
