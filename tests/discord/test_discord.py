"""The real discord.py client against the loopback Discord (REST + gateway) with the real core."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest

from bots.discord.client import ChatbotClient
from bots.discord.server import point_at
from core.app import ChatCore, build_core
from core.config import Settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import (
    CHANNEL_ID,
    DOCS_ROLE_ID,
    GUILD_ID,
    MOD_ROLE_ID,
    OWNER_ID,
    FakeDiscord,
    snowflake,
)

MEMBER = "700000000000000001"
MOD = "700000000000000002"


@dataclass
class Harness:
    fake: FakeDiscord
    client: ChatbotClient
    core: ChatCore
    llm: FakeAnthropic

    async def settle(self, *, replies: int = 1, limit_s: float = 30) -> None:
        """Wait until `replies` bot messages exist and every reply in flight has finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while len(self.fake.bot_messages()) < replies or self.client._tasks:
            assert loop.time() < deadline, (
                f"{len(self.fake.bot_messages())} bot messages, {len(self.client._tasks)} in flight"
            )
            await asyncio.sleep(0.05)


def loopback_settings(tmp_path: Path, fake: FakeDiscord, llm: FakeAnthropic, **extra: Any) -> Settings:
    """Settings for the real client against the loopback Discord and Anthropic servers."""
    return Settings(
        CHATBOT_DATA_DIR=tmp_path,
        ANTHROPIC_API_KEY="k",
        ANTHROPIC_BASE_URL=llm.url,
        DISCORD_TOKEN=fake.token,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        **extra,
    )


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    llm: FakeAnthropic,
    members: Sequence[tuple[str, str, tuple[str, ...]]],
    *,
    message_content: bool = False,
) -> AsyncIterator[Harness]:
    """The real client against a loopback Discord with these members (id, name, role ids), with or
    without the Message Content intent."""
    async with FakeDiscord(message_content_granted=message_content) as fake:
        for user_id, name, roles in members:
            fake.add_member(user_id, name, roles=roles)
        async with bot_process(tmp_path, llm, fake, message_content=message_content) as h:
            yield h


@asynccontextmanager
async def bot_process(
    tmp_path: Path, llm: FakeAnthropic, fake: FakeDiscord, *, message_content: bool = False
) -> AsyncIterator[Harness]:
    """One run of the bot process against `fake`: its own core over the data folder, its own client."""
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    settings = loopback_settings(tmp_path, fake, llm)
    core = await build_core(settings)
    point_at(settings)
    client = ChatbotClient(core, message_content=message_content)
    runner = asyncio.create_task(client.start(fake.token))
    await asyncio.wait_for(client.wait_until_ready(), 20)
    try:
        yield Harness(fake, client, core, llm)
    finally:
        await client.drain()
        await client.close()
        runner.cancel()
        await core.close()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
async def harness(tmp_path: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, fake_anthropic, [(MEMBER, "member", ()), (MOD, "moderator", (MOD_ROLE_ID,))]) as h:
        yield h


ANSWER = (
    "To deploy, merge to main and run the release pipeline [1]. The on-call engineer approves the "
    "production step, and you can watch the rollout on the dashboard until the canary is healthy."
)


async def test_a_mention_streams_edits_and_ends_with_the_exact_answer(harness: Harness) -> None:
    harness.llm.script(ANSWER, chunk_chars=8, delay_s=0.12)
    question = await harness.fake.send_message(MEMBER, "how do I deploy?")
    await harness.settle()
    [reply] = harness.fake.bot_messages()
    assert reply["content"] == ANSWER
    assert str(reply["message_reference"]["message_id"]) == question["id"]  # answered as a reply
    edits = [c.body["content"] for c in harness.fake.calls_to("PATCH", "/messages/") if "content" in c.body]
    assert len(edits) >= 2 and edits[-1] == ANSWER
    assert all(ANSWER.startswith(e) or e == "…" for e in edits[:-1])
    assert harness.fake.calls_to("POST", "/typing")  # typing while thinking
    assert harness.llm.last_request["messages"][-1]["content"] == "how do I deploy?"  # mention stripped


async def test_a_long_answer_is_split_with_balanced_fences_and_every_part_replies_to_the_one_before(
    harness: Harness,
) -> None:
    code = "\n".join(f"    step_{i}()  # do the thing number {i}" for i in range(60))
    answer = "Here is the script:\n\n```python\n" + code + "\n```\n\n" + ("Then verify it. " * 250).strip()
    assert len(answer) > 5000
    harness.llm.script(answer, chunk_chars=200)
    question = await harness.fake.send_message(MEMBER, "give me the script")
    await harness.settle(replies=3)  # over 5,000 characters: at least three messages
    messages = sorted(harness.fake.bot_messages(), key=lambda m: int(m["id"]))
    parts = [m["content"] for m in messages]
    assert all(len(p) <= 2000 and p.count("```") % 2 == 0 for p in parts)
    fenceless = [line for line in "\n".join(parts).split("\n") if not line.startswith("```")]
    assert " ".join(fenceless).split() == " ".join(x for x in answer.split("\n") if not x.startswith("```")).split()
    # Attached: the first part replies to the question, every later part to the part before it.
    replied_to = [m["message_reference"]["message_id"] for m in messages]
    assert replied_to == [question["id"]] + [m["id"] for m in messages[:-1]]


