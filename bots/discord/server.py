"""`chatbot discord`: connect, answer until stopped, drain replies in flight."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import discord
import yarl

from bots.discord.client import ChatbotClient
from core.app import ChatCore
from core.config import MissingSetting, Settings, secret


def point_at(settings: Settings) -> None:
    """DISCORD_API_URL / DISCORD_GATEWAY_URL redirect discord.py (to a loopback fake in tests, or a proxy)."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run_discord(
    settings: Settings, core: ChatCore, *, message_content: bool = False, stop: asyncio.Event | None = None
) -> int:
    token = secret(settings.discord_token)
    if not token:
        raise MissingSetting("DISCORD_TOKEN", purpose="the bot token from the Discord developer portal")
    point_at(settings)
    client = ChatbotClient(core, message_content=message_content)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            loop.add_signal_handler(sig, stop.set)
    async with client:
        runner = asyncio.create_task(client.start(token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            stopper.cancel()
            error = runner.exception()
            refused = isinstance(error, discord.ConnectionClosed) and error.code == 4004
            if isinstance(error, discord.LoginFailure) or refused:
                print("chatbot: Discord refused the token (check DISCORD_TOKEN)", file=sys.stderr)
                return 2
            if error is not None:
                print(f"chatbot: the Discord connection failed: {error}", file=sys.stderr)
                return 1
            return 0
        await client.drain()
    runner.cancel()
    return 0
