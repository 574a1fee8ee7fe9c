"""BudgetLeases and StreamLeases: one contract, run on SQLite and on the real Convex functions.

Each test gets two independent clients of one store (two connections to one SQLite file, two HTTP
clients of one Convex deployment): what one process does, the other sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.stores.base import Store, StoreError
from core.stores.convex import ConvexStore
from core.stores.convex_leases import ConvexLeases
from core.stores.leases import DEMAND_TTL_S, RETRY_S, Beat, BudgetLeases, BudgetRequest, StreamLeases, TakenReply
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_leases import SqliteLeases

WS = WorkspaceRef(Platform.SLACK, "T1")
OTHER = WorkspaceRef(Platform.SLACK, "T2")


class Leases(BudgetLeases, StreamLeases):
    pass


@dataclass
class Client:
    store: Store
    leases: Leases


async def _client(kind: str, stack: AsyncExitStack, tmp_path: Path, request: pytest.FixtureRequest) -> Client:
    if kind == "sqlite":
        store = await SqliteStore.open(tmp_path / "store.sqlite")
        stack.push_async_callback(store.close)
        leases = await SqliteLeases.open(tmp_path / "store.sqlite")
        stack.push_async_callback(leases.close)
        return Client(store, leases)
    server = request.getfixturevalue("convex_server")
    cstore = ConvexStore(server.url, server.secret)
    stack.push_async_callback(cstore.close)
    return Client(cstore, ConvexLeases(cstore))


@pytest.fixture(params=["convex", "sqlite"])
async def clients(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    if request.param == "convex":
        request.getfixturevalue("convex_server").reset()
    async with AsyncExitStack() as stack:
        first = await _client(request.param, stack, tmp_path, request)
        second = await _client(request.param, stack, tmp_path, request)
        yield first, second


async def streaming_reply(store: Store, name: str = "t") -> str:
    thread = await store.thread_for(WS, "C1", name)
    return await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)


def bucket(key: str = "slack:T1:chat.update", *, want: int = 5, per_second: float = 10.0, burst: float = 2.0):
    return BudgetRequest(key, per_second, burst, want, 1.0)


# -- budgets ---------------------------------------------------------------------------------------


async def test_a_lease_grants_the_burst_now_then_one_token_per_interval(clients: tuple[Client, Client]) -> None:
    a, _ = clients
    (grant,) = await a.leases.lease([bucket(want=5)])
    assert len(grant.slots) == 5
    assert grant.slots[0] == pytest.approx(0, abs=0.05) and grant.slots[1] == pytest.approx(0, abs=0.05)
    gaps = [later - earlier for earlier, later in zip(grant.slots[1:], grant.slots[2:], strict=False)]
    assert gaps == pytest.approx([0.1, 0.1, 0.1], abs=1e-6)


async def test_a_lead_grants_no_slot_sooner_than_the_callers_round_trip(clients: tuple[Client, Client]) -> None:
    a, _ = clients
    (grant,) = await a.leases.lease([BudgetRequest("k", 10.0, 2.0, 3, 1.0, lead_s=0.3)])
    assert grant.slots == pytest.approx((0.3, 0.3, 0.4), abs=0.05)  # the burst, at the lead, then the rate


async def test_two_clients_get_successive_tokens_never_the_same(clients: tuple[Client, Client]) -> None:
    a, b = clients
    (first,) = await a.leases.lease([bucket(want=4)])
    (second,) = await b.leases.lease([bucket(want=4)])
    # b's tokens come after a's: its first is one interval after a's last (less the time between calls).
    assert second.slots[0] >= first.slots[-1] + 0.1 - 0.2
    assert second.seq == first.seq + 1


async def test_one_lease_covers_several_buckets_and_stops_at_the_horizon(clients: tuple[Client, Client]) -> None:
    a, _ = clients
    grants = await a.leases.lease([BudgetRequest("x", 5, 1, 50, 1.05), bucket("y", want=1)])
    assert [g.key for g in grants] == ["x", "y"]
    assert len(grants[0].slots) == 6  # 0, 0.2, ..., 1.0: nothing beyond one second ahead
    assert len(grants[1].slots) == 1
    (empty,) = await a.leases.lease([BudgetRequest("x", 5, 1, 1, 0.1)])
    assert empty.slots == () and 0.8 < empty.retry_after_s < 1.2


async def test_giving_back_the_tail_returns_it_unless_another_lease_came_since(clients: tuple[Client, Client]) -> None:
    a, b = clients
    (first,) = await a.leases.lease([bucket(want=6)])
    assert await a.leases.give_back(first.key, first.seq, first.undo[2])  # tokens 2..5 unused
    (second,) = await b.leases.lease([bucket(want=1)])
    assert second.slots[0] == pytest.approx(first.slots[2], abs=0.1)
    assert not await a.leases.give_back(first.key, first.seq, first.undo[0])  # b leased since: too late


def waiting(key: str, *ages: float, want: int = 1, horizon_s: float = 1.0) -> BudgetRequest:
    """A lease of 2 tokens a second (burst 1) for requests that have waited `ages` seconds."""
    return BudgetRequest(key, 2.0, 1.0, want, horizon_s, waiting=ages)


async def test_the_next_tokens_go_to_the_process_whose_requests_waited_longest(clients: tuple[Client, Client]) -> None:
    a, b = clients
    (first,) = await a.leases.lease([waiting("d", 1.0)], owner="proc-a")
    assert len(first.slots) == 1  # nobody else waits
    # b's requests have waited 20 s and 19 s: it gets the next token (all it wanted); its 19 s one waits on.
    (second,) = await b.leases.lease([waiting("d", 20.0, 19.0)], owner="proc-b")
    assert len(second.slots) == 1
    # a's newer request waits while b's older one is not leased yet; a asks again about when the next
    # token is due (half a second ahead, within the rule book's retry bounds).
    (third,) = await a.leases.lease([waiting("d", 2.0, want=2)], owner="proc-a")
    assert third.slots == () and RETRY_S[0] <= third.retry_after_s <= RETRY_S[1]
    # The refusal leased nothing: b's next lease gets the very next token.
    (fourth,) = await b.leases.lease([waiting("d", 19.0, horizon_s=5.0)], owner="proc-b")
    assert len(fourth.slots) == 1 and fourth.slots[0] == pytest.approx(second.slots[0] + 0.5, abs=0.1)
    # b's demand is met: a's (2 s and counting) goes next, ahead of b's new, younger one.
    (fifth,) = await a.leases.lease([waiting("d", 2.5, horizon_s=5.0)], owner="proc-a")
    assert len(fifth.slots) == 1


async def test_finals_and_demands_this_close_in_age_are_leased_as_they_come(clients: tuple[Client, Client]) -> None:
    a, b = clients
    await a.leases.lease([waiting("c", 9.0, 8.0, 7.9)], owner="proc-a")  # leaves 8.0 and 7.9 waiting
    # b's 7.9 s is within the margin of a's 8 s: leased; so are all of b's requests at least that old.
    (close,) = await b.leases.lease([waiting("c", 7.9, 7.8, 1.0, want=3, horizon_s=5.0)], owner="proc-b")
    assert len(close.slots) == 2


async def test_a_demand_not_said_again_holds_nobody_back_for_long(clients: tuple[Client, Client]) -> None:
    a, b = clients
    await b.leases.lease([waiting("e", 30.0, 29.0)], owner="proc-b")  # leaves 29 s waiting, then b goes quiet
    (refused,) = await a.leases.lease([waiting("e", 1.0)], owner="proc-a")
    assert refused.slots == ()
    await asyncio.sleep(DEMAND_TTL_S + 0.1)
    (later,) = await a.leases.lease([waiting("e", 1.0, horizon_s=5.0)], owner="proc-a")
    assert len(later.slots) == 1
    # A lease without an owner is remembered for nobody: it holds nobody back.
    await b.leases.lease([waiting("f", 30.0, 29.0)])
    (free,) = await a.leases.lease([waiting("f", 1.0, horizon_s=5.0)], owner="proc-a")
    assert len(free.slots) == 1


@pytest.mark.parametrize(
    "request_",
    [
        BudgetRequest("k", 1, 1, 1, 1, waiting=(-1.0,)),
        BudgetRequest("k", 1, 1, 1, 1, waiting=(86_401.0,)),
        BudgetRequest("k", 1, 1, 1, 1, waiting=(1.0,) * 101),
        BudgetRequest("k", 0, 1, 1, 1),
        BudgetRequest("k", 1, 0.5, 1, 1),
        BudgetRequest("k", 1, 1, 0, 1),
        BudgetRequest("k", 1, 1, 101, 1),
        BudgetRequest("", 1, 1, 1, 1),
        BudgetRequest("k" * 601, 1, 1, 1, 1),
    ],
)
async def test_bad_lease_requests_are_refused(clients: tuple[Client, Client], request_: BudgetRequest) -> None:
    a, _ = clients
    with pytest.raises(StoreError) as refused:
        await a.leases.lease([request_])
    assert refused.value.code == "invalid"


# -- reply ownership -------------------------------------------------------------------------------


async def test_a_heartbeating_reply_is_never_taken_over(clients: tuple[Client, Client]) -> None:
    a, b = clients
    reply = await streaming_reply(a.store)
    assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()
    for _ in range(3):
        await asyncio.sleep(0.25)
        assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()
        assert await b.leases.take_over("proc-b", stale_s=0.4) == []


async def test_a_dead_owners_reply_is_taken_over_by_one_process_and_the_owner_learns_it(
    clients: tuple[Client, Client],
) -> None:
    a, b = clients
    reply = await streaming_reply(a.store)
    await a.leases.heartbeat("proc-a", {reply: WS.key})
    await asyncio.sleep(0.5)
    won = await asyncio.gather(b.leases.take_over("proc-b", stale_s=0.3), a.leases.take_over("proc-c", stale_s=0.3))
    assert sorted(len(w) for w in won) == [0, 1] and [TakenReply(reply, WS.key)] in won
    winner = "proc-b" if won[0] else "proc-c"
    assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat(lost=(reply,))  # the old owner must stop
    assert await a.leases.heartbeat(winner, {reply: WS.key}) == Beat()
    assert not await a.leases.release("proc-a", WS.key, reply)
    assert await b.leases.release(winner, WS.key, reply)


async def test_a_reply_nobody_owned_is_taken_once_it_stopped_growing(clients: tuple[Client, Client]) -> None:
    a, b = clients
    reply = await streaming_reply(a.store)
    assert await b.leases.take_over("proc-b", stale_s=0.3) == []
    await asyncio.sleep(0.45)
    assert await b.leases.take_over("proc-b", stale_s=0.3) == [TakenReply(reply, WS.key)]
    assert await a.leases.take_over("proc-a", stale_s=0.3) == []


async def test_finished_replies_are_not_taken_over_and_not_owned(clients: tuple[Client, Client]) -> None:
    a, b = clients
    reply = await streaming_reply(a.store)
    await a.leases.heartbeat("proc-a", {reply: WS.key})
    await a.store.complete_message(WS, reply, text="done", status=ReplyStatus.COMPLETE)
    await asyncio.sleep(0.45)
    assert await b.leases.take_over("proc-b", stale_s=0.3) == []
    assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat(lost=(reply,))  # nothing to own any more


async def test_a_process_takes_over_only_replies_of_the_platforms_it_serves(clients: tuple[Client, Client]) -> None:
    a, b = clients
    reply = await streaming_reply(a.store)  # in a Slack workspace
    await asyncio.sleep(0.45)
    assert await b.leases.take_over("discord-proc", stale_s=0.3, platforms=["discord"]) == []
    taken = await b.leases.take_over("slack-proc", stale_s=0.3, platforms=["slack", "discord"])
    assert taken == [TakenReply(reply, WS.key)]


async def test_another_workspace_can_neither_own_keep_nor_release_a_reply(clients: tuple[Client, Client]) -> None:
    """An attack through a process of another workspace: T1's reply's lease stays its owner's."""
    a, b = clients
    reply = await streaming_reply(a.store)
    other = OTHER.key
    # Named with another workspace, the reply is none of its: not owned, not kept alive.
    assert await b.leases.heartbeat("thief", {reply: other}) == Beat(lost=(reply,))
    assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()  # so its real owner gets it
    await asyncio.sleep(0.45)
    assert await b.leases.heartbeat("proc-a", {reply: other}) == Beat(lost=(reply,))  # the owner's name does not help
    assert not await b.leases.release("proc-a", other, reply)  # nor releasing it through another workspace
    taken = await b.leases.take_over("proc-b", stale_s=0.3)  # the stale lease is still there: it is taken
    assert taken == [TakenReply(reply, WS.key)]
    assert await a.leases.heartbeat("proc-a", {reply: WS.key}) == Beat(lost=(reply,))
    assert await b.leases.release("proc-b", WS.key, reply)
