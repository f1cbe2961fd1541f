#!/bin/sh
# Used by compose/Dockerfile's build stage: install vnet and its dependencies into the venv
# /opt/vnet. vnet is always built from the source tree /src (never a stale wheel); the
# dependencies (and the build backend) come from the wheelhouse or the package index:
#
#   PIP_OFFLINE=auto  the wheelhouse when it holds wheels (falling back to the index when
#                     they do not fit this base), else the index      (the default)
#   PIP_OFFLINE=1     only the wheelhouse (pip --no-index); fail without it
#   PIP_OFFLINE=0     only the index (PIP_INDEX_URL / PIP_TRUSTED_HOST may name a mirror)
set -eu

WHEELHOUSE=${1:-/tmp/compose/wheelhouse}
SRC=${2:-/src}
VENV=${3:-/opt/vnet}
PIP="$VENV/bin/pip"
DIST=$(mktemp -d)

have_wheels=no
if ls "$WHEELHOUSE"/*.whl >/dev/null 2>&1; then have_wheels=yes; fi

offline() {
    echo "vnet build: from the wheelhouse ($(find "$WHEELHOUSE" -name "*.whl" | wc -l) wheels), no index"
    rm -rf "${DIST:?}"/*
    "$PIP" wheel --no-deps --no-index --find-links "$WHEELHOUSE" -w "$DIST" "$SRC" &&
        "$PIP" install --no-index --find-links "$WHEELHOUSE" "$DIST"/vnet-*.whl
}

online() {
    echo "vnet build: from the package index ${PIP_INDEX_URL:-}"
    rm -rf "${DIST:?}"/*
    "$PIP" wheel --no-deps -w "$DIST" "$SRC" &&
        "$PIP" install "$DIST"/vnet-*.whl
}

case "${PIP_OFFLINE:-auto}" in
    1 | yes | true)
        if [ "$have_wheels" != yes ]; then
            echo "vnet build: PIP_OFFLINE=1 but $WHEELHOUSE holds no wheels (run compose/build.sh)" >&2
            exit 1
        fi
        offline ;;
    0 | no | false)
        online ;;
    auto)
        if [ "$have_wheels" = yes ]; then
            offline || {
                echo "vnet build: the wheelhouse does not fit this base; trying the package index" >&2
                online
            }
        else
            online
        fi ;;
    *)
        echo "vnet build: PIP_OFFLINE must be auto, 1 or 0, not '$PIP_OFFLINE'" >&2
        exit 1 ;;
esac

# The runtime needs none of the packaging tools, nor caches.
"$PIP" uninstall --yes --quiet pip setuptools wheel >/dev/null 2>&1 || true
find "$VENV" -depth -name __pycache__ -type d -exec rm -rf {} +
rm -rf "$DIST"
"$VENV/bin/python" -c "import vnet.cli, node.daemon, switch.server, zmq, msgpack, scapy; print('vnet build: ok, pyzmq', zmq.__version__, 'msgpack', msgpack.version, 'scapy', scapy.VERSION)"
