"""Distribution: two loopback workspaces install the app through Bolt's OAuth v2 flow, each is answered with
its own bot token, uninstalling removes that workspace's token, and tokens are sealed at rest."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
from cryptography.fernet import Fernet

from bots.slack.app import SlackBot
from bots.slack.oauth import INSTALL_PATH, REDIRECT_PATH, OAuthConfig
from core.app import build_installation_store
from core.installations import Installations, TokenCipher
from core.messages import Platform, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import (
    BOT_USER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    FakeSlack,
    event_body,
    signed_headers,
)
from tests.slack.conftest import Harness, serve

if TYPE_CHECKING:
    from core.app import ChatCore

TEAMS = ("T1ALPHA", "T2BETA")


@pytest.fixture
async def installations(core: ChatCore) -> AsyncIterator[Installations]:
    sealed = await build_installation_store(core.settings, core.store)
    yield Installations(sealed, TokenCipher(Fernet.generate_key().decode()))
    await sealed.close()  # type: ignore[attr-defined]


@pytest.fixture
async def distributed(core: ChatCore, slack: FakeSlack, installations: Installations) -> AsyncIterator[Harness]:
    bot = SlackBot(
        core,
        token=None,
        signing_secret=SIGNING_SECRET,
        api_url=slack.api_url,
        native_streaming=False,
        oauth=OAuthConfig(installations, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
    )
    async for harness in serve(bot, slack):
        yield harness


def base(harness: Harness) -> str:
    return harness.url.rsplit("/slack/", 1)[0]


async def start_install(browser: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, str]]:
    """Open the install page at `url` (the app's base URL): the state in Slack's authorize link, and the
    browser cookie that must match it."""
    async with browser.get(url + INSTALL_PATH, allow_redirects=False) as page:
        assert page.status == 200
        html = await page.text()
        cookie = page.cookies["slack-app-oauth-state"]
    link = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', html)
    assert link is not None, html
    state = re.search(r"state=([^&]+)", link.group(1).replace("&amp;", "&"))
    assert state is not None and f"client_id={CLIENT_ID}" in link.group(1)
    # The cookie is Secure (HTTPS in production); over loopback HTTP the browser is told to send it.
    return state.group(1), {"Cookie": f"slack-app-oauth-state={cookie.value}"}


async def install(harness: Harness, team: str) -> aiohttp.ClientResponse:
    return await install_at(base(harness), harness.slack, team)


async def install_at(url: str, slack: FakeSlack, team: str) -> aiohttp.ClientResponse:
    """What a workspace admin's browser does: open the install page, approve, come back with the code."""
    code = slack.add_workspace(team)
    async with aiohttp.ClientSession() as browser:
        state, cookie = await start_install(browser, url)
        params = {"code": code, "state": state}
        async with browser.get(url + REDIRECT_PATH, params=params, headers=cookie) as done:
            await done.read()
            return done


async def mention(harness: Harness, team: str, channel: str, ts: str) -> None:
    event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> hello?", "ts": ts, "channel": channel}
    body = event_body(event, team_id=team)
    reply = await harness.post(body, signed_headers(body, content_type="application/json"))
    assert reply.status == 200


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    distributed: Harness, installations: Installations, core: ChatCore, fake_anthropic: FakeAnthropic
) -> None:
    slack = distributed.slack
    for team in TEAMS:
        done = await install(distributed, team)
        assert done.status == 200
        saved = await installations.find(WorkspaceRef(Platform.SLACK, team))
        assert saved is not None and saved.bot_token == slack.token_of(team)
        assert saved.bot_user_id == BOT_USER_ID and saved.installer_user_id == "UINSTALLER"
    assert len(slack.calls_to("oauth.v2.access")) == 2

    for team in TEAMS:
        await mention(distributed, team, f"C{team}", "1700000900.000100")
    await distributed.settle()
    for team in TEAMS:
        channel = f"C{team}"
        assert slack.replies_in(channel), f"no answer in {team}"
        calls = [c for c in slack.calls if c.args.get("channel") == channel]
        assert calls and {c.team for c in calls} == {team}, "every call for a workspace uses its own token"

    # At rest the token is sealed: neither the row nor the file holds it in the clear.
    path = core.settings.data_dir / "chatbot.sqlite"
    with sqlite3.connect(path) as db:
        sealed = dict(db.execute("SELECT ws, sealed_token FROM installations").fetchall())
    assert set(sealed) == {f"slack:{t}" for t in TEAMS}
    for team in TEAMS:
        assert sealed[f"slack:{team}"] != slack.token_of(team)
        assert slack.token_of(team) not in sealed[f"slack:{team}"]
    raw = path.read_bytes() + (
        path.with_name("chatbot.sqlite-wal").read_bytes() if path.with_name("chatbot.sqlite-wal").exists() else b""
    )
    assert not any(slack.token_of(t).encode() in raw for t in TEAMS)


