"""ReplyPlaces on SQLite and on the real Convex functions: what one process stores, another finds,
and only within the reply's own workspace."""

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
from core.stores.places import ReplyPlaces
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_places import SqlitePlaces

SLACK = WorkspaceRef(Platform.SLACK, "T1")
OTHER = WorkspaceRef(Platform.SLACK, "T2")
DISCORD = WorkspaceRef(Platform.DISCORD, "G1")


class Places(ReplyPlaces, Protocol):
    async def close(self) -> None: ...


@dataclass
class Two:
    store: Store
    a: Places  # one process's places
    b: Places  # another process's, on the same store


@pytest.fixture(params=["convex", "sqlite"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Two]:
    async with AsyncExitStack() as stack:
        pair: list[Places] = []
        store: Store
        if request.param == "sqlite":
            store = await SqliteStore.open(tmp_path / "store.sqlite")
            stack.push_async_callback(store.close)
            for _ in range(2):
                places = await SqlitePlaces.open(tmp_path / "store.sqlite")
                stack.push_async_callback(places.close)
                pair.append(places)
        else:
            server = request.getfixturevalue("convex_server")
            server.reset()
            for _ in range(2):
                client = ConvexStore(server.url, server.secret)
                stack.push_async_callback(client.close)
                pair.append(ConvexPlaces(client))
            store = client
        yield Two(store, pair[0], pair[1])


async def reply_in(store: Store, ws: WorkspaceRef, channel: str = "C1") -> str:
    thread = await store.thread_for(ws, channel, "1.0")
    return await store.add_message(ws, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)


async def test_a_place_one_process_stores_is_found_by_another_until_forgotten(two: Two) -> None:
    a, b = two.a, two.b
    r1, r2 = await reply_in(two.store, SLACK), await reply_in(two.store, DISCORD)
    await a.put_place(r1, SLACK.key, "slack", '{"channel": "C1", "ids": ["1.0"]}')
    await asyncio.sleep(0.01)
    await a.put_place(r2, DISCORD.key, "discord", '{"channel": 5, "ids": [7]}')
    found = await b.place(SLACK.key, r1)
    assert found is not None and (found.workspace, found.platform, found.place) == (
        SLACK.key,
        "slack",
        '{"channel": "C1", "ids": ["1.0"]}',
    )
    both = ("slack", "discord")
    assert [p.reply_id for p in await b.stale_places(0, both)] == [r1, r2]  # oldest first
    assert [p.reply_id for p in await b.stale_places(0, ["discord"])] == [r2]  # only the platforms named
    assert await b.stale_places(0, []) == []
    assert await b.stale_places(60, both) == []  # none kept that long
    await a.put_place(r1, SLACK.key, "slack", '{"channel": "C1", "ids": ["1.0", "2.0"]}')  # a second part
    assert [p.reply_id for p in await b.stale_places(0, both)] == [r2, r1]
    await b.forget_place(SLACK.key, r1)
    assert await a.place(SLACK.key, r1) is None
    assert [p.reply_id for p in await a.stale_places(0, both, limit=10)] == [r2]


async def test_another_workspaces_place_cannot_be_read_forgotten_or_planted(two: Two) -> None:
    """An attack through a process of workspace T2: T1's reply's place stays T1's alone."""
    a, b = two.a, two.b
    theirs = await reply_in(two.store, SLACK)
    place = '{"channel": "C1", "ids": ["1.0"]}'
    await a.put_place(theirs, SLACK.key, "slack", place)

    assert await b.place(OTHER.key, theirs) is None  # read through another workspace: nothing there
    await b.forget_place(OTHER.key, theirs)  # forget through another workspace: no effect
    found = await a.place(SLACK.key, theirs)
    assert found is not None and found.place == place
    with pytest.raises(StoreError) as planted:  # a place for T1's reply claimed for T2
        await b.put_place(theirs, OTHER.key, "slack", '{"channel": "C9", "ids": ["6.6"]}')
    assert planted.value.code == "not_found"
    with pytest.raises(StoreError):  # a platform that is not the workspace's
        await b.put_place(theirs, SLACK.key, "discord", place)
    found = await a.place(SLACK.key, theirs)
    assert found is not None and (found.workspace, found.place) == (SLACK.key, place)
    # The sweep across workspaces says which reply of which workspace, never where it is.
    stale = await b.stale_places(0, ["slack"])
    assert [(p.reply_id, p.workspace) for p in stale] == [(theirs, SLACK.key)] and not hasattr(stale[0], "place")
