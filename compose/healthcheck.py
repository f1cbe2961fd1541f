"""The image's HEALTHCHECK, for both roles: exit 0 when healthy, 1 when not.

- node   ($VNET_ROLE=node, or $VNET_NODE set): the node's control endpoint answers ``health``,
  reports carrier (it is attached to the switch), and every address has passed duplicate
  address detection (state "ok": not "tentative", not "conflict"), so a healthy node can
  ping at once.
- switch ($VNET_ROLE=switch): the switch's control endpoint answers ``ping``
  ($VNET_HEALTH_ENDPOINT, default tcp://127.0.0.1:5541).

It prints one line, which ``docker inspect`` shows under State.Health.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from vnet.control import ControlClient, node_control_endpoint

    role = os.environ.get("VNET_ROLE") or ("node" if os.environ.get("VNET_NODE") else "switch")
    try:
        if role == "node":
            name = os.environ.get("VNET_NODE")
            if not name:
                print("unhealthy: VNET_NODE is not set")
                return 1
            endpoint = os.environ.get("VNET_HEALTH_ENDPOINT") or node_control_endpoint(name)
            with ControlClient(endpoint, timeout=2) as client:
                health = client.call("health")
            if not health.get("carrier"):
                print(f"unhealthy: node {name} has no carrier (attached={health.get('attached')})")
                return 1
            addrs = [f"{a.get('address')}/{a.get('prefixlen')} {a.get('state')}" for a in health.get("addresses") or []]
            if any(not a.endswith(" ok") for a in addrs):  # tentative (DAD running) or conflict
                print(f"unhealthy: node {name} carrier up, addresses not ready: {', '.join(addrs)}")
                return 1
            print(f"healthy: node {name} carrier up, addresses {', '.join(addrs) or 'none'}")
            return 0
        if role == "switch":
            endpoint = os.environ.get("VNET_HEALTH_ENDPOINT") or "tcp://127.0.0.1:5541"
            with ControlClient(endpoint, timeout=2) as client:
                pong = client.call("ping")
            print(f"healthy: switch answers, {pong.get('ports')} ports")
            return 0
        print(f"unhealthy: unknown VNET_ROLE {role!r} (node or switch)")
        return 1
    except Exception as exc:  # a timeout, a refused request, a missing socket: all unhealthy
        print(f"unhealthy: {exc.__class__.__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