async def test_the_state_is_checked_and_usable_once(distributed: Harness) -> None:
    code = distributed.slack.add_workspace("T3GAMMA")
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(
            base(distributed) + REDIRECT_PATH, params={"code": code, "state": "forged"}, allow_redirects=False
        ) as forged,
    ):
        assert forged.status >= 400
    assert not distributed.slack.calls_to("oauth.v2.access", ok_only=False), "no code exchange without a valid state"
    async with aiohttp.ClientSession() as browser:
        state, cookie = await start_install(browser, base(distributed))
        params = {"code": code, "state": state}
        async with browser.get(base(distributed) + REDIRECT_PATH, params=params) as no_cookie:
            assert no_cookie.status >= 400, "the state must come back in the browser that started the install"
        async with browser.get(base(distributed) + REDIRECT_PATH, params=params, headers=cookie) as first:
            assert first.status == 200
        async with browser.get(base(distributed) + REDIRECT_PATH, params=params, headers=cookie) as again:
            assert again.status >= 400, "a state is consumed by its first use"


async def test_uninstall_removes_that_workspaces_token_only(distributed: Harness, installations: Installations) -> None:
    for team in TEAMS:
        assert (await install(distributed, team)).status == 200
    body = event_body({"type": "app_uninstalled"}, team_id=TEAMS[0])
    reply = await distributed.post(body, signed_headers(body, content_type="application/json"))
    assert reply.status == 200
    await distributed.settle()
    distributed.slack.revoke(TEAMS[0])
    assert await installations.find(WorkspaceRef(Platform.SLACK, TEAMS[0])) is None
    assert await installations.find(WorkspaceRef(Platform.SLACK, TEAMS[1])) is not None

    await mention(distributed, TEAMS[0], "CGONE", "1700000950.000100")
    await mention(distributed, TEAMS[1], "CSTAYS", "1700000951.000100")
    await distributed.settle()
    assert not distributed.slack.replies_in("CGONE")
    assert distributed.slack.replies_in("CSTAYS")


async def test_a_file_is_downloaded_with_the_token_of_the_workspace_it_was_shared_in(
    distributed: Harness, fake_anthropic: FakeAnthropic
) -> None:
    slack = distributed.slack
    for team in TEAMS:
        assert (await install(distributed, team)).status == 200
    notes = slack.upload("notes.txt", b"the release is on Friday\n", "text/plain")
    event = {
        "type": "app_mention",
        "subtype": "file_share",
        "user": "U1",
        "text": f"<@{BOT_USER_ID}> when is the release?",
        "ts": "1700000990.000100",
        "channel": "CFILES",
        "files": [notes],
    }
    body = event_body(event, team_id=TEAMS[1])
    assert (await distributed.post(body, signed_headers(body, content_type="application/json"))).status == 200
    await distributed.settle()
    assert slack.downloads == [(notes["id"], f"Bearer {slack.token_of(TEAMS[1])}")]
    [block, _question] = fake_anthropic.last_request["messages"][-1]["content"]
    assert block["source"]["data"] == "the release is on Friday\n"
