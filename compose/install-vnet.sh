#!/bin/sh
# Used by compose/Dockerfile's build stage: install vnet and its dependencies into the venv
# /opt/vnet. vnet itself is the vnet-*.whl in the wheelhouse (the host's vnet, put there by
# `vnet compose build`, compose/build.sh or `vnet compose DIR`); its dependencies come from
# the wheelhouse or the package index:
#
#   PIP_OFFLINE=auto  the wheelhouse when it holds them (falling back to the index when they
#                     do not fit this base), else the index      (the default)
#   PIP_OFFLINE=1     only the wheelhouse (pip --no-index); fail without it
#   PIP_OFFLINE=0     only the index (PIP_INDEX_URL / PIP_TRUSTED_HOST may name a mirror)
set -eu

WHEELHOUSE=${1:-/tmp/compose/wheelhouse}
VENV=${2:-/opt/vnet}
PIP="$VENV/bin/pip"

VNET_WHEEL=$(ls "$WHEELHOUSE"/vnet-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$VNET_WHEEL" ]; then
    echo "vnet build: $WHEELHOUSE holds no vnet wheel: run 'vnet compose build' (or bash compose/build.sh)," >&2
    echo "            or write this folder out again with 'vnet compose DIR'" >&2
    exit 1
fi
deps=$(find "$WHEELHOUSE" -name "*.whl" ! -name "vnet-*.whl" | wc -l)

offline() {
    echo "vnet build: $(basename "$VNET_WHEEL") and $deps dependency wheels from the wheelhouse, no index"
    "$PIP" install --no-index --find-links "$WHEELHOUSE" "$VNET_WHEEL"
}

online() {
    echo "vnet build: $(basename "$VNET_WHEEL"), dependencies from the package index ${PIP_INDEX_URL:-}"
    "$PIP" install --find-links "$WHEELHOUSE" "$VNET_WHEEL"
}

case "${PIP_OFFLINE:-auto}" in
    1 | yes | true)
        offline ;;
    0 | no | false)
        online ;;
    auto)
        if [ "$deps" -gt 0 ]; then
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
"$VENV/bin/python" -c "import vnet.cli, vnet.node.daemon, vnet.switch.server, zmq, msgpack, scapy; print('vnet build: ok, vnet', vnet.__version__, 'pyzmq', zmq.__version__, 'msgpack', msgpack.version, 'scapy', scapy.VERSION)"
