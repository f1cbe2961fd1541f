"""vnet node: the vnet0 NIC driver model, the host stack on top of it, and the node daemon.

Layers, bottom up (each a module of its own):

- link.py      the cable: a Link moves batches of Ethernet frames to the far end (in-memory
               back-to-back wire for tests, ZeroMQ to the switch in the daemon).
- the driver model (skbuff, netdevice, napi, vnic, ...): a userspace model of a Linux NIC
               driver and the core networking calls it is written against.
- stack/       the host stack (ARP neighbour table, IPv4, ICMP echo, UDP), sans-I/O.
- daemon.py    the only layer that owns sockets, tasks and the clock.
"""
