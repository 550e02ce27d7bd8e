#!/usr/bin/env bash
# Scale down without dropping a request: drain the replicas first, wait until
# the proxy has stopped routing to them, then stop and remove them.
#
#   examples/scale-down.sh [OPTIONS] CONTAINER...
#   examples/scale-down.sh [OPTIONS] --service NAME --count N [--project P]
#
# `docker compose up --scale web=1` picks the replicas to remove itself and
# stops them at once; `docker rm -f` (seed 003's way) SIGKILLs them in the
# middle of their requests. Here each replica's drainit is told to fail
# readiness (`docker exec C drainit drain`), so the proxy's health checks
# take it out of rotation while it still serves what it is sent.
#
# How long to wait before stopping, one of:
#   --probes N   until each replica answered N readiness probes "not ready"
#                (drainit counts them: `drainit status --json`). Every prober
#                counts (the proxy's checks, Docker's HEALTHCHECK), so pick N
#                for the one the proxy follows: HAProxy `fall 3` -> 3 (times
#                the number of HAProxy instances); Traefik on plain Docker,
#                which follows Docker's health -> the HEALTHCHECK's retries.
#   --wait S     a fixed wait: the proxy's check interval x its failure
#                threshold, plus a margin [default: 5]
# Other options:
#   --timeout S       give up on --probes after S seconds, stop nothing, exit 1 [60]
#   --stop-timeout S  passed to docker stop -t; at least drainit's grace [10]
#   --keep            stop but do not remove the containers
#   --service NAME --count N [--project P]
#                     pick the N highest-numbered replicas of a compose service
#   -n, --dry-run     print what would be done
# Environment: DOCKER (the docker command, default `docker`).
#
# In Docker Swarm, use `docker service scale web=1` instead: Swarm stops the
# tasks it removes with SIGTERM (SIGKILL after stop_grace_period), and drainit
# drains them on its own. A manual drain there would turn the task unhealthy and
# Swarm would replace it.
set -euo pipefail

docker_cmd=${DOCKER:-docker}
probes=""
wait_s=5
timeout_s=60
stop_timeout=10
keep=false
dry=false
service=""
count=""
project=""
containers=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "scale-down: $*" >&2; exit 1; }
say() { echo "scale-down: $*" >&2; }
number() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 needs a number, got '$2'"; echo "$2"; }

while (($#)); do
    case $1 in
    --probes) probes=$(number "$1" "${2-}"); shift 2 ;;
    --wait) wait_s=$(number "$1" "${2-}"); shift 2 ;;
    --timeout) timeout_s=$(number "$1" "${2-}"); shift 2 ;;
    --stop-timeout) stop_timeout=$(number "$1" "${2-}"); shift 2 ;;
    --keep) keep=true; shift ;;
    --service) service=${2-}; shift 2 ;;
    --count) [[ ${2-} =~ ^[1-9][0-9]*$ ]] || die "--count needs a whole number"; count=$2; shift 2 ;;
    --project) project=${2-}; shift 2 ;;
    -n | --dry-run) dry=true; shift ;;
    -h | --help) usage ;;
    --) shift; containers+=("$@"); break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) containers+=("$1"); shift ;;
    esac
done

dk() { # runs docker, or prints it under --dry-run
    if $dry; then echo "+ $docker_cmd $*" >&2; else "$docker_cmd" "$@"; fi
}

if [[ -n $service ]]; then
    [[ -n $count ]] || die "--service needs --count N"
    filters=(--filter "label=com.docker.compose.service=$service")
    [[ -n $project ]] && filters+=(--filter "label=com.docker.compose.project=$project")
    mapfile -t picked < <("$docker_cmd" ps "${filters[@]}" \
        --format '{{.Label "com.docker.compose.container-number"}} {{.Names}}' |
        sort -rn | head -n "$count" | cut -d' ' -f2)
    ((${#picked[@]} == count)) || die "service $service has fewer than $count running replicas"
    containers+=("${picked[@]}")
fi
((${#containers[@]})) || usage

# 1. Drain: from now on /readyz answers 503 and the proxy's checks fail.
for c in "${containers[@]}"; do
    say "draining $c"
    dk exec "$c" drainit drain >&2 || die "cannot drain $c (is drainit its PID 1?); nothing was stopped"
done

# 2. Wait until the proxy has stopped routing to them.
probes_answered() { # CONTAINER -> number of unready answers since the drain
    "$docker_cmd" exec "$1" drainit status --json 2>/dev/null |
        sed -n 's/.*"probes_answered":\([0-9]*\).*/\1/p'
}
if $dry; then
    if [[ -n $probes ]]; then say "would wait for $probes unready probes (at most ${timeout_s}s)"; else say "would wait ${wait_s}s"; fi
elif [[ -n $probes ]]; then
    deadline=$((SECONDS + ${timeout_s%.*}))
    for c in "${containers[@]}"; do
        until n=$(probes_answered "$c") && ((${n:-0} >= probes)); do
            if ((SECONDS >= deadline)); then
                die "$c answered ${n:-0} of $probes unready probes in ${timeout_s}s: is anything health-checking it? Nothing was stopped; undo with: docker exec $c drainit undrain"
            fi
            sleep 0.2
        done
        say "$c: $n unready probes answered"
    done
else
    say "waiting ${wait_s}s for the proxy to notice"
    sleep "$wait_s"
fi

# 3. Stop (SIGTERM, forwarded at once: the drain is over) and remove.
for c in "${containers[@]}"; do
    say "stopping $c"
    dk stop -t "$stop_timeout" "$c" >/dev/null
    if ! $dry; then
        say "$c exited with status $("$docker_cmd" inspect -f '{{.State.ExitCode}}' "$c")"
    fi
    $keep || dk rm "$c" >/dev/null
done
