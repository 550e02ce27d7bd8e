#!/usr/bin/env bash
# Builds the release: static, stripped drainit binaries into dist/ as
# drainit-VERSION-ARCH-linux-musl, with SHA256SUMS beside them, and prints
# their sizes as a table on stdout (the build's own output goes to stderr).
#
#   scripts/release.sh                   # x86_64 and aarch64
#   scripts/release.sh armv7             # only the CPUs named (x86_64, aarch64, armv7)
#   DIST_DIR=/tmp/d scripts/release.sh   # somewhere else than dist/
#
# scripts/build-static.sh does the building, for musl only: a release never
# falls back to glibc (its name says musl). It installs the rustup targets
# it needs and stops at the first it cannot have, with the reason in one
# line. Other CPUs than this machine's are linked by rust-lld, so no C
# cross compiler is needed. armv7 (armv7-unknown-linux-musleabihf) is built
# the same way, but only when asked: the project's machines cannot fetch
# its rustup target, so it has never been built or tested here.
#
# VERSION is Cargo.toml's. dist/ then holds exactly this run's binaries:
# earlier ones and their SHA256SUMS are removed first.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "release: $*" >&2; exit 1; }

command -v file >/dev/null || die "needs file(1) to check the binaries are stripped (apt-get install file)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version = \"...\" line in Cargo.toml"
dist=${DIST_DIR:-dist}
arches=("$@")
[[ ${#arches[@]} -gt 0 ]] || arches=(x86_64 aarch64)
# The tests build their static binaries in target/static too, so a release
# after `cargo test`, or the tests after a release, rebuild nothing.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/static}

mkdir -p "$dist"
rm -f "$dist"/drainit-*-linux-musl "$dist/SHA256SUMS"
names=()
for arch in "${arches[@]}"; do
    dir=$(DRAINIT_STATIC_ARCH=$arch DRAINIT_STATIC_TARGET=musl-only scripts/build-static.sh) || exit 1
    name="drainit-$version-$arch-linux-musl"
    # The release profile strips; check, since a stray debug build would be
    # ten times the size.
    file -L "$dir/drainit" | grep -q ', stripped' || die "$dir/drainit is not stripped"
    install -m 0755 "$dir/drainit" "$dist/$name"
    names+=("$name")
done
(cd "$dist" && sha256sum "${names[@]}" >SHA256SUMS)

printf '%-36s %9s %8s\n' file bytes KiB
for name in "${names[@]}"; do
    bytes=$(stat -c %s "$dist/$name")
    awk -v n="$name" -v b="$bytes" 'BEGIN { printf "%-36s %9d %8.1f\n", n, b, b / 1024 }'
done
echo "release: $dist/SHA256SUMS covers ${names[*]}" >&2
