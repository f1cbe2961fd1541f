"""DHCP counters, one set per interface shared by its client and its server (the
``ethtool -S`` of the DHCP layer)."""

from __future__ import annotations

from ..common import Counters
from .codec import MsgType


class DhcpCounters(Counters):
    """<type>s_sent / <type>s_received per message type, for the client and the server of
    this stack together. malformed: not a DHCP message we can use, also counted by reason
    in malformed_<reason> (the decode reasons, and bad_fields: a well-formed message
    missing what its type requires, such as an OFFER without a server identifier).
    <type>s_sent counts messages handed to IP (dropped there, out_discards, if the link is
    down).
    not_for_us: server replies for another client (they are broadcast). ignored: valid
    messages that do not fit (wrong xid or state, another server's transaction, a relayed
    message, a request the server stays silent about, the server address not usable yet).
    pool_exhausted: DISCOVERs left unanswered for want of an address. retransmits: client
    messages sent again after a timeout. leases_skipped: saved lease entries the server
    could not restore (bad, outside the pool, or an address claimed twice)."""

    __slots__ = (
        "discovers_sent", "discovers_received", "offers_sent", "offers_received",
        "requests_sent", "requests_received", "acks_sent", "acks_received", "naks_sent",
        "naks_received", "declines_sent", "declines_received", "releases_sent",
        "releases_received", "informs_sent", "informs_received", "retransmits",
        "pool_exhausted", "leases_skipped", "not_for_us", "ignored", "malformed",
        "malformed_truncated", "malformed_bad_cookie", "malformed_bad_op", "malformed_bad_hw",
        "malformed_bad_options", "malformed_not_dhcp", "malformed_bad_fields",
    )

    def count(self, mtype: MsgType, direction: str) -> None:
        name = f"{mtype.name.lower()}s_{direction}"
        setattr(self, name, getattr(self, name) + 1)

    def bad(self, reason: str) -> None:
        self.malformed += 1
        name = f"malformed_{reason}"
        setattr(self, name, getattr(self, name) + 1)
