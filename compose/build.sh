#!/usr/bin/env bash
# compose/build.sh: build everything docker-compose.yml needs, on any host, registry or not.
#
#   vnet compose build               # the same, from anywhere vnet is installed
#   bash compose/build.sh            # then: docker compose up -d   (or: docker-compose up -d)
#
# It runs from the folder that holds docker-compose.yml and this compose/ folder: a source
# checkout of vnet, or a folder written by `vnet compose DIR`. It needs vnet installed for
# $PYTHON on this host: the image gets the same vnet version, from a wheel of it.
#
# 1. The base image. $VNET_BASE_IMAGE (default python:3.11-slim) when it is present or can be
#    pulled. Otherwise (no registry) a Debian bookworm base with python3 is made with
#    debootstrap and imported as $VNET_LOCAL_BASE (default vnet-base:bookworm), with the
#    network tools a kernel-stack node's programs use ($BASE_PACKAGES: iproute2, ping, arping,
#    tcpdump, iperf3, curl, libpcap). An existing one is reused when its label
#    com.vnet.base-packages lists the same packages, and made again otherwise (a base made by
#    an older build.sh, without the tools). Needs root (or sudo) and a Debian mirror
#    ($VNET_DEBIAN_MIRROR); installs debootstrap with apt-get when missing.
# 2. The wheelhouse compose/wheelhouse/: a wheel of the host's vnet (`python -m
#    vnet.compose.wheel`) and wheels of its dependencies for the base image's Python and
#    platform (asked of the image itself), fetched by pip on this host. The image installs
#    from it with `pip install --no-index`, since pip inside a container may not reach the
#    index.
# 3. The image $VNET_IMAGE (default vnet:latest) from compose/Dockerfile, with compose/ as
#    the build context.
#
# Everything it makes carries the label com.vnet.project=vnet:
#   docker image ls --filter label=com.vnet.project=vnet
# Idempotent: run it again after changing the code; it reuses the base image and rebuilds
# the wheelhouse and the image (Docker's layer cache makes that quick).
#
# Environment:
#   VNET_IMAGE          image to build                       (vnet:latest)
#   VNET_BASE_IMAGE     base image to prefer                  (python:3.11-slim)
#   VNET_LOCAL_BASE     name of the debootstrap base          (vnet-base:bookworm)
#   VNET_BUILD_CACHE    tag kept on the build stage           (vnet-build:cache)
#   VNET_DEBIAN_SUITE   Debian suite for it                   (bookworm: Python 3.11)
#   VNET_DEBIAN_MIRROR  Debian mirror                         (http://deb.debian.org/debian)
#   VNET_FORCE_LOCAL_BASE=1   use the debootstrap base even if the preferred one is available
#   PYTHON              the host's Python with vnet installed; its pip fetches the wheels (python3)
set -euo pipefail

LABEL_KEY=com.vnet.project
LABEL="$LABEL_KEY=vnet"
VNET_IMAGE=${VNET_IMAGE:-vnet:latest}
VNET_BASE_IMAGE=${VNET_BASE_IMAGE:-python:3.11-slim}
VNET_LOCAL_BASE=${VNET_LOCAL_BASE:-vnet-base:bookworm}
VNET_BUILD_CACHE=${VNET_BUILD_CACHE:-vnet-build:cache}
VNET_DEBIAN_SUITE=${VNET_DEBIAN_SUITE:-bookworm}
VNET_DEBIAN_MIRROR=${VNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
VNET_FORCE_LOCAL_BASE=${VNET_FORCE_LOCAL_BASE:-0}
PYTHON=${PYTHON:-python3}
# What the debootstrap base holds besides minbase; compose/Dockerfile installs the same tools
# with apt-get on a base that lacks them (python:3.11-slim). Recorded in the base's label
# com.vnet.base-packages: a base whose label differs is made again.
BASE_PACKAGES=python3,python3-venv,iproute2,iputils-ping,arping,tcpdump,iperf3,curl,libpcap0.8
BASE_PACKAGES_LABEL=com.vnet.base-packages

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELHOUSE="$ROOT/compose/wheelhouse"
START=$SECONDS

say() { printf '==> %s\n' "$*" >&2; }
run() { printf '    $ %s\n' "$*" >&2; "$@"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running? are you in the docker group?)"

# -- 1. the base image ----------------------------------------------------------------------

make_local_base() {
    local name=$1 dir
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    dir=$(mktemp -d /var/tmp/vnet-rootfs.XXXXXX)
    # shellcheck disable=SC2064  # expand $dir now
    trap "as_root rm -rf '$dir'" EXIT
    say "debootstrap $VNET_DEBIAN_SUITE (minbase + $BASE_PACKAGES) into $dir (about a minute)"
    run as_root debootstrap --variant=minbase --include="$BASE_PACKAGES" \
        "$VNET_DEBIAN_SUITE" "$dir" "$VNET_DEBIAN_MIRROR" >/dev/null
    say "trimming the rootfs (apt caches and lists, docs, man pages, locales)"
    as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
        "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
        "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.cache
    say "importing the rootfs as $name"
    as_root tar -C "$dir" --numeric-owner --xattrs --xattrs-include=security.capability -c . | docker import \
        --change "LABEL $LABEL" \
        --change "LABEL $BASE_PACKAGES_LABEL=$BASE_PACKAGES" \
        --change "LABEL org.opencontainers.image.description=\"Debian $VNET_DEBIAN_SUITE minbase with python3 and network tools, made by vnet compose/build.sh\"" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$name" >/dev/null
    as_root rm -rf "$dir"
    trap - EXIT
}

say "base image"
BASE=""
if [ "$VNET_FORCE_LOCAL_BASE" != 1 ]; then
    if have_image "$VNET_BASE_IMAGE"; then
        BASE=$VNET_BASE_IMAGE
        say "using $BASE (present locally)"
    elif docker pull -q "$VNET_BASE_IMAGE" >/dev/null 2>&1; then
        BASE=$VNET_BASE_IMAGE
        say "using $BASE (pulled)"
    else
        say "$VNET_BASE_IMAGE is not here and cannot be pulled: using a local Debian base instead"
    fi
fi
if [ -z "$BASE" ]; then
    BASE=$VNET_LOCAL_BASE
    base_packages=$(docker image inspect -f "{{index .Config.Labels \"$BASE_PACKAGES_LABEL\"}}" "$BASE" 2>/dev/null || true)
    if [ "$base_packages" = "$BASE_PACKAGES" ]; then
        say "using $BASE (made earlier; remove it with 'docker rmi $BASE' to make it again)"
    else
        if have_image "$BASE"; then
            say "$BASE was made without the packages this build.sh puts in it (${base_packages:-no $BASE_PACKAGES_LABEL label}): making it again"
        fi
        make_local_base "$BASE"
        say "made $BASE ($(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%d MB", $1/1e6}'))"
    fi
