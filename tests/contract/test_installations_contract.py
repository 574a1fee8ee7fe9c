"""The installations port (sealed bot tokens, one-use OAuth states): one suite, SQLite and Convex."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.installations import Installation, Installations, InvalidTokenKey, TokenCipher
from core.messages import Platform, WorkspaceRef
from core.stores.base import StoreError
from core.stores.convex import ConvexStore
from core.stores.installations_convex import ConvexInstallations
from core.stores.installations_sqlite import SqliteInstallations

T1, T2 = WorkspaceRef(Platform.SLACK, "T1"), WorkspaceRef(Platform.SLACK, "T2")
TOKEN_1, TOKEN_2 = "xoxb-1-contract-token-one", "xoxb-2-contract-token-two"


@pytest.fixture(params=["convex", "sqlite"])
async def sealed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteInstallations | ConvexInstallations]:
    if request.param == "sqlite":
        store = await SqliteInstallations.open(tmp_path / "chatbot.sqlite")
        yield store
        await store.close()
        return
    server = request.getfixturevalue("convex_server")
    server.reset()
    convex = ConvexStore(server.url, server.secret)
    yield ConvexInstallations(convex)
    await convex.close()


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


def installation(ws: WorkspaceRef, token: str, **more: object) -> Installation:
    return Installation(ws, token, bot_id="B1", bot_user_id="UBOT", bot_scopes="chat:write", installed_at=1.0, **more)  # type: ignore[arg-type]


async def test_save_find_replace_and_delete_per_workspace(sealed: SqliteInstallations, key: str) -> None:
    installs = Installations(sealed, TokenCipher(key))
    assert await installs.find(T1) is None
    await installs.save(installation(T1, TOKEN_1, team_name="Alpha"))
    await installs.save(installation(T2, TOKEN_2))
    found = await installs.find(T1)
    assert found is not None and found.bot_token == TOKEN_1 and found.team_name == "Alpha"
    await installs.save(installation(T1, "xoxb-1-reinstalled"))  # a reinstall replaces the token
    again = await installs.find(T1)
    assert again is not None and again.bot_token == "xoxb-1-reinstalled"
    assert await installs.delete(T1) is True
    assert await installs.delete(T1) is False
    assert await installs.find(T1) is None
    other = await installs.find(T2)
    assert other is not None and other.bot_token == TOKEN_2


async def test_the_store_only_ever_sees_the_sealed_token(sealed: SqliteInstallations, key: str) -> None:
    await Installations(sealed, TokenCipher(key)).save(installation(T1, TOKEN_1))
    stored = await sealed.get_installation(T1)  # what a query of the store returns
    assert stored is not None and TOKEN_1 not in stored.bot_token and stored.bot_token.startswith("gAAAA")
    with pytest.raises(InvalidTokenKey, match="CHATBOT_TOKEN_KEY"):
        await Installations(sealed, TokenCipher(Fernet.generate_key().decode())).find(T1)
    with pytest.raises(InvalidTokenKey, match="not set"):
        await Installations(sealed, TokenCipher(None)).save(installation(T2, TOKEN_2))
    assert "xoxb" not in repr(await Installations(sealed, TokenCipher(key)).find(T1))


async def test_oauth_states_are_used_once_and_expire(sealed: SqliteInstallations, key: str) -> None:
    installs = Installations(sealed, TokenCipher(key))
    await installs.issue_state("state-live")
    assert await installs.consume_state("state-live") is True
    assert await installs.consume_state("state-live") is False
    assert await installs.consume_state("never-issued") is False
    await sealed.put_state("state-old", time.time() - 1)
    assert await installs.consume_state("state-old") is False


async def test_bounds_are_the_rule_books(sealed: SqliteInstallations, key: str) -> None:
    with pytest.raises(StoreError):
        await sealed.put_state("s" * 201, time.time() + 60)
    with pytest.raises(StoreError):
        await sealed.put_installation(installation(T1, "x" * 2001))
    with pytest.raises(StoreError):
        await sealed.put_installation(installation(T1, ""))
    assert await sealed.get_installation(T1) is None
