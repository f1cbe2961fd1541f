"""The compose LAN's Prometheus endpoints: every daemon serves /metrics on port 9100 of its
container's address on the LAN's Docker network, reachable from another container there (a
Prometheus joined to the network, compose/prometheus.yml) and not published on the host."""

from __future__ import annotations

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vnet.docker_lan import project_containers

pytestmark = pytest.mark.docker


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def scrape(client, container: str, host: str) -> dict:
    """GET http://HOST:9100/metrics from inside ``container``, on the LAN's Docker network."""
    code, out = client.containers.get(container).exec_run(["python3", "-c", FETCH, f"http://{host}:9100/metrics"])
    assert code == 0, out.decode(errors="replace")
    return samples(out.decode())


async def test_metrics_on_the_lan_network_and_not_published(docker_lan):
    node1, node2 = docker_lan.node("node1"), docker_lan.node("node2")
    assert (await node1.ping(node2.ip, count=2)).ok
    client = docker.from_env()
    try:
        containers = {c["service"]: c["name"] for c in project_containers(client, docker_lan.project)}
        switch = scrape(client, containers["node2"], "switch")
        assert switch[("vnet_switch_port_rx_packets_total", (("port", "node1"),))] >= 2
        node = scrape(client, containers["node2"], "node1")
        assert node[("node_network_transmit_packets_total", (("device", "vnet0"),))] >= 2
        assert node[("node_network_up", (("device", "vnet0"),))] == 1
        for c in project_containers(client, docker_lan.project):
            ports = client.api.inspect_container(c["name"])["NetworkSettings"]["Ports"] or {}
            assert not ports.get("9100/tcp"), (c["name"], ports)  # no host binding
    finally:
        client.close()
