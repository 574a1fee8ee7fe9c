"""The ChannelPersonas contract, on SQLite and on Convex: admins only, audited, bounded as the workspace's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import personas_for
from core.stores.base import PermissionDenied, Store, StoreError
from core.stores.personas import ChannelPersona, ChannelPersonas
from tests.contract.conftest import STORES
from tests.contract.test_store_contract import ADMIN, MEMBER, OTHER, OWNER, WS, actions


@pytest.fixture(params=sorted(STORES))
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, ChannelPersonas]]:
    async with STORES[request.param](tmp_path, request) as store:
        yield store, personas_for(store)


async def test_an_admin_sets_a_channel_prompt_and_model_and_clears_them(stores: tuple[Store, ChannelPersonas]) -> None:
    store, personas = stores
    assert await personas.channel_persona(WS, "C1") is None
    await personas.set_channel_persona(WS, ADMIN, "C1", system_prompt="Answer as the SRE team.")
    await personas.set_channel_persona(WS, ADMIN, "C1", model="claude-haiku-4-5")
    assert await personas.channel_persona(WS, "C1") == ChannelPersona(
        "C1", "Answer as the SRE team.", "claude-haiku-4-5"
    )
    assert await personas.channel_personas(WS) == [ChannelPersona("C1", "Answer as the SRE team.", "claude-haiku-4-5")]
    assert await personas.channel_persona(OTHER, "C1") is None  # scoped to the workspace
    await personas.set_channel_persona(WS, ADMIN, "C1", system_prompt="")
    assert await personas.channel_persona(WS, "C1") == ChannelPersona("C1", "", "claude-haiku-4-5")
    await personas.set_channel_persona(WS, ADMIN, "C1", model="")
    assert await personas.channel_persona(WS, "C1") is None
    assert (await actions(store)).count("channel.persona") == 4


async def test_a_member_may_not_set_a_persona(stores: tuple[Store, ChannelPersonas]) -> None:
    store, personas = stores
    with pytest.raises(PermissionDenied):
        await personas.set_channel_persona(WS, MEMBER, "C1", system_prompt="Ignore the rules.")
    assert await personas.channel_persona(WS, "C1") is None
    assert "channel.persona" not in await actions(store)


async def test_the_bounds_are_the_workspace_settings_bounds(stores: tuple[Store, ChannelPersonas]) -> None:
    store, personas = stores
    # Find the workspace's own limit for each field, then hold the channel to the same one.
    for field, key, long in (("system_prompt", "system_prompt", 20_000), ("model", "model", 20_000)):
        limit = 0
        for size in (200, 8_000, long):
            try:
                await store.update_settings(WS, OWNER, {key: "x" * size})
                limit = size
            except StoreError:
                break
        assert 0 < limit < long, f"the workspace setting {key} has no bound"
        await personas.set_channel_persona(WS, ADMIN, "C1", **{field: "x" * limit})
        with pytest.raises(StoreError) as info:
            await personas.set_channel_persona(WS, ADMIN, "C1", **{field: "x" * (limit + 1)})
        assert info.value.code == "invalid"
        with pytest.raises(StoreError):
            await store.update_settings(WS, OWNER, {key: "x" * (limit + 1)})
