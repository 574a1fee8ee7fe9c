"""What discord.py does behind the bot's back, reported to the scheduler.

discord.py answers a 429 itself: it sleeps for retry_after and sends the request again (erroring only
past `max_ratelimit_timeout`, which it will not set below 30 s). An aiohttp trace sees every answer
on the way, so a 429 on any route, the global limit included, penalizes the scheduler's bucket for
that limit: the next requests wait there instead of walking into the same wall.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

import aiohttp

from bots.discord import limits
from core.pacing import EditScheduler
from core.surface import RateLimited, RateScope


def scopes_of(method: str, path: str) -> Sequence[RateScope]:
    """The budget scopes a REST request spends from, by its route (see bots/discord/limits.py)."""
    parts = path.split("/api/", 1)[-1].strip("/").split("/")
    if parts and parts[0].startswith("v") and parts[0][1:].isdigit():
        parts = parts[1:]
    if len(parts) >= 3 and parts[0] == "channels":
        channel = parts[1]
        if parts[-1] == "typing":
            return limits.typing_scopes(channel)
        if parts[-1] == "threads":
            return limits.thread_scopes(channel)
        if parts[2] == "messages" and method in {"POST", "PATCH"}:
            return limits.message_scopes(channel)
        if parts[2] == "messages" and method == "GET":
            return limits.history_scopes(channel)
    if parts and parts[0] in {"interactions", "webhooks"}:
        return ()  # interaction responses are not bound by the global limit
    return (limits.GLOBAL_SCOPE,)


def retry_after(headers: Mapping[str, str]) -> float:
    values = {k.lower(): v for k, v in headers.items()}
    for name in ("x-ratelimit-reset-after", "retry-after"):
        try:
            return max(0.0, float(values[name]))
        except (KeyError, ValueError):
            continue
    return 1.0


def rate_limit_trace(scheduler: EditScheduler) -> aiohttp.TraceConfig:
    """A trace for discord.py's HTTP session that reports every 429 to `scheduler`."""

    async def on_request_end(
        session: aiohttp.ClientSession, context: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        response = params.response
        if response.status != 429:
            return
        scopes = scopes_of(params.method, params.url.path)
        is_global = response.headers.get("X-RateLimit-Global", "").lower() == "true"
        key = limits.GLOBAL_SCOPE.key if is_global or len(scopes) < 2 else scopes[0].key
        if scopes:
            scheduler.rate_limited_by(scopes, RateLimited(retry_after(response.headers), key))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
