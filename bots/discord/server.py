"""`chatbot discord`: connect, answer until stopped, drain replies in flight."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import discord
import structlog
import yarl

from bots.discord.client import ChatbotClient
from bots.ops import OpsServer
from core.app import ChatCore
from core.config import MissingSetting, Settings, secret

log = structlog.get_logger(__name__)


def point_at(settings: Settings) -> None:
    """DISCORD_API_URL / DISCORD_GATEWAY_URL redirect discord.py (to a loopback fake in tests, or a proxy)."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run_discord(settings: Settings, core: ChatCore, *, stop: asyncio.Event | None = None) -> int:
    """Run with the privileged message-content intent when the application has it (follow-ups and
    answer-without-mention channels then work without a mention), and without it otherwise."""
    token = secret(settings.discord_token)
    if not token:
        raise MissingSetting("DISCORD_TOKEN", purpose="the bot token from the Discord developer portal")
    point_at(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            loop.add_signal_handler(sig, stop.set)
    ops = OpsServer(core, port=settings.health_port) if settings.health_port is not None else None
    if ops is not None:
        await ops.start()  # /healthz, /readyz, /metrics while connecting too
    try:
        code = await _run(core, settings, token, stop, message_content=True)
        if code is None:
            log.warning("discord.message_content_not_granted", hint="mentions, replies and DMs still work")
            code = await _run(core, settings, token, stop, message_content=False)
    finally:
        if ops is not None:
            await ops.close()
    return code or 0


async def _recover_when_ready(client: ChatbotClient, core: ChatCore) -> None:
    """Once connected (logged in, so its REST calls work): replies an earlier run left half-shown are
    finished on Discord and kept questions answered, now and then periodically."""
    await client.wait_until_ready()
    client.attach_recovery()
    core.start_recovery()
    print("chatbot: Discord bot ready", file=sys.stderr, flush=True)


async def _run(
    core: ChatCore, settings: Settings, token: str, stop: asyncio.Event, *, message_content: bool
) -> int | None:
    """The exit code, or None when Discord refused the privileged intent (so try without it)."""
    client = ChatbotClient(
        core,
        message_content=message_content,
        shard_ids=list(settings.discord_shard_ids) or None,
        shard_count=settings.discord_shard_count,
    )
    if settings.discord_shard_count:
        log.info(
            "discord.shards",
            ids=list(client.shard_ids or range(settings.discord_shard_count)),
            count=settings.discord_shard_count,
        )
    async with client:
        runner = asyncio.create_task(client.start(token))
        stopper = asyncio.create_task(stop.wait())
        recovering = asyncio.create_task(_recover_when_ready(client, core))
        try:
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            recovering.cancel()
        if runner not in done:
            await client.drain()
            runner.cancel()
            return 0
        stopper.cancel()
        error = runner.exception()
        if isinstance(error, discord.PrivilegedIntentsRequired) and message_content:
            return None
        refused = isinstance(error, discord.ConnectionClosed) and error.code == 4004
        if isinstance(error, discord.LoginFailure) or refused:
            print("chatbot: Discord refused the token (check DISCORD_TOKEN)", file=sys.stderr)
            return 2
        if error is not None:
            print(f"chatbot: the Discord connection failed: {error}", file=sys.stderr)
            return 1
        return 0
