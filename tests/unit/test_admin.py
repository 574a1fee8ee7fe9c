"""The one admin command layer: targets looked up on the platform, every refusal audited once, no raw errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.admin import AdminCommands
from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from core.roles import Role
from core.stores.base import StoreUnavailable
from core.stores.sqlite import SqliteStore

WS = WorkspaceRef(Platform.SLACK, "T-admin")
OWNER = Actor("U-owner", PlatformFacts(is_owner=True))
ADMIN = Actor("U-admin", PlatformFacts(is_admin=True))
MEMBER = Actor("U-member")


class Platform_:
    """What the platform says about each user (a Slack users.info or Discord guild member lookup)."""

    def __init__(self, facts: dict[str, PlatformFacts]) -> None:
        self.known = facts
        self.asked: list[str] = []

    async def facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
        self.asked.append(user_id)
        return self.known.get(user_id, PlatformFacts())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "s.sqlite")
    yield store
    await store.close()


async def trail(store: SqliteStore) -> list[tuple[str, str]]:
    return [(e.action, e.detail) for e in reversed(await store.audit_entries(WS, OWNER, limit=100))]


async def test_a_platform_owner_without_a_row_cannot_be_blocked_by_an_admin(store: SqliteStore) -> None:
    admin = AdminCommands(store)
    users = Platform_({"U-boss": PlatformFacts(is_owner=True)})
    text = await admin.run(WS, ADMIN, "role block <@U-boss>", users=users)
    assert text.startswith("Not allowed: an admin cannot block an owner"), text
    assert users.asked == ["U-boss"]
    membership = await store.membership(WS, "U-boss")
    assert membership is None or not membership.blocked
    # Without the lookup the store would only see the default role: the lookup is what protects the owner.
    assert (await admin.run(WS, ADMIN, "role block <@U-boss>")).startswith("<@U-boss> is blocked")


async def test_every_refusal_is_audited_once(store: SqliteStore) -> None:
    admin = AdminCommands(store)
    await admin.run(WS, MEMBER, "role set <@U-x> curator")  # refused by the store, in its write
    await admin.run(WS, MEMBER, "audit")  # a read, refused here
    await admin.run(WS, MEMBER, "settings set system_prompt hi")
    assert await trail(store) == [
        ("refused", "forbidden: role set U-x curator"),
        ("refused", "forbidden: audit"),
        ("refused", "forbidden: settings system_prompt"),
    ]


async def test_a_demotion_that_changes_nothing_says_so(store: SqliteStore) -> None:
    admin = AdminCommands(store)
    users = Platform_({"U-padmin": PlatformFacts(is_admin=True)})
    text = await admin.run(WS, OWNER, "role set <@U-padmin> member", users=users)
    assert text.startswith("No change: that changes nothing: they stay an admin through their platform role"), text
    assert await store.membership(WS, "U-padmin") is None
    text = await admin.run(WS, ADMIN, "role set <@U-x> guest")
    assert "workspace default role" in text and text.startswith("No change:")


async def test_failures_never_show_raw_exception_text(store: SqliteStore) -> None:
    class Broken:
        async def facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
            raise RuntimeError("socket.gaierror: secret internal host name")

    admin = AdminCommands(store)
    text = await admin.run(WS, OWNER, "role set <@U-x> curator", users=Broken())
    assert text == "Sorry, that command failed on my side. Please try again."

    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("Convex at http://10.1.2.3:3210 is unavailable (ConnectError)")

    store.set_role = down  # type: ignore[method-assign]
    text = await admin.run(WS, OWNER, "role set <@U-x> curator")
    assert "10.1.2.3" not in text and "nothing was changed" in text


async def test_role_list_and_settings_need_their_permission(store: SqliteStore) -> None:
    admin = AdminCommands(store)
    await store.set_role(WS, OWNER, "U-c", Role.CURATOR)
    assert (await admin.run(WS, Actor("U-c"), "role list")).startswith("Not allowed")
    assert (await admin.run(WS, ADMIN, "role list")).startswith("**Roles**")
