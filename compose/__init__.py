"""The container image and compose files, installed with vnet (the repository's ``compose/``).

``docker-compose.yml`` (a switch, three nodes, a DHCP server node and a scalable node
service), ``curve.yml`` (its CURVE override), ``swarm.yml`` and ``swarm-curve.yml`` (the
same LAN as a Docker Swarm stack, docs/multi-host.md), the ``Dockerfile`` of the one image both roles
run, ``build.sh`` (the offline image build) and ``install-vnet.sh`` (the image's install
step) ship inside the package, so a user needs no checkout of vnet to run a Docker LAN:

- ``vnet.compose.tree`` writes them out as a project folder (``vnet compose DIR``);
- ``vnet.compose.wheel`` makes a wheel of the installed vnet, which the image installs, so
  the containers run the same vnet as the host;
- ``vnet.compose.tree.build_image`` runs ``build.sh`` in such a folder (``vnet compose
  --build``, and the ``docker_lan`` fixture once per session).
"""
