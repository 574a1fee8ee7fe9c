"""Discord sharding: one process runs several shards; several processes cover all shards and share the
bot's global budget through the store (the loopback Discord routes each guild to its shard)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import discord
import pytest

from bots.cli import main
from bots.discord.client import ChatbotClient
from bots.discord.server import point_at
from core.app import build_core
from tests.contract.test_leases_processes import most_in_window
from tests.discord.test_discord import loopback_settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.support.convex_server import ConvexServer

OTHER_GUILD = "200000000004194305"  # (id >> 22) % 2 == 1: the second of two shards
OTHER_CHANNEL = "300000000000000002"
MEMBER = "700000000000000001"


async def settle(fake: FakeDiscord, channels: list[str], limit_s: float, done: Callable[[str], bool]) -> None:
    """Wait until the latest bot message of every channel shows a finished answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not all(fake.bot_messages(c) and done(fake.bot_messages(c)[-1]["content"]) for c in channels):
        assert loop.time() < deadline, [m["content"][-80:] for c in channels for m in fake.bot_messages(c)][:4]
        await asyncio.sleep(0.1)


async def test_one_process_runs_two_shards_and_each_guild_is_served_by_its_shard(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        fake.add_guild(OTHER_GUILD, OTHER_CHANNEL)
        settings = loopback_settings(tmp_path, fake, fake_anthropic)
        core = await build_core(settings)
        point_at(settings)
        client = ChatbotClient(core, shard_ids=[0, 1], shard_count=2, identify_interval_s=0.0)
        runner = asyncio.create_task(client.start(fake.token))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 20)
            assert sorted(fake.shards_identified) == [(0, 2), (1, 2)]
            assert {g.id: g.shard_id for g in client.guilds} == {int(GUILD_ID): 0, int(OTHER_GUILD): 1}
            # The loopback model's default answer repeats the question: each reply names its own.
            await fake.send_message(MEMBER, "what about the first server.")
            await fake.send_message(MEMBER, "what about the second server.", channel_id=OTHER_CHANNEL)
            await settle(fake, [CHANNEL_ID, OTHER_CHANNEL], 20, lambda text: "server." in text)
            assert "the first server." in fake.bot_messages(CHANNEL_ID)[-1]["content"]
            assert "the second server." in fake.bot_messages(OTHER_CHANNEL)[-1]["content"]
        finally:
            await client.drain()
            await client.close()
            runner.cancel()
            await core.close()
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


def test_shard_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discord", "--shard-ids", "0,4", "--shard-count", "4"]) == 2
    assert "every shard id must be from 0 to 3" in capsys.readouterr().err
    assert main(["discord", "--shard-ids", "1"]) == 2
    assert "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT" in capsys.readouterr().err


CHANNELS = 30  # per guild: enough edits that two processes with a budget each would pass 50/s together


async def test_two_shard_processes_share_the_global_budget(
    tmp_path: Path, fake_anthropic: FakeAnthropic, convex_server: ConvexServer
) -> None:
    convex_server.reset()
    first = [str(310000000000000000 + i) for i in range(CHANNELS)]
    second = [str(320000000000000000 + i) for i in range(CHANNELS)]
    async with FakeDiscord() as fake:
        fake.guilds = {GUILD_ID: first}
        fake.add_guild(OTHER_GUILD, *second)
        env = {
            **os.environ,
            "CHATBOT_DATA_DIR": str(tmp_path),
            "ANTHROPIC_API_KEY": "k",
            "ANTHROPIC_BASE_URL": fake_anthropic.url,
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_URL": fake.api_url,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "CONVEX_URL": convex_server.url,
            "CONVEX_SERVICE_SECRET": convex_server.secret,
        }
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bots.cli", "discord", "--shard-ids", str(shard), "--shard-count", "2",
                env=env, cwd=Path(__file__).parents[2],
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            for shard in (0, 1)
        ]  # fmt: skip
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(fake.shards_identified) < 2:
                assert loop.time() < deadline and all(p.returncode is None for p in procs), "shards did not connect"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # GUILD_CREATE handled
            answer = "This answer grows for a few seconds, so every channel keeps editing its reply. " * 4
            fake_anthropic.default_chunk_chars, fake_anthropic.default_delay_s = 8, 0.05
            for _ in range(2 * CHANNELS):
                fake_anthropic.script(answer.strip(), chunk_chars=8, delay_s=0.05)
            started = loop.time()
            for channel in first + second:
                await fake.send_message(MEMBER, "tell me everything", channel_id=channel)
            await settle(fake, first + second, 90, lambda text: text == answer.strip())
        finally:
            for proc in procs:
                proc.terminate()
            errors = [(await asyncio.wait_for(p.communicate(), 30))[1].decode()[-3000:] for p in procs]
        assert all(fake.bot_messages(c)[-1]["content"] == answer.strip() for c in first + second), errors
        writes = [c.at for c in fake.calls if c.at >= started and c.path.startswith("/channels/")]
        # Each process alone would send up to its whole bucket (60 channels want ~60 writes a second:
        # without shared budgets this load draws 429s); together they stay within Discord's 50/s.
        assert not fake.rate_limited, fake.rate_limited[:3]
        assert most_in_window(writes, 1.0) <= 50
        # Both shard processes wrote (each guild's events reach only its shard's process).
        assert {c.path.split("/")[2] for c in fake.calls if "/messages" in c.path} >= set(first + second)
