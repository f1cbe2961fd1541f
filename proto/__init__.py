"""The leaf layer both ends of the LAN share (the repository's ``proto/``, installed as ``vnet.proto``).

- ``ether``: Ethernet constants (if_ether.h, if_packet.h) and MAC formatting;
- ``wire``: the node-switch messages, encoded and decoded in one place;
- ``control``: the control protocol (msgpack over ZeroMQ), server and clients;
- ``auth``: CURVE keys and the allowed-key list;
- ``capture``: capture filters, their limits and the capture buffer;
- ``bpf``: capture filters compiled by libpcap (ctypes over pcap_compile and bpf_filter);
- ``pcapfilter``: vnet's own matcher of a pcap-filter subset, where libpcap is missing;
- ``ratelimit``: net_ratelimit for logging offences.

Layers, leaf first: ``vnet.proto`` <- ``vnet.node`` and ``vnet.switch`` (which never import
each other) <- the front end (``vnet``: the CLI, the LANs, the pytest plugin). Nothing here
imports the node, the switch or the front end; tests/test_layers.py holds the code to it.
"""
