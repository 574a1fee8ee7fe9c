"""The Discord process serves /healthz and /readyz on CHATBOT_HEALTH_PORT while it runs."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import discord

from bots.discord.server import run_discord
from core.app import build_core
from core.config import Settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_discord_process_answers_healthz_and_readyz(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    port = free_port()
    async with FakeDiscord() as fake:
        settings = Settings(
            CHATBOT_DATA_DIR=tmp_path,
            ANTHROPIC_API_KEY="k",
            ANTHROPIC_BASE_URL=fake_anthropic.url,
            DISCORD_TOKEN=fake.token,
            DISCORD_API_URL=fake.api_url,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            CHATBOT_HEALTH_PORT=port,
        )
        core = await build_core(settings)
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
        finally:
            stop.set()
            assert await asyncio.wait_for(runner, 20) == 0
            await core.close()
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
        with socket.socket() as s:  # the listener is gone with the process's work
            assert s.connect_ex(("127.0.0.1", port)) != 0
