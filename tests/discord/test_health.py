"""The Discord process serves /healthz, /readyz and /metrics on CHATBOT_HEALTH_PORT while it runs."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import discord

from bots.discord.server import run_discord
from core.app import build_core
from tests.discord.test_discord import loopback_settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.slack.test_server import free_port
from tests.support.metrics import Samples, scrape, value

MEMBER = "700000000000000001"


async def test_the_discord_process_answers_healthz_readyz_and_metrics(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    port = free_port()
    async with FakeDiscord() as fake:
        fake.add_member(MEMBER, "member")
        settings = loopback_settings(tmp_path, fake, fake_anthropic, CHATBOT_HEALTH_PORT=port)
        core = await build_core(settings)
        core.readiness.timeout_s = 15.0  # a loaded test machine must not make the parts look down
        stop = asyncio.Event()
        runner = asyncio.create_task(run_discord(settings, core, stop=stop))
        try:
            await fake.connected(limit_s=20)
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
                async with http.get("/healthz") as response:
                    assert (response.status, await response.text()) == (200, "ok")
                async with http.get("/readyz") as response:
                    body = await response.json()
                    assert response.status == 200, body
                    assert set(body["checks"]) == {"store", "retriever", "llm"}
                    assert body["checks"]["llm"]["detail"].startswith("anthropic")
                fake_anthropic.script("Deploys go through the release pipeline.", chunk_chars=8, delay_s=0.05)
                await fake.send_message(MEMBER, "how do I deploy?")
                async with asyncio.timeout(30):
                    while not _answered(await _scrape(http)):  # noqa: ASYNC110 - polls the endpoint, as a scraper would
                        await asyncio.sleep(0.05)
                samples = await _scrape(http)
                assert value(samples, "chatbot_replies_in_flight", platform="discord") == 0
                posts = fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")
                edits = fake.calls_to("PATCH", f"/channels/{CHANNEL_ID}/messages")
                granted = value(samples, "chatbot_platform_requests_total", platform="discord", scope="channel")
                assert granted >= len(posts) + len(edits) >= 2
                assert value(samples, "chatbot_first_text_seconds_count", platform="discord") == 1
        finally:
            stop.set()
            assert await asyncio.wait_for(runner, 20) == 0
            await core.close()
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
        with socket.socket() as s:  # the listener is gone with the process's work
            assert s.connect_ex(("127.0.0.1", port)) != 0


async def _scrape(http: aiohttp.ClientSession) -> Samples:
    return await scrape(http, "/metrics")


def _answered(samples: Samples) -> bool:
    return value(samples, "chatbot_replies_total", platform="discord", outcome="answered") == 1
