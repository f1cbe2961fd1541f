"""What every layer of the host stack shares: the two error classes and the counter base.

Errors are split by blame (docs: STYLE.md). ``StackError`` is the caller's mistake (a bad
address string, an off-link destination, an oversize payload, a port in use): it is raised
with the fix in its message. Bad input from the wire is never raised: each layer counts it in
a named counter of its ``Counters`` and drops it. ``NeighStateError`` is neither: it means the
neighbour state machine was asked for a transition its table forbids, i.e. a bug here.
"""

from __future__ import annotations


class StackError(ValueError):
    """The caller asked for something the stack cannot do; the message says how to fix it."""


class NeighStateError(RuntimeError):
    """An illegal neighbour (NUD) state transition: a bug in the stack, not bad input."""


class Counters:
    """Named event counters of one layer, like a Linux SNMP MIB group.

    Subclasses list their counter names in ``__slots__``; all start at zero. Slots make a
    typo in a counter name an AttributeError instead of a silently new counter.
    """

    __slots__ = ()

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        nonzero = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)
        return f"{type(self).__name__}({nonzero})"
