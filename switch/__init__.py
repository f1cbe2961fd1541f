"""vnet switch: a learning Ethernet switch whose ports are ZeroMQ peers.

- wire.py    the node <-> switch protocol (sans-I/O codec), shared with the node's link.
- fdb.py     the forwarding database, keyed by (vlan, mac), with an injected clock.
- core.py    the sans-I/O switch: ports, forwarding, counters, liveness, admin state.
- impair.py  netem-like impairments per port and direction (loss, delay, rate, ...), sans-I/O.
- server.py  the I/O shell: ZeroMQ ROUTER data endpoint and the control endpoint.
"""
