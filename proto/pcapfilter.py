"""vnet's own matcher of a pcap-filter(7) subset: the fallback where libpcap is not installed.

Within its subset it means what libpcap means (a test compares the two frame by frame on
random frames and expressions); outside it, it refuses the expression with a FilterError that
says libpcap is needed, rather than guess. The subset::

    primitive := [src|dst] host A.B.C.D | ether [src|dst] host MAC | ether broadcast
               | ether proto N (N > 1500) | ip proto N | arp | ip | ip6 | icmp | icmp6
               | udp | tcp | vlan [ID] | [src|dst] port N
    expr      := primitive | not expr | expr and expr | expr or expr | ( expr )

libpcap's meaning, kept here: ``ip``, ``arp``, ``udp``... look at the Ethernet type field, not
through a VLAN tag; each ``vlan`` moves the offsets of every primitive after it (in the text)
by the 4 bytes of a tag (so ``vlan and udp`` is UDP inside one tag); ``host`` is IPv4, ARP or
RARP; ``udp``/``tcp``/``icmp6`` are IPv4's protocol field or IPv6's next header (also after a
fragment header), ``icmp`` IPv4 only; ``port`` is TCP, UDP or SCTP over IPv4 (first fragments
only) or IPv6 (no extension header). As in BPF, reading past the end of a short frame rejects
the frame outright, whatever ``not`` or ``or`` surround that read (``Reject``).

``and`` and ``or`` have equal precedence and associate to the left, as in pcap-filter(7)
(``a or b and c`` is ``(a or b) and c``). A chain of them is one loop, so a filter of thousands
of terms runs without recursion; nesting (parentheses, ``not``) deeper than MAX_DEPTH is
refused.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from vnet.proto.ether import ETH_P_8021Q, ETH_P_ARP, ETH_P_IP

ETH_P_IPV6 = 0x86DD
ETH_P_RARP = 0x8035
ETH_P_8021AD = 0x88A8
ETH_P_QINQ1 = 0x9100  # the pre-standard QinQ type libpcap's vlan also accepts
VLAN_TPIDS = (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1)
IPPROTO = {"icmp": 1, "tcp": 6, "udp": 17}
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
ETHERMTU = 1500
MAX_DEPTH = 100  # nested parentheses and nots

Predicate = Callable[[bytes], bool]


class FilterError(ValueError):
    """A capture filter that does not compile, with the offending word and what was expected."""


class Reject(Exception):
    """A read past the end of the frame: BPF's "return 0" from the middle of the program."""


def _u8(f: bytes, off: int) -> int:
    if off >= len(f):
        raise Reject
    return f[off]


def _u16(f: bytes, off: int) -> int:
    if off + 2 > len(f):
        raise Reject
    return (f[off] << 8) | f[off + 1]


def _bytes(f: bytes, off: int, n: int) -> bytes:
    if off + n > len(f):
        raise Reject
    return f[off:off + n]


def compile_python(expr: str | None) -> Predicate:
    """Compile a filter of the subset; an empty one accepts everything. Raises FilterError."""
    tokens = (expr or "").replace("(", " ( ").replace(")", " ) ").split()
    if not tokens:
        return lambda frame, wirelen=None: True
    parser = _Parser(tokens)
    pred = parser.expr(0)
    if parser.pos != len(tokens):
        raise FilterError(f"capture filter: unexpected {tokens[parser.pos]!r} at word {parser.pos + 1}")

    def match(frame: bytes, wirelen: int | None = None) -> bool:  # wirelen: as BpfProgram's, unused
        try:
            return pred(frame)
        except Reject:
            return False
    return match


