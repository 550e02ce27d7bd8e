# shellcheck shell=bash
# bench/lib.sh: sourced by the benchmarks (bench/core.sh, bench/quiet.sh) so
# that each kills every process it started, by pid, however it ends.
# Register a process with STARTED+=("PID:PARENT:SIGNAL") right after
# starting it, and forget it once it has been waited for.

# "pid:parent:signal" of every process started, for the EXIT trap.
# Signalling only while the parent is still the expected one means a pid
# that has been recycled since is never hit.
STARTED=()

ppid_of() { awk '{ sub(/.*\) /, ""); print $2 }' "/proc/$1/stat" 2>/dev/null || true; }

# Once a process is waited for, its pid is free for reuse: drop it, and
# whatever it started, from the list.
forget() {
	local i pid parent
	for i in "${!STARTED[@]}"; do
		IFS=: read -r pid parent _ <<<"${STARTED[i]}"
		if [[ $pid == "$1" || $parent == "$1" ]]; then unset 'STARTED[i]'; fi
	done
}

cleanup() {
	local i pid parent sig idx=("${!STARTED[@]}")
	# Newest first: an init is registered after its unshare, and killing
	# the init first takes its whole namespace down with it.
	for ((i = ${#idx[@]} - 1; i >= 0; i--)); do
		IFS=: read -r pid parent sig <<<"${STARTED[${idx[i]}]}"
		if [[ $(ppid_of "$pid") == "$parent" ]]; then
			kill "-$sig" "$pid" 2>/dev/null || true
		fi
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
