"""ReplyStops with the reply heartbeat, on SQLite and on the real Convex functions: a Stop clicked on
one process reaches the process streaming the reply, judged by the store (the asker, or curator and
above; the rule book's `control_others_replies`), and never across workspaces. If the streaming process
is dead, the process that takes its reply over hears of the Stop and ends the reply as stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.app import stops_for
from core.messages import Actor, MessageRole, ReplyStatus
from core.ownership import ReplyOwnership
from core.roles import Role
from core.stores.base import Store, StoreError
from core.stores.convex import ConvexStore
from core.stores.convex_leases import ConvexLeases
from core.stores.leases import Beat, StreamLeases
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_leases import SqliteLeases
from core.stores.stops import ReplyStops
from tests.contract.conftest import STORES
from tests.contract.test_store_contract import ADMIN, OTHER, OWNER, WS
from tests.unit.test_ownership import MarkFailed

ASKER = Actor("U-asker")
BYSTANDER = Actor("U-bystander")


@dataclass
class Process:
    stops: ReplyStops
    leases: StreamLeases


@dataclass
class Two:
    store: Store  # (the test's own view, for setting roles and ending replies)
    streaming: Process
    clicking: Process


async def _process(
    kind: str, store: Store, stack: AsyncExitStack, tmp_path: Path, request: pytest.FixtureRequest, *, clicking: bool
) -> Process:
    """A process of its own on the store: its own SQLite connections, or its own Convex client (the
    clicking one: the suite's client, which records what the platform confirmed of its actors)."""
    if kind == "sqlite":
        own = await SqliteStore.open(tmp_path / "store.sqlite")
        stack.push_async_callback(own.close)
        leases = await SqliteLeases.open(tmp_path / "store.sqlite")
        stack.push_async_callback(leases.close)
        return Process(stops_for(own), leases)
    assert isinstance(store, ConvexStore)
    if not clicking:
        server = request.getfixturevalue("convex_server")
        store = ConvexStore(server.url, server.secret)
        stack.push_async_callback(store.close)
    assert isinstance(store, ConvexStore)
    return Process(stops_for(store), ConvexLeases(store))


@pytest.fixture(params=sorted(STORES))
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Two]:
    async with STORES[request.param](tmp_path, request) as store, AsyncExitStack() as stack:
        a = await _process(request.param, store, stack, tmp_path, request, clicking=False)
        b = await _process(request.param, store, stack, tmp_path, request, clicking=True)
        yield Two(store, a, b)


async def streaming_reply(two: Two, ref: str = "ref-1") -> str:
    thread = await two.store.thread_for(WS, "C1", ref)
    reply = await two.store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await two.streaming.stops.streaming(WS, ref, reply, ASKER.user_id)
    return reply


async def test_the_askers_stop_on_another_process_reaches_the_streaming_one_at_its_heartbeat(two: Two) -> None:
    reply = await streaming_reply(two)
    assert await two.streaming.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-1") == "stopping"
    assert await two.streaming.leases.heartbeat("proc-a", {reply: WS.key}) == Beat(stop=(reply,))
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-1") == "duplicate"  # recorded once
    await two.store.complete_message(WS, reply, text="half\n\n_stopped_", status=ReplyStatus.CANCELLED)
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-1") == "ended"  # really finished
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-unknown") == "ended"


async def test_a_dead_owners_reply_asked_to_stop_is_taken_over_once_and_ends_stopped(two: Two) -> None:
    asked, other = await streaming_reply(two, "ref-1"), await streaming_reply(two, "ref-2")
    assert await two.streaming.leases.heartbeat("proc-a", {asked: WS.key, other: WS.key}) == Beat()  # then dies
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-1") == "stopping"
    finisher = MarkFailed(two.store, (WS.platform.value,))
    taker = ReplyOwnership(two.clicking.leases, finisher, heartbeat_s=0.1, stale_s=0.5, sweep_s=0.2)
    taker.start()
    try:
        for _ in range(10):  # sweeps asked for at once (Stop clicks), beside the periodic ones: one taker each
            taker.sweep_soon()
            await asyncio.sleep(0.1)
        for _ in range(40):
            if len(finisher.finished) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await taker.stop()
    assert sorted(finisher.finished) == sorted([asked, other]) and finisher.stopped == [asked]
    assert taker.taken_over == 2
    assert (await two.store.message(WS, asked)).status is ReplyStatus.CANCELLED  # type: ignore[union-attr]
    assert (await two.store.message(WS, other)).status is ReplyStatus.FAILED  # type: ignore[union-attr]


async def test_only_the_asker_or_a_curator_and_above_may_stop_it(two: Two) -> None:
    reply = await streaming_reply(two)
    assert await two.clicking.stops.request_stop(WS, BYSTANDER, "ref-1") == "not_allowed"
    assert await two.streaming.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()  # nothing recorded
    curator = Actor("U-curator")
    await two.store.set_role(WS, ADMIN, curator.user_id, Role.CURATOR)
    assert await two.clicking.stops.request_stop(WS, curator, "ref-1") == "stopping"
    assert await two.streaming.leases.heartbeat("proc-a", {reply: WS.key}) == Beat(stop=(reply,))


async def test_another_workspace_can_neither_stop_note_nor_hear_a_reply(two: Two) -> None:
    """An attack through a process of another workspace, as that workspace's owner."""
    reply = await streaming_reply(two)
    assert await two.clicking.stops.request_stop(OTHER, OWNER, "ref-1") == "ended"  # no such reply there
    with pytest.raises(StoreError) as planted:  # noting WS's reply as OTHER's (to stop it as its "asker")
        await two.clicking.stops.streaming(OTHER, "ref-1", reply, OWNER.user_id)
    assert planted.value.code == "not_found"
    assert await two.clicking.stops.request_stop(OTHER, OWNER, "ref-1") == "ended"
    assert await two.streaming.leases.heartbeat("proc-a", {reply: WS.key}) == Beat()  # never asked to stop
    assert await two.clicking.stops.request_stop(WS, ASKER, "ref-1") == "stopping"
    assert await two.clicking.leases.heartbeat("thief", {reply: OTHER.key}) == Beat(lost=(reply,))  # not heard there


async def test_bounds(two: Two) -> None:
    with pytest.raises(StoreError) as bad:
        await two.clicking.stops.request_stop(WS, ASKER, "r" * 601)
    assert bad.value.code == "invalid"
    with pytest.raises(StoreError):
        await two.clicking.stops.streaming(WS, "ref-1", "not-a-reply", ASKER.user_id)