def _chain(first: Predicate, rest: list[tuple[bool, Predicate]]) -> Predicate:
    """``first op p op p ...`` left to right, as pcap-filter(7): ``and`` and ``or`` bind
    equally and associate to the left; each skips its right side once the left decides it.
    ``rest`` holds (is_and, p); a loop, not nested closures, so its length costs no stack."""
    if not rest:
        return first

    def match(f: bytes) -> bool:
        result = first(f)
        for is_and, p in rest:
            if result == is_and:  # True and p, False or p: p decides
                result = p(f)
        return result
    return match


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.shift = 0  # bytes of VLAN tags the primitives parsed so far look past

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str = "a word") -> str:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"capture filter: ends where {what} was expected")
        self.pos += 1
        return tok

    def expr(self, depth: int) -> Predicate:
        first = self.factor(depth)
        rest = []
        while self.peek() in ("and", "&&", "or", "||"):
            is_and = self.take() in ("and", "&&")
            rest.append((is_and, self.factor(depth)))
        return _chain(first, rest)

    def factor(self, depth: int) -> Predicate:
        if depth > MAX_DEPTH:
            raise FilterError(f"capture filter: nested deeper than {MAX_DEPTH} levels of parentheses and not")
        tok = self.take("a filter primitive")
        if tok in ("not", "!"):
            inner = self.factor(depth + 1)
            return lambda f: not inner(f)
        if tok == "(":
            inner = self.expr(depth + 1)
            if self.take("')'") != ")":
                raise FilterError("capture filter: missing ')'")
            return inner
        direction = None
        if tok in ("src", "dst"):
            direction, tok = tok, self.take("host or port after " + tok)
        if tok == "host":
            return self._host(direction, self.take("an IPv4 address after host"))
        if tok == "port":
            return self._port(direction, self.take("a port number after port"))
        if direction is not None:
            raise FilterError(f"capture filter: {direction} must be followed by host or port, not {tok!r}")
        lt = 12 + self.shift  # the type field, moved by each vlan before this primitive
        if tok == "ether":
            return self._ether(lt)
        if tok == "vlan":
            return self._vlan(lt)
        if tok == "ip" and self.peek() == "proto":
            self.take()
            return self._ip_proto(lt, self._number(self.take("a protocol number after ip proto"), 255, "ip proto"))
        if tok in IPPROTO:
            proto = IPPROTO[tok]
            if tok == "icmp":
                return self._ip_proto(lt, proto)
            v4, v6 = self._ip_proto(lt, proto), self._ip6_proto(lt, proto)
            return lambda f: v4(f) or v6(f)
        if tok == "icmp6":
            return self._ip6_proto(lt, IPPROTO_ICMPV6)
        types = {"ip": ETH_P_IP, "ip6": ETH_P_IPV6, "arp": ETH_P_ARP}
        if tok in types:
            etype = types[tok]
            return lambda f: _u16(f, lt) == etype
        raise FilterError(
            f"capture filter: {tok!r} needs libpcap (not installed here); without it vnet understands "
            "host, port, ether host, ether broadcast, ether proto, ip proto, arp, ip, ip6, icmp, icmp6, "
            "udp, tcp, vlan, and, or, not")

    @staticmethod
    def _number(text: str, top: int, what: str) -> int:
        try:
            n = int(text, 0)
        except ValueError:
            n = -1
        if not 0 <= n <= top:
            raise FilterError(f"capture filter: {what} {text!r} is not a number from 0 to {top}")
        return n

    def _vlan(self, lt: int) -> Predicate:
        vid = None
        if self.peek() is not None and self.peek()[:1].isdigit():
            vid = self._number(self.take(), 4095, "vlan")
        self.shift += 4

        def match(f: bytes) -> bool:
            if _u16(f, lt) not in VLAN_TPIDS:
                return False
            return vid is None or (_u16(f, lt + 2) & 0x0FFF) == vid
        return match

    @staticmethod
    def _ip_proto(lt: int, proto: int) -> Predicate:
        l3 = lt + 2
        return lambda f: _u16(f, lt) == ETH_P_IP and _u8(f, l3 + 9) == proto

    @staticmethod
    def _ip6_proto(lt: int, proto: int) -> Predicate:
        l3 = lt + 2

        def match(f: bytes) -> bool:
            if _u16(f, lt) != ETH_P_IPV6:
                return False
            nh = _u8(f, l3 + 6)
            return nh == proto or (nh == IPPROTO_FRAGMENT and _u8(f, l3 + 40) == proto)
        return match

    def _host(self, direction: str | None, text: str) -> Predicate:
        try:
            ip = ipaddress.IPv4Address(text).packed
        except ValueError:
            raise FilterError(f"capture filter: {text!r} is not an IPv4 address (IPv6 hosts need libpcap)") from None
        lt = 12 + self.shift
        l3 = lt + 2
        src, dst = direction != "dst", direction != "src"

        def match(f: bytes) -> bool:
            etype = _u16(f, lt)
            if etype == ETH_P_IP:
                s, d = l3 + 12, l3 + 16
            elif etype in (ETH_P_ARP, ETH_P_RARP):
                s, d = l3 + 14, l3 + 24
            else:
                return False
            return (src and _bytes(f, s, 4) == ip) or (dst and _bytes(f, d, 4) == ip)
        return match

    def _port(self, direction: str | None, text: str) -> Predicate:
        port = self._number(text, 65535, "port") if text.isdigit() else -1
        if port < 0:
            raise FilterError(f"capture filter: port {text!r} is not a number from 0 to 65535 (names need libpcap)")
        lt = 12 + self.shift
        l3 = lt + 2
        src, dst = direction != "dst", direction != "src"
        protos = (6, 17, IPPROTO_SCTP)

        def ports(f: bytes, l4: int) -> bool:
            return (src and _u16(f, l4) == port) or (dst and _u16(f, l4 + 2) == port)

        def match(f: bytes) -> bool:
            etype = _u16(f, lt)
            if etype == ETH_P_IPV6:
                return _u8(f, l3 + 6) in protos and ports(f, l3 + 40)
            if etype != ETH_P_IP or _u8(f, l3 + 9) not in protos or _u16(f, l3 + 6) & 0x1FFF:
                return False
            return ports(f, l3 + (_u8(f, l3) & 0x0F) * 4)
        return match

    def _ether(self, lt: int) -> Predicate:
        tok = self.take("host, src, dst, broadcast or proto after ether")
        if tok == "broadcast":
            return lambda f: _bytes(f, 0, 6) == b"\xff" * 6
        direction = None
        if tok in ("src", "dst"):
            direction, tok = tok, self.take("host after ether " + tok)
        if tok == "host":
            text = self.take("a MAC address")
            try:
                mac = bytes.fromhex(text.replace(":", "").replace("-", "").replace(".", ""))
                if len(mac) != 6:
                    raise ValueError
            except ValueError:
                raise FilterError(f"capture filter: {text!r} is not a MAC address") from None
            src, dst = direction != "dst", direction != "src"
            return lambda f: (src and _bytes(f, 6, 6) == mac) or (dst and _bytes(f, 0, 6) == mac)
        if tok == "proto" and direction is None:
            text = self.take("an ethertype")
            try:
                etype = int(text, 0)
            except ValueError:
                raise FilterError(f"capture filter: ether proto {text!r}: a number such as 0x88b5 "
                                  "(names need libpcap)") from None
            if not ETHERMTU < etype <= 0xFFFF:
                raise FilterError(f"capture filter: ether proto {text!r}: from 0x5dd to 0xffff without libpcap "
                                  "(values up to 1500 are 802.3 lengths, LLC SAPs to libpcap)")
            return lambda f: _u16(f, lt) == etype
        raise FilterError(f"capture filter: ether {tok!r}: expected ether [src|dst] host MAC, ether broadcast "
                          "or ether proto N")
