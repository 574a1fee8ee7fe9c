"""QuestionHolds on SQLite and on the real Convex functions: a claim is held by one attempt of one
process, heartbeated, taken over once when stale, ended by the answer's first place, and scoped to
its workspace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from core.stores.base import Store, StoreError
from core.stores.convex import ConvexStore
from core.stores.convex_places import ConvexPlaces
from core.stores.convex_questions import ConvexQuestions
from core.stores.places import ReplyPlaces
from core.stores.questions import HeldQuestion, QuestionHolds
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_places import SqlitePlaces
from core.stores.sqlite_questions import SqliteQuestions

WS = WorkspaceRef(Platform.SLACK, "T1")
OTHER = WorkspaceRef(Platform.SLACK, "T2")
KEY = f"{WS.key}:C1:1700000000.000100"
QUESTION = HeldQuestion(KEY, WS.key, '{"text": "how do we deploy?"}', '{"channel": "C1"}')


class Holds(QuestionHolds, Protocol):
    async def close(self) -> None: ...


@dataclass
class Processes:
    store: Store
    a: Holds  # one process's holds
    b: Holds  # another process's, on the same store
    places: ReplyPlaces


@pytest.fixture(params=["convex", "sqlite"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Processes]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path / "store.sqlite"
            store: Store = await SqliteStore.open(path)
            stack.push_async_callback(store.close)
            holds: list[Holds] = []
            for _ in range(2):
                sqlite_holds = await SqliteQuestions.open(path)
                stack.push_async_callback(sqlite_holds.close)
                holds.append(sqlite_holds)
            sqlite_places = await SqlitePlaces.open(path)
            stack.push_async_callback(sqlite_places.close)
            places: ReplyPlaces = sqlite_places
        else:
            server = request.getfixturevalue("convex_server")
            server.reset()
            clients = [ConvexStore(server.url, server.secret) for _ in range(2)]
            for client in clients:
                stack.push_async_callback(client.close)
            store, holds, places = clients[0], [ConvexQuestions(c) for c in clients], ConvexPlaces(clients[1])
        yield Processes(store, holds[0], holds[1], places)


async def test_one_attempt_holds_a_question_and_a_stale_hold_is_taken_over_once(two: Processes) -> None:
    a, b = two.a, two.b
    assert await a.hold("proc-a", "try-1", QUESTION)
    assert await a.hold("proc-a", "try-1", QUESTION)  # its own retry
    assert not await a.hold("proc-a", "twin", QUESTION)  # the event delivered again to the same process
    assert not await b.hold("proc-b", "try-9", QUESTION)  # ... or to another one
    assert await a.heartbeat("proc-a", {KEY: WS.key}) == []
    assert await b.heartbeat("proc-b", {KEY: WS.key}) == [KEY]  # not b's
    assert await b.take_over("proc-b", "proc-b-taken", 0.3) == []  # a is alive

    await asyncio.sleep(0.4)  # a stops heartbeating
    # Named with another workspace (even with its owner's name), the hold is none of its: not kept alive.
    assert await b.heartbeat("proc-a", {KEY: OTHER.key}) == [KEY]
    taken = await asyncio.gather(a.take_over("proc-c", "proc-c-taken", 0.3), b.take_over("proc-b", "proc-b-taken", 0.3))
    assert sorted(len(t) for t in taken) == [0, 1]  # one winner
    [won] = [t for t in taken if t]
    assert won[0] == QUESTION  # the question and where to answer it come with the hold
    winner, claimant = ("proc-c", "proc-c-taken") if taken[0] else ("proc-b", "proc-b-taken")
    assert await a.heartbeat("proc-a", {KEY: WS.key}) == [KEY]  # the paused owner learns it lost the question
    assert not await a.hold("proc-a", "try-1", QUESTION)  # and its retry no longer wins
    assert await b.hold(winner, claimant, QUESTION)  # the winner's answer does
    assert await a.heartbeat(winner, {KEY: WS.key}) == []


async def test_the_answers_first_place_ends_the_hold_and_release_is_scoped(two: Processes) -> None:
    a, b = two.a, two.b
    assert await a.hold("proc-a", "try-1", QUESTION)
    thread = await two.store.thread_for(WS, "C1", "1700000000.000100")
    reply = await two.store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await two.places.put_place(reply, WS.key, "slack", '{"channel": "C1", "ids": ["1.0"]}', answers=KEY)
    assert await a.heartbeat("proc-a", {KEY: WS.key}) == [KEY]  # the hold ended with the first place
    await asyncio.sleep(0.3)
    assert await b.take_over("proc-b", "proc-b-taken", 0.2) == []  # nothing to answer again

    second = HeldQuestion(f"{WS.key}:C1:1700000001.000100", WS.key, "{}", "{}")
    assert await a.hold("proc-a", "try-2", second)
    assert not await b.release("proc-b", WS.key, second.key)  # not b's hold
    assert not await a.release("proc-a", OTHER.key, second.key)  # not through another workspace
    assert await a.heartbeat("proc-a", {second.key: WS.key}) == []
    assert await a.release("proc-a", WS.key, second.key)
    assert await a.heartbeat("proc-a", {second.key: WS.key}) == [second.key]


async def test_a_hold_is_only_for_an_event_of_its_workspace(two: Processes) -> None:
    forged = HeldQuestion(KEY, OTHER.key, "{}", "{}")  # T1's event claimed as T2's
    with pytest.raises(StoreError):
        await two.a.hold("proc-a", "try-1", forged)
    assert await two.b.hold("proc-b", "try-1", QUESTION)  # the event is still unclaimed
