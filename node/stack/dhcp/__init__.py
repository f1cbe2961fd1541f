"""DHCP (RFC 2131, options RFC 2132): the BOOTP/DHCP codec, a server and a client, sans-I/O.

One module per concern, and the layer that binds them to the stack:

- codec.py: ``DhcpMessage`` (a frozen dataclass), ``encode_dhcp``/``decode_dhcp`` and the
  option table ``OPTIONS`` (code -> name and value kind: declared, not coded). Decoding
  raises ``DhcpDecodeError(reason)``; the layer counts it as ``malformed_<reason>``.
- counters.py: ``DhcpCounters``, one set per interface.
- leases.py: ``Lease``, the server's binding of a client identifier to an address.
- pool.py: ``DhcpPool``, the server's subnet and range, checked before anything starts
  (``DhcpConfigError`` says what to change).
- server.py: ``DhcpServer``, pure, message in -> (reply, destination) out. Leases are keyed
  by client identifier (option 61, else hardware type 1 + chaddr) and survive expiry as a
  memory of who had which address; ``leases_to_dict()`` / ``leases=`` persist them.
- client.py: ``DhcpClient``, the RFC 2131 client state machine (plus CHECKING: the ACKed
  address is on the interface and RFC 5227 DAD from arp.py runs before we call it bound).
  It talks to the stack through the ``Dhcp`` layer (send a message, add/remove/inspect an
  address).
- layer.py: ``Dhcp``, the layer on one interface (like ``Udp``/``Icmp``): UDP port 67
  (server) and 68 (client) handlers, decode and count, send from 0.0.0.0 or our address,
  timers.

Time is a parameter everywhere; nothing here reads a clock or touches a socket.

Addressing (RFC 2131 4.1). The client always sets the broadcast flag while it has no
address (ciaddr 0), so every server reply to it is broadcast: Ethernet ff:ff:ff:ff:ff:ff,
IP 255.255.255.255, 67 -> 68. Once bound (RENEWING, RELEASE) it sends from its address with
ciaddr set, unicast to the server (resolved by ARP); REBINDING and DECLINE are broadcast.
The server unicasts an ACK to ``ciaddr`` when it is set (renewals, INFORM; resolved by ARP),
and broadcasts everything else, NAKs included. Relay agents (giaddr) are not supported: a
relayed message is ignored (counted).
"""

from .client import DHCP_TRANSITIONS, DhcpClient, DhcpParams, DhcpState, DhcpStateError
from .codec import (
    BOOTP_FMT, BOOTP_HDR, BOOTP_MIN_LEN, BOOTREPLY, BOOTREQUEST, BROADCAST_FLAG,
    CLIENT_PARAM_REQ, DECODE_REASONS, DHCP_CLIENT_PORT, DHCP_MIN_LEN, DHCP_SERVER_PORT,
    HTYPE_ETHER, INFINITE_LEASE, MAGIC_COOKIE, OPTION_CODES, OPTIONS, DhcpDecodeError,
    DhcpMessage, MsgType,
    client_id_option, client_key, decode_dhcp, dhcp_options, encode_dhcp, prefix_from_mask,
)
from .counters import DhcpCounters
from .layer import Dhcp
from .leases import Lease
from .pool import DhcpConfigError, DhcpPool
from .server import DhcpServer

__all__ = [
    "BOOTP_FMT", "BOOTP_HDR", "BOOTP_MIN_LEN", "BOOTREPLY", "BOOTREQUEST", "BROADCAST_FLAG",
    "CLIENT_PARAM_REQ", "DECODE_REASONS", "DHCP_CLIENT_PORT", "DHCP_MIN_LEN", "DHCP_SERVER_PORT",
    "DHCP_TRANSITIONS", "Dhcp", "DhcpClient", "DhcpConfigError", "DhcpCounters",
    "DhcpDecodeError", "DhcpMessage", "DhcpParams", "DhcpPool", "DhcpServer", "DhcpState",
    "DhcpStateError", "HTYPE_ETHER", "INFINITE_LEASE", "Lease", "MAGIC_COOKIE", "MsgType",
    "OPTIONS", "OPTION_CODES", "client_id_option", "client_key", "decode_dhcp",
    "dhcp_options", "encode_dhcp", "prefix_from_mask",
]
