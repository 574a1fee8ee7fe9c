"""ReplyPlaces on SQLite and on the real Convex functions: what one process stores, another finds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

import pytest

from core.stores.convex import ConvexStore
from core.stores.convex_places import ConvexPlaces
from core.stores.places import ReplyPlaces
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_places import SqlitePlaces


class Places(ReplyPlaces, Protocol):
    async def close(self) -> None: ...


@pytest.fixture(params=["convex", "sqlite"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Places, Places]]:
    async with AsyncExitStack() as stack:
        pair: list[Places] = []
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
        yield pair[0], pair[1]


async def test_a_place_one_process_stores_is_found_by_another_until_forgotten(two: tuple[Places, Places]) -> None:
    a, b = two
    await a.put_place("r1", "slack:T1", "slack", '{"channel": "C1", "ids": ["1.0"]}')
    await asyncio.sleep(0.01)
    await a.put_place("r2", "discord:G1", "discord", '{"channel": 5, "ids": [7]}')
    found = await b.place("r1")
    assert found is not None and (found.workspace, found.platform, found.place) == (
        "slack:T1",
        "slack",
        '{"channel": "C1", "ids": ["1.0"]}',
    )
    assert [p.reply_id for p in await b.places()] == ["r1", "r2"]  # oldest first
    await a.put_place("r1", "slack:T1", "slack", '{"channel": "C1", "ids": ["1.0", "2.0"]}')  # a second part
    assert [p.reply_id for p in await b.places()] == ["r2", "r1"]
    await b.forget_place("r1")
    assert await a.place("r1") is None
    assert [p.reply_id for p in await a.places(limit=10)] == ["r2"]
