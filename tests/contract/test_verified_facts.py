"""Class 8: on a deployment holding the platform's bot token, Convex verifies platform facts itself.

The real functions (Convex test server) ask the loopback Slack's users.info and Discord's guild member
endpoint; what a caller claims about
an actor or a target no longer counts, and without a verified fact only the stored role does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.fernet import Fernet
from slack_sdk.web.async_client import AsyncWebClient

from core.installations import Installation, Installations, TokenCipher
from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from core.roles import Role
from core.stores.base import DocumentRecord, PermissionDenied
from core.stores.convex import ConvexStore
from core.stores.installations_convex import ConvexInstallations
from tests.fakes.discord import GUILD_ID, MOD_ROLE_ID, OWNER_ID, FakeDiscord
from tests.fakes.slack import CLIENT_ID, CLIENT_SECRET, TEAM_ID, FakeSlack
from tests.support.convex_server import ConvexServer, slack_verifies

WS = WorkspaceRef(Platform.SLACK, TEAM_ID)
FORGED_OWNER = PlatformFacts(is_owner=True)


@pytest.fixture
async def verifying(convex_server: ConvexServer) -> AsyncIterator[tuple[ConvexStore, FakeSlack]]:
    convex_server.reset()
    async with slack_verifies(convex_server) as slack:
        slack.add_user("U-boss", is_primary_owner=True)
        slack.add_user("U-admin", is_admin=True)
        slack.add_user("U-member")
        store = ConvexStore(convex_server.url, convex_server.secret)
        try:
            yield store, slack
        finally:
            await store.close()


async def denied(call: object, code: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        await call  # type: ignore[misc]
    assert info.value.code == code, info.value


async def test_a_forged_owner_claim_counts_for_nothing(verifying: tuple[ConvexStore, FakeSlack]) -> None:
    store, slack = verifying
    await denied(store.set_role(WS, Actor("U-member", FORGED_OWNER), "U-x", Role.ADMIN), "forbidden")
    await denied(store.update_settings(WS, Actor("U-member", FORGED_OWNER), {"system_prompt": "pwned"}), "forbidden")
    assert (await store.settings(WS)).system_prompt == ""
    assert any(c.method == "users.info" for c in slack.calls)


async def test_the_functions_refuse_claims_sent_past_the_client(
    verifying: tuple[ConvexStore, FakeSlack], convex_server: ConvexServer
) -> None:
    # ConvexStore sends ids only; a caller holding the secret who sends claims anyway is refused outright.
    forged = {"userId": "U-member", "isOwner": True, "isAdmin": True, "roleIds": []}
    args = {"secret": convex_server.secret, "workspace": WS.key, "actor": forged, "user": "U-x", "role": 4}
    target = {"secret": convex_server.secret, "workspace": WS.key, "actor": {"userId": "U-admin"}, "user": "U-boss"}
    target |= {"blocked": True, "targetFacts": {"isOwner": False, "isAdmin": False, "roleIds": []}}
    async with httpx.AsyncClient(base_url=convex_server.url) as client:
        users = ["U-member", "U-admin", "U-boss"]
        refresh = {"secret": convex_server.secret, "workspace": WS.key, "users": users}
        await client.post("/api/action", json={"path": "facts:refresh", "args": refresh})
        claimed = await client.post("/api/mutation", json={"path": "workspaces:setRole", "args": args})
        hidden = await client.post("/api/mutation", json={"path": "workspaces:setBlocked", "args": target})
        args["actor"] = {"userId": "U-member"}
        plain = await client.post("/api/mutation", json={"path": "workspaces:setRole", "args": args})
    assert claimed.json()["status"] == "error" and "isOwner" in claimed.json()["errorMessage"]
    assert hidden.json()["status"] == "error" and "targetFacts" in hidden.json()["errorMessage"]
    assert plain.json()["value"]["refused"]["code"] == "forbidden"
    store, _ = verifying
    assert await store.membership(WS, "U-x") is None
    boss = await store.membership(WS, "U-boss")
    assert boss is None or not boss.blocked


async def test_without_any_token_claims_grant_nothing(convex_server: ConvexServer) -> None:
    """A deployment holding no platform token verifies nothing: a claimed owner or admin is judged by
    its stored role alone, and the Python side does not even send the claim."""
    convex_server.reset()
    store = ConvexStore(convex_server.url, convex_server.secret)
    claimed = Actor("U-claimer", PlatformFacts(is_owner=True, is_admin=True, role_ids=("R-admins",)))
    try:
        await denied(store.set_role(WS, claimed, "U-x", Role.ADMIN), "forbidden")
        await denied(store.update_settings(WS, claimed, {"system_prompt": "pwned"}), "forbidden")
        await denied(
            store.put_document(WS, claimed, DocumentRecord("https://x", "X", "h", 1, "ready", 0.0)), "forbidden"
        )
        with pytest.raises(PermissionDenied):
            await store.audit_entries(WS, claimed)
        assert await store.membership(WS, "U-x") is None
        assert (await store.settings(WS)).system_prompt == ""
    finally:
        await store.close()
    async with httpx.AsyncClient(base_url=convex_server.url) as client:
        forged = {"userId": "U-claimer", "isOwner": True, "isAdmin": True, "roleIds": []}
        args = {"secret": convex_server.secret, "workspace": WS.key, "actor": forged, "changes": {"systemPrompt": "x"}}
        response = await client.post("/api/mutation", json={"path": "workspaces:updateSettings", "args": args})
    assert response.json()["status"] == "error"


async def test_a_real_owner_needs_no_claim(verifying: tuple[ConvexStore, FakeSlack]) -> None:
    store, _ = verifying
    await store.set_role(WS, Actor("U-boss"), "U-x", Role.ADMIN)  # no facts passed: Slack says owner
    membership = await store.membership(WS, "U-x")
    assert membership is not None and membership.role is Role.ADMIN


async def test_a_target_is_judged_by_what_slack_says(
    verifying: tuple[ConvexStore, FakeSlack],
) -> None:
    store, _ = verifying
    # The admin's caller leaves the target's facts out: Convex still finds U-boss is the primary owner.
    await denied(store.set_blocked(WS, Actor("U-admin"), "U-boss", True), "peer_or_higher")
    boss = await store.membership(WS, "U-boss")
    assert boss is None or not boss.blocked


async def test_without_a_verified_fact_the_stored_role_alone_counts(verifying: tuple[ConvexStore, FakeSlack]) -> None:
    store, slack = verifying
    slack.fail("users.info", times=10, error="ratelimited")
    await denied(store.set_role(WS, Actor("U-boss"), "U-x", Role.ADMIN), "forbidden")


async def test_discord_facts_come_from_the_guild_member_endpoint(convex_server: ConvexServer) -> None:
    convex_server.reset()
    ws = WorkspaceRef(Platform.DISCORD, GUILD_ID)
    async with FakeDiscord() as discord:
        discord.add_member("600000000000000001", "mod", roles=(MOD_ROLE_ID,))  # Manage Guild: an admin
        discord.add_member("600000000000000002", "plain")
        env = {"DISCORD_BOT_TOKEN": discord.token, "DISCORD_API_URL": discord.api_url}
        await asyncio.to_thread(convex_server.set_env, **env)
        store = ConvexStore(convex_server.url, convex_server.secret)
        try:
            forged = Actor("600000000000000002", PlatformFacts(is_owner=True, is_admin=True))
            await denied(store.set_role(ws, forged, "600000000000000009", Role.CURATOR), "forbidden")
            await store.set_role(ws, Actor("600000000000000001"), "600000000000000009", Role.CURATOR)
            # The guild owner, as Discord says, is protected from the Manage Guild admin.
            await denied(store.set_blocked(ws, Actor("600000000000000001"), OWNER_ID, True), "peer_or_higher")
        finally:
            await store.close()
            await asyncio.to_thread(convex_server.set_env, DISCORD_BOT_TOKEN=None, DISCORD_API_URL=None)


async def test_each_oauth_workspace_is_verified_with_its_own_token(convex_server: ConvexServer) -> None:
    """Two workspaces install the app (oauth.v2.access on the loopback Slack); the bot seals each token
    with CHATBOT_TOKEN_KEY into Convex, and Convex, holding the same key and no SLACK_BOT_TOKEN, opens the
    installation's token and asks users.info with it: each workspace's admin is verified by its own team."""
    convex_server.reset()
    key = Fernet.generate_key().decode()
    teams = ("T1ALPHA", "T2BETA")
    async with FakeSlack() as slack:
        store = ConvexStore(convex_server.url, convex_server.secret)
        installations = Installations(ConvexInstallations(store), TokenCipher(key))
        await asyncio.to_thread(convex_server.set_env, CHATBOT_TOKEN_KEY=key, SLACK_API_URL=f"{slack.url}/api")
        try:
            web = AsyncWebClient(base_url=slack.api_url)
            for team in teams:
                grant = await web.oauth_v2_access(
                    client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=slack.add_workspace(team)
                )
                ws = WorkspaceRef(Platform.SLACK, team)
                await installations.save(Installation(ws, bot_token=str(grant["access_token"])))
                slack.add_user(f"U-admin-{team}", is_admin=True, team_id=team)
            for team in teams:
                ws = WorkspaceRef(Platform.SLACK, team)
                await store.set_role(ws, Actor(f"U-admin-{team}"), "U-x", Role.CURATOR)
                membership = await store.membership(ws, "U-x")
                assert membership is not None and membership.role is Role.CURATOR
                asked = [c for c in slack.calls_to("users.info") if c.args.get("user") == f"U-admin-{team}"]
                assert asked and {c.team for c in asked} == {team}, "asked with that workspace's own token"
            # The other workspace's token does not know this admin: no rank there, whatever is claimed.
            beta = WorkspaceRef(Platform.SLACK, teams[1])
            await denied(
                store.set_role(beta, Actor(f"U-admin-{teams[0]}", FORGED_OWNER), "U-y", Role.CURATOR), "forbidden"
            )
        finally:
            await store.close()
            await asyncio.to_thread(convex_server.set_env, CHATBOT_TOKEN_KEY=None, SLACK_API_URL=None)
