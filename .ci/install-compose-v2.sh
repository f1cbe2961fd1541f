#!/usr/bin/env bash
# Install Docker Compose v2 (the `docker compose` CLI plugin) from Debian's packages where it is
# missing. Debian bookworm ships only Compose v1 (`docker-compose` 1.29); trixie's
# docker-compose package is v2 and a static binary, so its plugin is taken from there without
# adding trixie to the system's sources: a private apt state in a temporary folder, one
# `apt-get download`, and the plugin unpacked into /usr/local/lib/docker/cli-plugins.
set -euo pipefail

if docker compose version >/dev/null 2>&1; then
    docker compose version
    exit 0
fi
MIRROR=${VNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/state/lists/partial" "$tmp/cache/archives/partial"
echo "deb $MIRROR trixie main" > "$tmp/sources.list"
opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State=$tmp/state" -o "Dir::Cache=$tmp/cache" -o "APT::Get::List-Cleanup=0"
      -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" update -qq
(cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
deb=$(ls "$tmp"/docker-compose_*.deb)
mkdir -p /usr/local/lib/docker/cli-plugins
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/libexec/docker/cli-plugins/docker-compose \
    > /usr/local/lib/docker/cli-plugins/docker-compose
chmod 0755 /usr/local/lib/docker/cli-plugins/docker-compose
docker compose version
