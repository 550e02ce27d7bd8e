#!/usr/bin/env bash
# Builds drainit (and, if named, example programs) as static Linux binaries
# that run in a `FROM scratch` image, and prints the directory that holds
# them as the last line of its output (everything else goes to stderr).
#
#   scripts/build-static.sh                 # drainit only
#   scripts/build-static.sh app sigrec      # drainit + examples/app.rs + examples/sigrec.rs
#   CARGO_TARGET_DIR=/tmp/t scripts/build-static.sh
#   DRAINIT_STATIC_ARCH=aarch64 scripts/build-static.sh   # for another CPU
#
# It tries musl first (ARCH-unknown-linux-musl: fully static, no libc
# surprises); when that target cannot be used it falls back to glibc with
# `+crt-static`. Either way it checks that every binary is really static
# and fails otherwise. DRAINIT_STATIC_TARGET picks the libc: musl (the
# default, with that fallback), musl-only (no fallback: what releases use)
# or gnu (skip musl).
#
# DRAINIT_STATIC_ARCH (default: this machine's) is x86_64, aarch64 or armv7.
# Another CPU than this machine's is built for musl only, linked by the
# toolchain's own rust-lld: Rust ships musl's C runtime for these targets,
# so no C cross compiler is needed (a static glibc would need one).
#
# In a Dockerfile:
#   COPY --from=build /src/target/x86_64-unknown-linux-musl/release/drainit /usr/local/bin/drainit
# or, with the binaries already built on the host:
#   dir=$(scripts/build-static.sh) && cp "$dir/drainit" docker-context/
set -euo pipefail

cd "$(dirname "$0")/.."
host=$(uname -m)
arch=${DRAINIT_STATIC_ARCH:-$host}
libc=${DRAINIT_STATIC_TARGET:-musl}
target_dir=${CARGO_TARGET_DIR:-target}
examples=("$@")

log() { echo "build-static: $*" >&2; }
die() { log "$*"; exit 1; }

case $arch in
    x86_64 | aarch64) musl="$arch-unknown-linux-musl" ;;
    armv7) musl="armv7-unknown-linux-musleabihf" ;;
    *) die "unknown DRAINIT_STATIC_ARCH '$arch' (x86_64, aarch64 or armv7)" ;;
esac
case $libc in
    musl | musl-only | gnu) ;;
    *) die "unknown DRAINIT_STATIC_TARGET '$libc' (musl, musl-only or gnu)" ;;
esac
if [[ $arch != "$host" ]]; then
    [[ $libc != gnu ]] || die "a static glibc build for $arch needs a C cross compiler; use musl"
    libc="musl-only"
    # Cargo's per-target linker variable, unless the caller chose one.
    linker_var="CARGO_TARGET_$(echo "$musl" | tr 'a-z-' 'A-Z_')_LINKER"
    export "$linker_var=${!linker_var:-rust-lld}"
fi

build() { # TRIPLE [extra RUSTFLAGS]
    local triple=$1 flags=${2:-}
    local args=(build --release --target "$triple" --bin drainit)
    for e in "${examples[@]}"; do args+=(--example "$e"); done
    log "cargo ${args[*]}${flags:+ (RUSTFLAGS=$flags)}"
    # With --target, RUSTFLAGS reach only the target's crates, not build scripts.
    RUSTFLAGS="${RUSTFLAGS:-}${flags:+ $flags}" CARGO_TARGET_DIR="$target_dir" \
        cargo "${args[@]}" >&2
}

# Installs the rustup target TRIPLE if needed; when it cannot, sets $why
# to the reason in one line.
why=""
has_target() {
    command -v rustup >/dev/null || return 0 # no rustup: just try cargo
    rustup target list --installed 2>/dev/null | grep -qx "$1" && return 0
    log "installing rustup target $1"
    local out err http
    out=$(rustup target add "$1" 2>&1) && return 0
    # rustup's own message runs to a backtrace: keep its first error line
    # and the HTTP status, if any.
    err=$(grep -m1 '^error:' <<<"$out" | sed 's/^error: //' || true)
    http=$(grep -m1 -o 'status code: [0-9]*' <<<"$out" | sed 's/.*: \(.*\)/ (HTTP \1)/' || true)
    why="cannot install rustup target $1: ${err:-rustup target add failed}$http"
    return 1
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
gnu="$arch-unknown-linux-gnu"
if [[ $libc != gnu ]] && has_target "$musl"; then
    if build "$musl"; then
        out="$target_dir/$musl/release"
    elif [[ $libc == musl-only ]]; then
        die "cargo build for $musl failed"
    fi
elif [[ $libc == musl-only ]]; then
    die "$why"
fi
if [[ -z $out ]]; then
    [[ $libc == gnu ]] || log "${why:-musl build failed}; falling back to static glibc"
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
