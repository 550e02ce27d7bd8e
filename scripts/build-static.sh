#!/usr/bin/env bash
# Builds drainit (and, if named, example programs) as static Linux binaries
# that run in a `FROM scratch` image, and prints the directory that holds
# them as the last line of its output (everything else goes to stderr).
#
#   scripts/build-static.sh                 # drainit only
#   scripts/build-static.sh app sigrec      # drainit + examples/app.rs + examples/sigrec.rs
#   CARGO_TARGET_DIR=/tmp/t scripts/build-static.sh
#
# It tries musl first (x86_64-unknown-linux-musl: fully static, no libc
# surprises); when that target cannot be used it falls back to glibc with
# `+crt-static`. Either way it checks that every binary is really static
# and fails otherwise. Set DRAINIT_STATIC_TARGET=gnu to skip musl.
#
# In a Dockerfile:
#   COPY --from=build /src/target/x86_64-unknown-linux-musl/release/drainit /usr/local/bin/drainit
# or, with the binaries already built on the host:
#   dir=$(scripts/build-static.sh) && cp "$dir/drainit" docker-context/
set -euo pipefail

cd "$(dirname "$0")/.."
arch=$(uname -m)
target_dir=${CARGO_TARGET_DIR:-target}
examples=("$@")

log() { echo "build-static: $*" >&2; }

build() { # TRIPLE [extra RUSTFLAGS]
    local triple=$1 flags=${2:-}
    local args=(build --release --target "$triple" --bin drainit)
    for e in "${examples[@]}"; do args+=(--example "$e"); done
    log "cargo ${args[*]}${flags:+ (RUSTFLAGS=$flags)}"
    # With --target, RUSTFLAGS reach only the target's crates, not build scripts.
    RUSTFLAGS="${RUSTFLAGS:-}${flags:+ $flags}" CARGO_TARGET_DIR="$target_dir" \
        cargo "${args[@]}" >&2
}

has_target() {
    command -v rustup >/dev/null || return 0 # no rustup: just try cargo
    rustup target list --installed 2>/dev/null | grep -qx "$1" && return 0
    log "installing rustup target $1"
    rustup target add "$1" >&2 2>&1
}

is_static() { # FILE
    if command -v file >/dev/null; then
        file -L "$1" | grep -Eq 'statically linked|static-pie linked'
    else
        # ldd prints "not a dynamic executable" (or "statically linked") for static ones.
        if ldd "$1" 2>&1 | grep -q '=>'; then return 1; fi
    fi
}

out=""
musl="$arch-unknown-linux-musl"
gnu="$arch-unknown-linux-gnu"
if [[ ${DRAINIT_STATIC_TARGET:-musl} != gnu ]] && has_target "$musl" && build "$musl"; then
    out="$target_dir/$musl/release"
else
    log "musl build not possible here; falling back to static glibc"
    build "$gnu" "-C target-feature=+crt-static"
    out="$target_dir/$gnu/release"
fi

bins=("$out/drainit")
for e in "${examples[@]}"; do bins+=("$out/examples/$e"); done
for b in "${bins[@]}"; do
    if ! is_static "$b"; then
        log "$b is not statically linked:"
        { file "$b" || ldd "$b"; } >&2 2>&1 || true
        exit 1
    fi
done
log "static: ${bins[*]}"
(cd "$out" && pwd)
