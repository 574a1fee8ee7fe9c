"""Minimal Slack and Discord surfaces for the benchmark: plain aiohttp calls to the loopback fakes.

They name the same scopes a real adapter would, with budgets chosen inside the platform's limits:
a token bucket with rate r and burst b admits at most b + r*W requests in any window W, so each
pair below stays just under its platform window (a little margin absorbs network jitter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from core.messages import Source
from core.surface import Operation, RateLimited, RateScope

# Slack chat.update, Tier 3: 50 per minute per workspace -> 5 + 44/60 * 60 = 49 per minute.
SLACK_UPDATE_RATE, SLACK_UPDATE_BURST = 44 / 60, 5.0
# Slack chat.postMessage: 1 per second per channel -> spaced 1.1 s apart.
SLACK_POST_RATE, SLACK_POST_BURST = 1 / 1.1, 1.0
# Discord: 5 per 5 s per channel and route -> 1 + 0.75 * 5 = 4.75; global 50/s -> 5 + 44 = 49.
DISCORD_CHANNEL_RATE, DISCORD_CHANNEL_BURST = 0.75, 1.0
DISCORD_GLOBAL_RATE, DISCORD_GLOBAL_BURST = 44.0, 5.0


class RequestFailed(Exception):
    pass


class SlackBenchSurface:
    max_chars = 3000  # a section block's text limit

    def __init__(self, session: aiohttp.ClientSession, base_url: str, team: str, channel: str) -> None:
        self.session = session
        self.base_url = base_url
        self.team = team
        self.channel = channel
        self.headers = {"Authorization": f"Bearer xoxb-{team}"}
        self._post = (RateScope(f"slack:{team}:{channel}:chat.postMessage", SLACK_POST_RATE, SLACK_POST_BURST),)
        self._update = (RateScope(f"slack:{team}:chat.update", SLACK_UPDATE_RATE, SLACK_UPDATE_BURST),)

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return self._post if operation == "post" else self._update

    async def _call(self, method: str, payload: dict[str, str], scope: RateScope) -> dict[str, str]:
        async with self.session.post(f"{self.base_url}/api/{method}", json=payload, headers=self.headers) as resp:
            if resp.status == 429:
                raise RateLimited(float(resp.headers.get("Retry-After", "1")), scope.key)
            data: dict[str, str] = await resp.json()
            if resp.status != 200 or not data.get("ok"):
                raise RequestFailed(f"slack {method}: {resp.status} {data.get('error')}")
            return data

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        data = await self._call("chat.postMessage", {"channel": self.channel, "text": text}, self._post[0])
        return data["ts"]

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await self._call("chat.update", {"channel": self.channel, "ts": message_id, "text": text}, self._update[0])

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        return None

    def log_key(self, message_id: str) -> str:
        return f"slack:{self.channel}:{message_id}"


class DiscordBenchSurface:
    max_chars = 2000

    def __init__(self, session: aiohttp.ClientSession, base_url: str, channel: str) -> None:
        self.session = session
        self.base_url = base_url
        self.channel = channel
        self._global = RateScope("discord:global", DISCORD_GLOBAL_RATE, DISCORD_GLOBAL_BURST)
        self._post = (RateScope(f"discord:{channel}:post", DISCORD_CHANNEL_RATE, DISCORD_CHANNEL_BURST), self._global)
        self._edit = (RateScope(f"discord:{channel}:edit", DISCORD_CHANNEL_RATE, DISCORD_CHANNEL_BURST), self._global)

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return self._post if operation == "post" else self._edit

    async def _call(self, method: str, path: str, content: str, scope: RateScope) -> dict[str, str]:
        url = f"{self.base_url}/api/v10/channels/{self.channel}/messages{path}"
        async with self.session.request(method, url, json={"content": content}) as resp:
            data: dict[str, str] = await resp.json()
            if resp.status == 429:
                key = self._global.key if data.get("global") else scope.key
                raise RateLimited(float(data.get("retry_after", 1.0)), key)
            if resp.status != 200:
                raise RequestFailed(f"discord {method}: {resp.status}")
            return data

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        return (await self._call("POST", "", text, self._post[0]))["id"]

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await self._call("PATCH", f"/{message_id}", text, self._edit[0])

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        return None

    def log_key(self, message_id: str) -> str:
        return f"discord:{self.channel}:{message_id}"


class OfflineSurface:
    """A bench surface's scopes and length limit without its HTTP calls: for measuring the engine's
    own CPU (scheduler, streamer, splitting) apart from the HTTP client's."""

    def __init__(self, surface: SlackBenchSurface | DiscordBenchSurface) -> None:
        self.max_chars = surface.max_chars
        self.scopes = surface.scopes
        self._ids = 0

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        await asyncio.sleep(0)  # a request is a suspension point, whatever it costs
        self._ids += 1
        return str(self._ids)

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await asyncio.sleep(0)

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        return None
