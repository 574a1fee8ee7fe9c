"""Minimal rate-limited Slack Web API and Discord REST fakes for the streaming benchmark.

Run as its own process (`python -m bench.fakes`) so the benchmark's CPU and memory figures are the
bot's own. Prints one JSON line with the ports, serves until stdin closes. Both servers enforce
their platform's documented limits with sliding windows and answer 429 + Retry-After when a client
exceeds them; `--chaos P` also injects 429s and 5xx errors at random with probability P each.

Every accepted post/edit is logged with its arrival time (time.monotonic, shared by processes on
one machine); GET /_log returns the log and the 429 counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import random
import sys
import time
from collections import deque
from typing import Any

from aiohttp import web

# Documented limits: Slack chat.update is Tier 3 (about 50 a minute per workspace and method);
# chat.postMessage about one a second per channel. Discord: 5 requests per 5 s per channel and route,
# and 50 requests a second per bot overall.
SLACK_UPDATE = (50, 60.0)
SLACK_POST = (1, 1.0)
DISCORD_CHANNEL = (5, 5.0)
DISCORD_GLOBAL = (50, 1.0)


class SlidingWindow:
    """At most `limit` requests in any `window` seconds, per key."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """0 if a request may go now (and count it), else seconds until it may."""
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.window - now
        hits.append(now)
        return 0.0


class Fakes:
    def __init__(self, chaos: float, seed: int) -> None:
        self.chaos = chaos
        self.random = random.Random(seed)
        self.ids = itertools.count(1)
        self.log: list[tuple[float, str, str]] = []  # (arrival, message key, text)
        self.limited = {"slack": 0, "discord": 0}  # 429s for exceeding a real limit
        self.injected = {"slack_429": 0, "slack_5xx": 0, "discord_429": 0, "discord_5xx": 0}
        self.slack_update = SlidingWindow(*SLACK_UPDATE)
        self.slack_post = SlidingWindow(*SLACK_POST)
        self.discord_channel = SlidingWindow(*DISCORD_CHANNEL)
        self.discord_global = SlidingWindow(*DISCORD_GLOBAL)

    def _chaos(self) -> str | None:
        if self.chaos <= 0:
            return None
        roll = self.random.random()
        if roll < self.chaos:
            return "429"
        if roll < 2 * self.chaos:
            return "5xx"
        return None

    # --- Slack ---------------------------------------------------------------------------------

    async def slack(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        now = time.monotonic()
        team = request.headers.get("Authorization", "").removeprefix("Bearer xoxb-")
        body: dict[str, Any] = await request.json()
        chaos = self._chaos()
        if chaos == "5xx":
            self.injected["slack_5xx"] += 1
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if method == "chat.postMessage":
            wait = self.slack_post.retry_after(f"{team}:{body['channel']}", now)
        elif method == "chat.update":
            wait = self.slack_update.retry_after(team, now)
        else:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if chaos == "429" and wait == 0:
            self.injected["slack_429"] += 1
            wait = 1.0
        elif wait > 0:
            self.limited["slack"] += 1
        if wait > 0:
            # Slack sends whole seconds.
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(math.ceil(wait))}
            )
        if method == "chat.postMessage":
            ts = f"{int(now)}.{next(self.ids):06d}"
            self.log.append((now, f"slack:{body['channel']}:{ts}", body["text"]))
            return web.json_response({"ok": True, "channel": body["channel"], "ts": ts})
        self.log.append((now, f"slack:{body['channel']}:{body['ts']}", body["text"]))
        return web.json_response({"ok": True, "channel": body["channel"], "ts": body["ts"]})

    # --- Discord -------------------------------------------------------------------------------

    async def discord(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        channel = request.match_info["channel"]
        message = request.match_info.get("message")
        body: dict[str, Any] = await request.json()
        chaos = self._chaos()
        if chaos == "5xx":
            self.injected["discord_5xx"] += 1
            return web.json_response({"message": "Internal Server Error", "code": 0}, status=502)
        route = "edit" if message else "post"
        wait = self.discord_global.retry_after("global", now)
        is_global = wait > 0
        if not is_global:
            wait = self.discord_channel.retry_after(f"{channel}:{route}", now)
        if chaos == "429" and wait == 0:
            self.injected["discord_429"] += 1
            wait = 0.5
        elif wait > 0:
            self.limited["discord"] += 1
        if wait > 0:
            return web.json_response(
                {"message": "You are being rate limited.", "retry_after": round(wait, 3), "global": is_global},
                status=429,
                headers={
                    "Retry-After": str(math.ceil(wait)),
                    "X-RateLimit-Scope": "global" if is_global else "user",
                },
            )
        message = message or str(next(self.ids))
        self.log.append((now, f"discord:{channel}:{message}", body["content"]))
        return web.json_response({"id": message, "channel_id": channel, "content": body["content"]})

    async def dump(self, request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps({"log": self.log, "limited": self.limited, "injected": self.injected}),
            content_type="application/json",
        )


async def serve(chaos: float, seed: int) -> None:
    fakes = Fakes(chaos, seed)
    slack = web.Application(client_max_size=1 << 20)
    slack.router.add_post("/api/{method}", fakes.slack)
    slack.router.add_get("/_log", fakes.dump)
    discord = web.Application(client_max_size=1 << 20)
    discord.router.add_post("/api/v10/channels/{channel}/messages", fakes.discord)
    discord.router.add_patch("/api/v10/channels/{channel}/messages/{message}", fakes.discord)
    discord.router.add_get("/_log", fakes.dump)
    runners = []
    ports = {}
    for name, app in (("slack", slack), ("discord", discord)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        ports[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    print(json.dumps(ports), flush=True)
    # Serve until the benchmark closes our stdin (or dies), never longer than ten minutes.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), timeout=600)
    for runner in runners:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chaos", type=float, default=0.0, help="probability of an injected 429 (and of a 5xx)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.chaos, args.seed))


if __name__ == "__main__":
    main()