fi

# -- 2. the wheelhouse ----------------------------------------------------------------------

say "asking $BASE for its Python and platform"
read -r PYVER PYABI ARCH GLIBC < <(docker run --rm --network none --label "$LABEL" --entrypoint python3 "$BASE" -c '
import platform, sys
v = sys.version_info
libc = platform.libc_ver()
print(f"{v[0]}.{v[1]}", f"cp{v[0]}{v[1]}", platform.machine(), libc[1] if libc[0] == "glibc" else "0")
') || die "$BASE has no working python3"
say "$BASE: Python $PYVER ($PYABI), $ARCH, glibc $GLIBC"
[ "${GLIBC%%.*}" = 2 ] || die "$BASE is not a glibc system: the manylinux wheels would not fit"

# manylinux tags the base's glibc accepts: manylinux2014 and manylinux_2_17 .. manylinux_2_<its minor>
PLATFORMS=(--platform "manylinux2014_$ARCH")
glibc_minor=${GLIBC#*.}; glibc_minor=${glibc_minor%%.*}
for ((m = 17; m <= glibc_minor; m++)); do PLATFORMS+=(--platform "manylinux_2_${m}_$ARCH"); done

# -P: the current folder stays off sys.path (a checkout's vnet.egg-info there is not the installed vnet)
"$PYTHON" -P -c 'import vnet.compose.wheel' 2>/dev/null \
    || die "$PYTHON cannot import vnet: install it first (pip install vnet, or pip install -e . in a checkout), or set PYTHON"
# vnet's own dependencies, from its installed metadata
mapfile -t REQS < <("$PYTHON" -P -m vnet.compose.wheel --requirements)
say "wheelhouse $WHEELHOUSE: ${REQS[*]}"
tmp_wh=$(mktemp -d "$ROOT/compose/.wheelhouse.XXXXXX")
chmod 0755 "$tmp_wh"
# shellcheck disable=SC2064
trap "rm -rf '$tmp_wh'" EXIT
run "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version "$PYVER" --implementation cp --abi "$PYABI" "${PLATFORMS[@]}" \
    -d "$tmp_wh" "${REQS[@]}" \
    || die "pip could not fetch the wheels (is the package index reachable from this host?)"
run "$PYTHON" -P -m vnet.compose.wheel "$tmp_wh" >/dev/null || die "could not make a wheel of this host's vnet"
rm -rf "$WHEELHOUSE"
mv "$tmp_wh" "$WHEELHOUSE"
trap - EXIT
find "$WHEELHOUSE" -name "*.whl" -printf "    %f\n" | sort >&2

# -- 3. the image ---------------------------------------------------------------------------

say "building $VNET_IMAGE on $BASE"
build_start=$SECONDS
build_args=(--file "$ROOT/compose/Dockerfile" --build-arg "BASE_IMAGE=$BASE" --build-arg PIP_OFFLINE=1
            --label "$LABEL")
# The build stage gets a tag of its own so that it stays as the next build's layer cache while
# the older, untagged leftovers of earlier builds are pruned (they carry the label too).
run docker build --target build --tag "$VNET_BUILD_CACHE" "${build_args[@]}" "$ROOT/compose"
run docker build --tag "$VNET_IMAGE" "${build_args[@]}" "$ROOT/compose"
say "removing untagged vnet images left by earlier builds"
docker image prune --force --filter "label=$LABEL" | tail -n 1 | sed 's/^/    /' >&2

size=$(docker image inspect -f '{{.Size}}' "$VNET_IMAGE" | awk '{printf "%d MB", $1/1e6}')
say "built $VNET_IMAGE ($size) in $((SECONDS - build_start)) s; all done in $((SECONDS - START)) s"
if [ "$BASE" != python:3.11-slim ] && [ "${VNET_BASE_IMAGE}" != "$BASE" ]; then
    cat >&2 <<EOF

The image is built on $BASE. To let compose rebuild it (docker-compose up --build) here,
give compose the same base:
    export VNET_BASE_IMAGE=$BASE
EOF
fi
cat >&2 <<EOF

Start the LAN:   docker compose up -d      (Compose v1: docker-compose up -d)
EOF
