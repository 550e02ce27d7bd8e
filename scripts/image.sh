#!/usr/bin/env bash
# Builds drainit's init-only image: FROM scratch, holding /drainit and
# nothing else, for other images to take drainit from:
#
#   COPY --from=drainit:VERSION /drainit /usr/local/bin/drainit
#
#   scripts/image.sh                    # drainit:VERSION for this machine's CPU
#   scripts/image.sh -t NAME:TAG        # another tag
#   scripts/image.sh --context DIR      # only write the build context (every CPU) to DIR
#   DIST_DIR=/tmp/d scripts/image.sh    # from another release directory
#
# It takes the binaries scripts/release.sh made (dist/, checked against its
# SHA256SUMS first) and prints the tag as the last line on stdout.
#
# Publishing one multi-platform image for both CPUs takes docker buildx and
# a registry:
#
#   scripts/release.sh && scripts/image.sh --context dist/image
#   docker buildx build --platform linux/amd64,linux/arm64 \
#       -t REGISTRY/drainit:VERSION --push dist/image
#
# buildx sets TARGETARCH for each platform, and that picks the binary. The
# project's machines have neither (Docker 20.10 without buildx, and no
# registry), so that command has not been run here: the local build passes
# TARGETARCH itself, and tests/docker.rs checks that the context gives each
# platform its own binary.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "image: $*" >&2; exit 1; }

tag="" context=""
while [[ $# -gt 0 ]]; do
    case $1 in
        -t) [[ $# -ge 2 ]] || die "-t needs a NAME:TAG"; tag=$2; shift 2 ;;
        --context) [[ $# -ge 2 ]] || die "--context needs a directory"; context=$2; shift 2 ;;
        *) die "unknown argument '$1' (usage: scripts/image.sh [-t NAME:TAG] [--context DIR])" ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version = \"...\" line in Cargo.toml"
tag=${tag:-drainit:$version}
dist=${DIST_DIR:-dist}
[[ -f $dist/SHA256SUMS ]] || die "no $dist/SHA256SUMS: run scripts/release.sh first"
(cd "$dist" && sha256sum --check --quiet SHA256SUMS) >&2 || die "$dist does not match its SHA256SUMS"

# Docker's names for the CPUs (TARGETARCH) against the release's.
docker_arch() {
    case $1 in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        armv7) echo arm ;;
        *) return 1 ;;
    esac
}

ctx=${context:-$(mktemp -d)}
[[ -n $context ]] || trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx"
found=()
for bin in "$dist/drainit-$version-"*-linux-musl; do
    [[ -f $bin ]] || continue
    arch=${bin#"$dist/drainit-$version-"}
    arch=${arch%-linux-musl}
    install -m 0755 "$bin" "$ctx/drainit-$(docker_arch "$arch")"
    found+=("$arch")
done
[[ ${#found[@]} -gt 0 ]] || die "no drainit-$version-*-linux-musl in $dist: run scripts/release.sh first"
cat >"$ctx/Dockerfile" <<EOF
# drainit $version alone, for COPY --from=IMAGE /drainit /usr/local/bin/drainit.
# Written by scripts/image.sh next to drainit-amd64, drainit-arm64, ...;
# TARGETARCH (set by buildx per platform) picks one.
FROM scratch
ARG TARGETARCH
COPY drainit-\${TARGETARCH} /drainit
LABEL org.opencontainers.image.title="drainit" \\
      org.opencontainers.image.description="drainit alone: copy /drainit into your image" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.source="https://github.com/drainit/drainit" \\
      org.opencontainers.image.licenses="MIT"
ENTRYPOINT ["/drainit"]
CMD ["--version"]
EOF
if [[ -n $context ]]; then
    echo "image: build context for ${found[*]} in $context" >&2
    exit 0
fi

host=$(uname -m)
arch=$(docker_arch "$host") || die "no Docker name for this machine's CPU ($host)"
[[ -f $ctx/drainit-$arch ]] || die "no $host binary in $dist: run scripts/release.sh $host"
docker build -q --build-arg "TARGETARCH=$arch" -t "$tag" "$ctx" >&2
echo "$tag"
