"""NAPI: interrupt mitigation by polling (net/core/dev.c, Documentation/networking/napi.rst).

A driver's IRQ handler masks its interrupt and calls ``napi_schedule``; the core then calls
the driver's ``poll(napi, budget)`` from softirq context, here a ``loop.call_soon`` callback
(the device's ``loop``). The contract, enforced here:

- poll processes at most ``budget`` RX frames and returns how many it processed;
- if it returns less than the budget it has called ``napi_complete_done`` and, if that
  returned True, re-enabled its interrupt;
- if it returns exactly the budget it must not complete: the instance stays scheduled
  (NAPI_STATE_SCHED) and is polled again with the IRQ still masked. As in net_rx_action, one
  softirq run keeps repolling until NETDEV_BUDGET (300) frames are done, then yields: the
  next poll comes from a fresh callback, behind whatever else the loop has ready (the
  kernel re-raises the softirq). The kernel also stops after 2 jiffies; this model has no
  clock inside a callback, so only the frame budget applies.

A contract breach is a driver bug and raises ``NapiContractError`` from the softirq callback.

State bits follow the kernel: SCHED (owned: scheduled, polling, or held by a disabler),
MISSED (napi_schedule came while SCHED: poll once more), DISABLE (napi_disable in progress),
NPSVC (here: disabled; set with SCHED by netif_napi_add and napi_disable). The kernel's
napi_disable sleeps until a running poll finishes; with one thread and no preemption a poll
cannot be "running" elsewhere, so napi_disable runs the poll that is already scheduled (what
the softirq would have done while the disabler slept) and then takes ownership. Disabling
twice, which hangs a kernel, raises NapiError here.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

NAPI_POLL_WEIGHT = 64
NETDEV_BUDGET = 300  # frames one softirq run may process before yielding (net.core.netdev_budget)

NAPI_STATE_SCHED = 1 << 0
NAPI_STATE_MISSED = 1 << 1
NAPI_STATE_DISABLE = 1 << 2
NAPI_STATE_NPSVC = 1 << 3

PollFn = Callable[["NapiStruct", int], int]


class NapiError(RuntimeError):
    """A NAPI call made in a state where the kernel would hang or BUG()."""


class NapiContractError(NapiError):
    """A poll function broke the napi.rst contract (a driver bug)."""


class NapiStruct:
    """``struct napi_struct``: one per RX queue, embedded in the driver's private state.

    Counters (for ethtool -S): ``polls``, ``budget_exhausted`` (polls that returned the whole
    budget), ``completes`` (napi_complete_done calls), ``schedules`` (napi_schedule calls
    that queued a poll).
    """

    __slots__ = ("dev", "poll", "weight", "state", "in_poll", "completed", "handle",
                 "polls", "budget_exhausted", "completes", "schedules")

    def __init__(self) -> None:
        self.dev: Any = None
        self.poll: Optional[PollFn] = None
        self.weight = NAPI_POLL_WEIGHT
        self.state = NAPI_STATE_SCHED | NAPI_STATE_NPSVC  # disabled until napi_enable
        self.in_poll = False
        self.completed = False  # napi_complete_done was called during the current poll
        self.handle: Any = None  # the pending softirq callback
        self.polls = 0
        self.budget_exhausted = 0
        self.completes = 0
        self.schedules = 0

    @property
    def scheduled(self) -> bool:
        """True while the instance is scheduled or being polled (and not disabled)."""
        return (self.state & (NAPI_STATE_SCHED | NAPI_STATE_NPSVC)) == NAPI_STATE_SCHED

    @property
    def disabled(self) -> bool:
        return bool(self.state & NAPI_STATE_NPSVC)

    def __repr__(self) -> str:
        return (f"<NapiStruct dev={getattr(self.dev, 'name', None)} weight={self.weight} "
                f"state={self.state:#x} polls={self.polls}>")


def netif_napi_add(dev: Any, napi: NapiStruct, poll: PollFn,
                   weight: int = NAPI_POLL_WEIGHT) -> None:
    """Attach ``napi`` to ``dev`` with its poll function; it starts disabled (netif_napi_add)."""
    if weight <= 0:
        raise ValueError(f"netif_napi_add: weight must be > 0, got {weight}")
    if napi.dev is not None:
        raise NapiError("netif_napi_add: this napi_struct is already added to a device")
    napi.dev = dev
    napi.poll = poll
    napi.weight = weight
    napi.state = NAPI_STATE_SCHED | NAPI_STATE_NPSVC
    dev.napi_list.append(napi)


def netif_napi_del(napi: NapiStruct) -> None:
    """Detach a disabled napi from its device (netif_napi_del)."""
    if napi.dev is None:
        return
    if not napi.disabled:
        raise NapiError("netif_napi_del: napi_disable it first")
    if napi in napi.dev.napi_list:
        napi.dev.napi_list.remove(napi)
    napi.dev = None


def napi_enable(napi: NapiStruct) -> None:
    """Allow the instance to be scheduled (napi_enable). It must be disabled."""
    if not napi.state & NAPI_STATE_NPSVC:
        raise NapiError("napi_enable: napi is not disabled (the kernel BUG()s here)")
    napi.state &= ~(NAPI_STATE_SCHED | NAPI_STATE_NPSVC | NAPI_STATE_MISSED)


def napi_disable(napi: NapiStruct) -> None:
    """Stop scheduling; let a scheduled poll finish first; then own the instance.

    Raises NapiError when already disabled (a kernel would hang) or when called from the
    instance's own poll (a kernel would deadlock).
    """
    if napi.state & NAPI_STATE_NPSVC:
        raise NapiError("napi_disable: already disabled; disabling twice hangs a kernel. "
                        "Pair every napi_disable with a napi_enable")
    if napi.in_poll:
        raise NapiError("napi_disable: called from this napi's own poll, which would deadlock")
    napi.state |= NAPI_STATE_DISABLE
    # "Wait" for the scheduled poll: run it now, as the softirq would while we slept. With
    # DISABLE pending a full-budget poll is completed by the core instead of rescheduled.
    rounds = 0
    while napi.state & NAPI_STATE_SCHED:
        if napi.handle is not None:
            napi.handle.cancel()
            napi.handle = None
        _napi_poll_once(napi)
        rounds += 1
        if rounds > 10_000:
            raise NapiContractError("napi_disable: the poll never completes")
    napi.state = (napi.state | NAPI_STATE_SCHED | NAPI_STATE_NPSVC) & ~(
        NAPI_STATE_DISABLE | NAPI_STATE_MISSED)


def napi_schedule_prep(napi: NapiStruct) -> bool:
    """Take SCHED if free; if someone holds it, note MISSED so the poll runs once more."""
    state = napi.state
    if state & (NAPI_STATE_DISABLE | NAPI_STATE_NPSVC):
        return False
    if state & NAPI_STATE_SCHED:
        napi.state = state | NAPI_STATE_MISSED
        return False
    napi.state = state | NAPI_STATE_SCHED
    return True


def __napi_schedule(napi: NapiStruct) -> None:
    napi.schedules += 1
    napi.handle = napi.dev.loop.call_soon(_napi_poll, napi)


def napi_schedule(napi: NapiStruct) -> bool:
    """Queue a poll unless disabled or already scheduled (napi_schedule); True if queued."""
    if napi_schedule_prep(napi):
        __napi_schedule(napi)
        return True
    return False


def napi_complete_done(napi: NapiStruct, work_done: int) -> bool:
    """Give up SCHED after a poll that did less than its budget (napi_complete_done).

    Returns False when the instance must stay scheduled (a napi_schedule came in while it
    was polling: it is queued again), in which case the driver must not unmask its IRQ.
    """
    state = napi.state
    if not state & NAPI_STATE_SCHED or state & NAPI_STATE_NPSVC:
        raise NapiContractError("napi_complete_done: napi is not scheduled")
    napi.completed = True
    napi.completes += 1
    if state & NAPI_STATE_MISSED:
        napi.state = state & ~NAPI_STATE_MISSED
        if napi.handle is None and not napi.in_poll:
            __napi_schedule(napi)
        return False
    napi.state = state & ~NAPI_STATE_SCHED
    return True


def napi_complete(napi: NapiStruct) -> bool:
    return napi_complete_done(napi, 0)


def _napi_poll(napi: NapiStruct) -> None:
    """One softirq run for one instance (net_rx_action): poll until it completes or
    NETDEV_BUDGET frames are done, then yield to the loop."""
    napi.handle = None
    budget = NETDEV_BUDGET
    while _napi_poll_once(napi):
        budget -= napi.weight
        if budget <= 0:
            napi.handle = napi.dev.loop.call_soon(_napi_poll, napi)
            return


def _napi_poll_once(napi: NapiStruct) -> bool:
    """One poll (__napi_poll); True when it used the whole weight and must be polled again."""
    state = napi.state
    if not state & NAPI_STATE_SCHED or state & NAPI_STATE_NPSVC:
        return False  # completed or disabled since this callback was queued
    weight = napi.weight
    napi.in_poll = True
    napi.completed = False
    try:
        work = napi.poll(napi, weight)
    finally:
        napi.in_poll = False
    napi.polls += 1
    if not 0 <= work <= weight:
        raise NapiContractError(f"{napi.poll!r} returned {work}, outside its budget of {weight}")
    if work == weight:
        napi.budget_exhausted += 1
        if napi.completed:
            raise NapiContractError(f"{napi.poll!r} used its whole budget ({weight}) but called "
                                    f"napi_complete_done; at budget the core still owns it")
        if napi.state & NAPI_STATE_DISABLE:
            napi.state &= ~(NAPI_STATE_SCHED | NAPI_STATE_MISSED)  # napi_disable takes it
            return False
        napi.state &= ~NAPI_STATE_MISSED  # this repoll serves the missed schedule too
        return True
    if not napi.completed:
        raise NapiContractError(f"{napi.poll!r} returned {work} < budget {weight} without "
                                f"napi_complete_done; it would never be polled again")
    if napi.state & NAPI_STATE_SCHED and napi.handle is None and not napi.state & NAPI_STATE_DISABLE:
        # napi_complete_done saw MISSED while we were inside poll: poll once more.
        napi.handle = napi.dev.loop.call_soon(_napi_poll, napi)
    return False
