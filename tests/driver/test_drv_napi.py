"""The NAPI core against Documentation/networking/napi.rst, with a scripted poll function."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vnet.node.napi import (
    NAPI_POLL_WEIGHT, NAPI_STATE_SCHED, NETDEV_BUDGET, NapiContractError, NapiError, NapiStruct,
    napi_complete_done, napi_disable, napi_enable, napi_schedule, netif_napi_add,
    netif_napi_del,
)


class Scripted:
    """A poll that reports the work it is told to, completing when under budget."""

    def __init__(self, works, complete=True):
        self.works = list(works)
        self.complete = complete
        self.calls = []  # (budget, work, completed-result)

    def __call__(self, napi, budget):
        work = self.works.pop(0) if self.works else 0
        done = None
        if work < budget and self.complete:
            done = napi_complete_done(napi, work)
        self.calls.append((budget, work, done))
        return work


def make(loop, poll, weight=NAPI_POLL_WEIGHT):
    dev = SimpleNamespace(loop=loop, napi_list=[], name="fake0")
    napi = NapiStruct()
    netif_napi_add(dev, napi, poll, weight)
    return dev, napi


def test_added_napi_is_disabled_and_cannot_be_scheduled(loop):
    poll = Scripted([1])
    dev, napi = make(loop, poll)
    assert napi.weight == 64 and dev.napi_list == [napi] and napi.disabled
    assert napi_schedule(napi) is False
    loop.run_ready()
    assert poll.calls == []


def test_schedule_runs_poll_from_a_loop_callback_and_completes(loop):
    poll = Scripted([3])
    _, napi = make(loop, poll)
    napi_enable(napi)
    assert napi_schedule(napi) is True
    assert poll.calls == []  # softirq: not inline
    loop.run_ready()
    assert poll.calls == [(64, 3, True)]
    assert not napi.state & NAPI_STATE_SCHED
    assert (napi.polls, napi.completes, napi.budget_exhausted) == (1, 1, 0)


def test_schedule_while_scheduled_is_a_noop_that_marks_missed(loop):
    poll = Scripted([1, 1])
    _, napi = make(loop, poll)
    napi_enable(napi)
    assert napi_schedule(napi) is True
    assert napi_schedule(napi) is False  # already SCHED: nothing queued now...
    loop.run_ready()
    # ...but NAPI_STATE_MISSED makes napi_complete_done refuse once and poll again.
    assert [c[2] for c in poll.calls] == [False, True]
    assert napi.polls == 2


def test_exactly_budget_keeps_it_scheduled_and_polls_again(loop):
    poll = Scripted([8, 8, 5], complete=True)
    seen = []

    def spy(napi, budget):
        work = poll(napi, budget)
        seen.append((work, napi.state & NAPI_STATE_SCHED != 0))
        return work

    _, napi = make(loop, spy, weight=8)
    napi_enable(napi)
    napi_schedule(napi)
    loop.run_ready()
    assert [c[1] for c in poll.calls] == [8, 8, 5]
    assert [c[2] for c in poll.calls] == [None, None, True]  # no completion at budget
    assert seen == [(8, True), (8, True), (5, False)]
    assert napi.budget_exhausted == 2 and napi.polls == 3


def test_repoll_continues_until_netdev_budget_then_yields(loop):
    order = []
    poll = Scripted([100, 100, 100, 100, 7])
    _, napi = make(loop, lambda n, b: (order.append("poll"), poll(n, b))[1], weight=100)
    napi_enable(napi)
    napi_schedule(napi)
    loop.call_soon(order.append, "other")
    loop.run_ready()
    # net_rx_action: 300 frames (NETDEV_BUDGET) in one softirq run, then the loop's turn.
    assert NETDEV_BUDGET == 300
    assert order == ["poll", "poll", "poll", "other", "poll", "poll"]
    assert [c[2] for c in poll.calls] == [None, None, None, None, True]


def test_contract_breaches_are_named_errors(loop):
    _, napi = make(loop, lambda n, b: b + 1, weight=4)
    napi_enable(napi)
    napi_schedule(napi)
    with pytest.raises(NapiContractError, match="outside its budget"):
        loop.run_ready()

    _, napi = make(loop, Scripted([1], complete=False))
    napi_enable(napi)
    napi_schedule(napi)
    with pytest.raises(NapiContractError, match="without napi_complete_done"):
        loop.run_ready()

    def completes_at_budget(n, b):
        napi_complete_done(n, b)
        return b

    _, napi = make(loop, completes_at_budget, weight=2)
    napi_enable(napi)
    napi_schedule(napi)
    with pytest.raises(NapiContractError, match="whole budget"):
        loop.run_ready()


def test_napi_disable_twice_is_an_error_not_a_hang(loop):
    _, napi = make(loop, Scripted([]))
    napi_enable(napi)
    napi_disable(napi)
    with pytest.raises(NapiError, match="already disabled"):
        napi_disable(napi)
    napi_enable(napi)
    with pytest.raises(NapiError, match="not disabled"):
        napi_enable(napi)


def test_napi_disable_lets_the_scheduled_poll_finish_then_blocks_scheduling(loop):
    poll = Scripted([2])
    _, napi = make(loop, poll)
    napi_enable(napi)
    napi_schedule(napi)
    napi_disable(napi)  # "waits": the pending poll runs now
    assert poll.calls == [(64, 2, True)]
    assert napi.disabled
    assert napi_schedule(napi) is False
    loop.run_ready()
    assert len(poll.calls) == 1


def test_napi_disable_completes_a_full_budget_poll_instead_of_repolling(loop):
    poll = Scripted([4, 4, 4])
    _, napi = make(loop, poll, weight=4)
    napi_enable(napi)
    napi_schedule(napi)
    napi_disable(napi)
    assert [c[1] for c in poll.calls] == [4]
    loop.run_ready()
    assert len(poll.calls) == 1 and napi.disabled


def test_napi_disable_from_its_own_poll_is_refused(loop):
    errors = []

    def poll(n, b):
        try:
            napi_disable(n)
        except NapiError as e:
            errors.append(str(e))
        napi_complete_done(n, 0)
        return 0

    _, napi = make(loop, poll)
    napi_enable(napi)
    napi_schedule(napi)
    loop.run_ready()
    assert errors and "deadlock" in errors[0]


def test_napi_del_requires_disabled(loop):
    dev, napi = make(loop, Scripted([]))
    napi_enable(napi)
    with pytest.raises(NapiError):
        netif_napi_del(napi)
    napi_disable(napi)
    netif_napi_del(napi)
    assert dev.napi_list == [] and napi.dev is None
