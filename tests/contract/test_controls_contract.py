"""The ReplyControlsStore contract, on SQLite and on Convex: kept per workspace, replaced whole, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import controls_for
from core.stores.base import Store, StoreError
from core.stores.controls import ReplyControl, ReplyControlsStore
from tests.contract.conftest import STORES
from tests.contract.test_store_contract import OTHER, WS


@pytest.fixture(params=sorted(STORES))
async def controls(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplyControlsStore]:
    store: Store
    async with STORES[request.param](tmp_path, request) as store:
        yield controls_for(store)


def record(ref: str = "a1b2", **changes: object) -> ReplyControl:
    fields: dict[str, object] = {
        "ref": ref,
        "asker": "U-member",
        "question": "when do we deploy? ✅",
        "context": '{"channel_id": "C1", "thread_id": "1.0", "message_id": "1.0"}',
        "state": "complete",
        "answer": "On Fridays [1].",
        "sources": ("https://docs/deploy",),
        "model": "claude-x",
    }
    fields.update(changes)
    return ReplyControl(**fields)  # type: ignore[arg-type]


async def test_a_kept_record_comes_back_whole(controls: ReplyControlsStore) -> None:
    await controls.put_control(WS, record())
    found = await controls.control(WS, "a1b2")
    assert found is not None and found.updated_at > 0
    assert (found.asker, found.question, found.context) == ("U-member", "when do we deploy? ✅", record().context)
    assert (found.state, found.answer, found.sources, found.model) == (
        "complete",
        "On Fridays [1].",
        ("https://docs/deploy",),
        "claude-x",
    )
    assert await controls.control(WS, "unknown") is None


async def test_a_record_is_found_only_in_its_own_workspace(controls: ReplyControlsStore) -> None:
    await controls.put_control(WS, record())
    assert await controls.control(OTHER, "a1b2") is None
    await controls.put_control(OTHER, record(asker="U-other"))
    found = await controls.control(WS, "a1b2")
    assert found is not None and found.asker == "U-member"


async def test_a_second_put_replaces_the_first(controls: ReplyControlsStore) -> None:
    await controls.put_control(WS, record(state="cancelled", answer="On Fri", sources=()))
    await controls.put_control(WS, record(answer="On Fridays, always."))
    found = await controls.control(WS, "a1b2")
    assert found is not None and (found.state, found.answer) == ("complete", "On Fridays, always.")


async def test_bounds(controls: ReplyControlsStore) -> None:
    with pytest.raises(StoreError):
        await controls.put_control(WS, record(answer="x" * 100_000))
    with pytest.raises(StoreError):
        await controls.put_control(WS, record(context="x" * 100_000))
    with pytest.raises(StoreError):
        await controls.put_control(WS, record(state="streaming"))
    with pytest.raises(StoreError):
        await controls.put_control(WS, record(sources=tuple(f"https://d/{i}" for i in range(51))))
    with pytest.raises(StoreError):
        await controls.put_control(WS, record(ref=""))
    assert await controls.control(WS, "a1b2") is None  # nothing half-written
