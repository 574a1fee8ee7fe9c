"""`chatbot doctor` for Discord: does Discord accept the bot token (GET /users/@me)?"""

from __future__ import annotations

import asyncio

import discord

from bots.discord.server import point_at
from core.config import Settings, secret
from core.health import Probe


def discord_probes(settings: Settings) -> dict[str, Probe]:
    token = secret(settings.discord_token)
    if not token:
        return {}

    async def users_me() -> str:
        point_at(settings)
        http = discord.http.HTTPClient(asyncio.get_running_loop())
        try:
            me = await http.static_login(token)  # GET /users/@me with the token
        except discord.LoginFailure:
            raise RuntimeError("Discord refused DISCORD_TOKEN") from None
        finally:
            await http.close()
        return f"DISCORD_TOKEN: bot {me.get('username')} ({me.get('id')})"

    return {"discord": users_me}
