"""Capture filters compiled by libpcap itself: a ctypes shim over ``pcap_compile`` and
``bpf_filter``, so an expression means here exactly what it means to tcpdump.

This models a classic BPF socket filter (``struct sock_fprog`` attached with SO_ATTACH_FILTER,
run by the kernel's ``bpf_prog_run`` on each frame): libpcap compiles pcap-filter(7) text into
``struct bpf_insn`` instructions for link type DLT_EN10MB (as ``tcpdump -d`` prints them), and
its ``bpf_filter`` interpreter runs them over each frame, without recursion, whatever the
expression's length. A load past the end of a short frame ends the program with "reject", as
in the kernel. The instructions are copied into memory Python owns and libpcap's copy is freed
at once (``pcap_freecode``), so a program needs no finaliser.

``libpcap()`` loads the library once (``libpcap.so.0.8`` on Debian, ``libpcap.so.1``
elsewhere); it answers None where there is none, and the caller falls back to vnet's own
matcher of a pcap-filter subset (``vnet.proto.capture``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

DLT_EN10MB = 1  # Ethernet, the link type of every vnet capture
MAXIMUM_SNAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN: what tcpdump compiles for by default
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF  # "ip broadcast" then fails to compile, as in tcpdump -r
SONAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")


class BpfCompileError(ValueError):
    """libpcap refused the expression; the message is its own sentence (pcap_geterr)."""


class BpfInsn(ctypes.Structure):
    """``struct bpf_insn``: one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class BpfProgramStruct(ctypes.Structure):
    """``struct bpf_program``: what pcap_compile fills in."""

    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


class Libpcap:
    """The few libpcap functions a capture filter needs, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_close.restype = None
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(BpfProgramStruct), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_freecode.argtypes = [ctypes.POINTER(BpfProgramStruct)]
        lib.pcap_freecode.restype = None
        lib.pcap_lib_version.argtypes = []
        lib.pcap_lib_version.restype = ctypes.c_char_p
        lib.bpf_filter.argtypes = [ctypes.POINTER(BpfInsn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
        lib.bpf_filter.restype = ctypes.c_uint
        self.lib = lib
        self.version = lib.pcap_lib_version().decode(errors="replace")

    def compile(self, expr: str, snaplen: int = MAXIMUM_SNAPLEN, optimize: bool = True) -> "BpfProgram":
        """Compile ``expr`` for Ethernet frames, as ``tcpdump -r`` of an Ethernet pcap would;
        BpfCompileError with libpcap's sentence when it does not compile."""
        try:
            text = expr.encode("ascii")
        except UnicodeEncodeError:
            raise BpfCompileError("capture filter: only ASCII characters are allowed") from None
        if b"\0" in text:
            raise BpfCompileError("capture filter: a NUL character cannot be part of a filter")
        lib = self.lib
        handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
        if not handle:
            raise MemoryError("pcap_open_dead failed")
        prog = BpfProgramStruct()
        try:
            if lib.pcap_compile(handle, ctypes.byref(prog), text, int(optimize), PCAP_NETMASK_UNKNOWN) != 0:
                raise BpfCompileError(f"capture filter: {lib.pcap_geterr(handle).decode(errors='replace')}")
            try:
                insns = (BpfInsn * prog.bf_len)()
                ctypes.memmove(insns, prog.bf_insns, ctypes.sizeof(BpfInsn) * prog.bf_len)
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)
        return BpfProgram(lib.bpf_filter, insns)


class BpfProgram:
    """A compiled filter: ``match(frame)`` runs it (a frame is bytes); ``len(program)`` is
    its instruction count, as ``tcpdump -d`` lists them."""

    __slots__ = ("_run", "_insns")

    def __init__(self, run, insns) -> None:
        self._run = run
        self._insns = insns

    def __len__(self) -> int:
        return len(self._insns)

    def __call__(self, frame: bytes, wirelen: int | None = None) -> bool:
        """Run the program over ``frame``; ``wirelen`` is its length on the wire when the
        bytes were cut short (``len`` and ``greater`` look at it), as pcap_offline_filter."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        n = len(frame)
        return self._run(self._insns, frame, n if wirelen is None else wirelen, n) != 0

    def instructions(self) -> list[tuple[int, int, int, int]]:
        """(code, jt, jf, k) per instruction (``tcpdump -dd``'s columns)."""
        return [(i.code, i.jt, i.jf, i.k) for i in self._insns]


@functools.cache
def libpcap() -> Libpcap | None:
    """libpcap, loaded once; None (said once in the log) where it is not installed."""
    names = []
    found = ctypes.util.find_library("pcap")
    if found:
        names.append(found)
    names += [n for n in SONAMES if n not in names]
    errors = []
    for name in names:
        try:
            return Libpcap(ctypes.CDLL(name), name)
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
    log.warning("libpcap not found (%s): capture filters use vnet's own pcap-filter subset; "
                "install libpcap (Debian: apt-get install libpcap0.8) for every tcpdump expression",
                "; ".join(errors))
    return None