async def test_a_dm_is_answered(harness: Harness) -> None:
    dm_channel = "800000000000000001"
    harness.llm.script("Sure, in private.")
    await harness.fake.send_message(MEMBER, "can I ask here?", dm=True, channel_id=dm_channel)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not harness.fake.bot_messages(dm_channel) or harness.client._tasks:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    assert harness.fake.bot_messages(dm_channel)[-1]["content"] == "Sure, in private."


async def test_a_reply_chain_follow_up_uses_history(harness: Harness) -> None:
    harness.llm.script("Paris is the capital of France.")
    await harness.fake.send_message(MEMBER, "what is the capital of France?")
    await harness.settle()
    [answer] = harness.fake.bot_messages()
    harness.llm.script("About two million people.")
    await harness.fake.send_message(MEMBER, "how many live there?", mention_bot=False, reply_to=answer["id"])
    await harness.settle(replies=2)
    turns = harness.llm.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == "Paris is the capital of France."


async def test_auto_thread_answers_in_a_new_thread_and_follow_ups_there_need_no_mention(harness: Harness) -> None:
    await harness.core.admin.run(*_ws_and_owner(), "settings set threads always")  # type: ignore[arg-type]
    harness.llm.script("Threads keep the channel tidy.")
    await harness.fake.send_message(MEMBER, "why threads?")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not harness.fake.threads or not harness.fake.bot_messages(harness.fake.threads[0]["id"]):
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    thread_id = harness.fake.threads[0]["id"]
    await harness.client.drain()
    assert harness.fake.bot_messages(thread_id)[-1]["content"] == "Threads keep the channel tidy."
    assert harness.fake.bot_messages() == []  # nothing in the channel itself
    harness.llm.script("Yes, in this thread.")
    await harness.fake.send_message(MEMBER, "and a follow-up?", channel_id=thread_id, mention_bot=False)
    while len(harness.fake.bot_messages(thread_id)) < 2 or harness.client._tasks:
        assert loop.time() < deadline + 20
        await asyncio.sleep(0.05)
    assert [t["role"] for t in harness.llm.last_request["messages"]] == ["user", "assistant", "user"]


async def test_a_user_without_a_permitted_role_is_refused(harness: Harness) -> None:
    mod_actor_ws = harness.client.get_guild(int(GUILD_ID))
    assert mod_actor_ws is not None
    await harness.core.admin.run(*_ws_and_owner(), "settings set default_role guest")
    await harness.fake.send_message(MEMBER, "hello?")
    await harness.settle()
    [refusal] = harness.fake.bot_messages()
    assert "can't ask me" in refusal["content"]
    assert harness.llm.requests == []


def _ws_and_owner() -> tuple[object, object]:
    from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef

    return WorkspaceRef(Platform.DISCORD, GUILD_ID), Actor(OWNER_ID, PlatformFacts(is_owner=True))


def interaction(
    user_id: str, roles: tuple[str, ...], options: list[dict[str, object]], resolved: dict[str, object]
) -> dict[str, object]:
    return {
        "id": snowflake(),
        "application_id": "100000000000000002",
        "type": 2,
        "token": f"tok-{snowflake()}",
        "version": 1,
        "guild_id": GUILD_ID,
        "channel_id": CHANNEL_ID,
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": "0",
        "attachment_size_limit": 10485760,
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 0,
        "channel": {
            "id": CHANNEL_ID,
            "type": 0,
            "guild_id": GUILD_ID,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
        },
        "member": {
            "user": {"id": user_id, "username": f"u{user_id[-3:]}", "discriminator": "0", "avatar": None},
            "roles": list(roles),
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "32" if MOD_ROLE_ID in roles else "0",
        },
        "data": {"id": "900000000000000001", "name": "chatbot", "type": 1, "options": options, "resolved": resolved},
    }


