"""The host stack: ARP, IPv4 (routing, forwarding), ICMP and UDP on Ethernet interfaces, sans-I/O.

Frames go in with ``now``, frames to transmit come out as lists of bytes, and what the
application waits for comes out as events (``HostStack.next_events()``). Modules, bottom up:

- common.py  StackError (caller mistakes), NeighStateError (bugs), the Counters base
- events.py  the event dataclasses
- ether.py   Ethernet header codec, MAC helpers, the shared interface state (Netdev)
- ipv4.py    IPv4 header codec and checksum, the address table and on-link routing, IP layer
- arp.py     ARP codec, the neighbour table (Linux NUD states), DAD (RFC 5227)
- icmp.py    echo, destination unreachable, ping(8) statistics and formatting
- udp.py     UDP codec (pseudo-header checksum) and the port table
- dhcp/      DHCP: BOOTP/DHCP codec, DhcpServer (leases), DhcpClient (RFC 2131 states)
- host.py    HostStack: the composition and the dispatch tables by ethertype / IP protocol
- route.py   the routing table (FIB): connected, static and boot routes, longest-prefix match
- indev.py   InDevice: one device's IPv4 state (Netdev, addresses, ARP), an in_device
- testing.py Hub: a zero-latency Ethernet hub wiring HostStacks together for tests; Net: several
             segments, for stacks with several devices (routers)
"""

from .arp import ARP_FMT, ArpParams, Nud
from .common import NeighStateError, StackError
from .dhcp import DhcpParams, DhcpState
from .ether import mac_str, parse_mac
from .events import (
    AddressConflict, AddressReady, ArpReply, DestUnreachable, DhcpBound, DhcpLeasesChanged,
    DhcpLost, EchoReply, Event, NeighFailed, NeighResolved, TimeExceeded, UdpDatagram,
)
from .host import HostStack
from .icmp import PingStats, format_echo_reply, format_rtt, format_unreachable
from .ipv4 import ip_str, parse_ip

__all__ = [
    "ARP_FMT", "AddressConflict", "AddressReady", "ArpParams", "ArpReply", "DestUnreachable",
    "DhcpBound", "DhcpLeasesChanged", "DhcpLost", "DhcpParams", "DhcpState", "EchoReply",
    "Event", "HostStack", "NeighFailed", "NeighResolved", "NeighStateError", "Nud",
    "PingStats", "StackError", "TimeExceeded", "UdpDatagram", "format_echo_reply", "format_rtt",
    "format_unreachable", "ip_str", "mac_str", "parse_ip", "parse_mac",
]