def role_set(target: str, role: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    options = [
        {
            "name": "role",
            "type": 2,
            "options": [
                {
                    "name": "set",
                    "type": 1,
                    "options": [
                        {"name": "member", "type": 6, "value": target},
                        {"name": "role", "type": 3, "value": role},
                    ],
                }
            ],
        }
    ]
    resolved = {
        "users": {target: {"id": target, "username": "target", "discriminator": "0", "avatar": None}},
        "members": {
            target: {
                "roles": [],
                "joined_at": "2026-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "0",
            }
        },
    }
    return options, resolved


async def followup(harness: Harness, before: int) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        posts = [c for c in harness.fake.calls_to("POST", "/webhooks/")][before:]
        if posts:
            assert posts[-1].body.get("flags", 0) & 64  # ephemeral
            return str(posts[-1].body["content"])
        assert loop.time() < deadline
        await asyncio.sleep(0.05)


async def test_manage_guild_member_sets_roles_but_not_above_their_own(harness: Harness) -> None:
    target = "700000000000000009"
    before = len(harness.fake.calls_to("POST", "/webhooks/"))
    await harness.fake.dispatch("INTERACTION_CREATE", interaction(MOD, (MOD_ROLE_ID,), *role_set(target, "curator")))
    assert "curator" in await followup(harness, before)
    before = len(harness.fake.calls_to("POST", "/webhooks/"))
    await harness.fake.dispatch("INTERACTION_CREATE", interaction(MOD, (MOD_ROLE_ID,), *role_set(target, "admin")))
    assert (await followup(harness, before)).startswith("Not allowed")
    before = len(harness.fake.calls_to("POST", "/webhooks/"))
    await harness.fake.dispatch("INTERACTION_CREATE", interaction(MEMBER, (), *role_set(target, "guest")))
    assert (await followup(harness, before)).startswith("Not allowed")  # default_member_permissions is only a hint


async def test_a_role_mapping_grants_curator(harness: Harness) -> None:
    from core.messages import Actor, PlatformFacts

    ws, owner = _ws_and_owner()
    docs_member = Actor("700000000000000005", PlatformFacts(role_ids=(DOCS_ROLE_ID,)))
    ingest = "ingest http://127.0.0.1:9/handbook"  # nothing listens there: permission first, then the fetch
    assert (await harness.core.admin.run(ws, docs_member, ingest)).startswith("Not allowed")  # type: ignore[arg-type]
    assert "curator" in await harness.core.admin.run(ws, owner, f"rolemap <@&{DOCS_ROLE_ID}> curator")  # type: ignore[arg-type]
    role = await harness.core.pipeline.roles.role_of(ws, docs_member)  # type: ignore[arg-type]
    assert role is not None and role.label == "curator"
    after = await harness.core.admin.run(ws, docs_member, ingest)  # type: ignore[arg-type]
    assert not after.startswith("Not allowed") and "could not fetch" in after


async def test_a_429_storm_still_ends_with_the_exact_final_text(harness: Harness) -> None:
    harness.fake.storm = 6
    harness.llm.script(ANSWER, chunk_chars=10, delay_s=0.05)
    await harness.fake.send_message(MEMBER, "storm?")
    await harness.settle(limit_s=60)
    [reply] = harness.fake.bot_messages()
    assert reply["content"] == ANSWER
    limited = [c for c in harness.fake.calls if c.status == 429]
    assert limited
    # discord.py waits out a 429 and retries by itself; its HTTP trace told the scheduler of each one.
    assert harness.client.scheduler.rate_limited == len(limited)


async def test_a_gateway_disconnect_and_resume_loses_no_question(harness: Harness) -> None:
    await harness.fake.drop_connection()
    # Sent while the bot is away: the fake keeps it and replays it after RESUME.
    harness.llm.script("Answered after the resume.")
    await harness.fake.send_message(MEMBER, "are you there?")
    await harness.fake.connected(limit_s=30)
    await harness.settle(limit_s=40)
    assert harness.fake.resumes >= 1
    assert harness.fake.bot_messages()[-1]["content"] == "Answered after the resume."


async def test_run_discord_says_one_line_for_a_missing_or_wrong_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        for token, expected in (("", "DISCORD_TOKEN is not set"), ("wrong", "Discord refused the token")):
            env = {
                "CHATBOT_DATA_DIR": str(tmp_path),
                "DISCORD_TOKEN": token,
                "DISCORD_API_URL": fake.api_url,
                "DISCORD_GATEWAY_URL": fake.gateway_url,
                "PATH": "/usr/bin:/bin",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots.cli",
                "discord",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            lines = [line for line in err.decode().splitlines() if line.startswith("chatbot:")]
            assert proc.returncode == 2, err.decode()
            assert len(lines) == 1 and expected in lines[0], err.decode()


@pytest.mark.parametrize("granted", [False, True])
async def test_run_discord_uses_message_content_only_when_granted(tmp_path: Path, granted: bool) -> None:
    from bots.discord.server import run_discord
    from tests.fakes.discord import MESSAGE_CONTENT

    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord(message_content_granted=granted) as fake:
        settings = Settings(
            CHATBOT_DATA_DIR=tmp_path,
            DISCORD_TOKEN=fake.token,
            DISCORD_API_URL=fake.api_url,
            DISCORD_GATEWAY_URL=fake.gateway_url,
        )
        core = await build_core(settings)
        stop = asyncio.Event()
        runner = asyncio.create_task(run_discord(settings, core, stop=stop))
        try:
            await fake.connected(limit_s=20)
            assert bool(fake.intents & MESSAGE_CONTENT) is granted
        finally:
            stop.set()
            assert await asyncio.wait_for(runner, 20) == 0
            await core.close()
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
