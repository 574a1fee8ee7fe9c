"""Streaming replies: the reply grows in place as tokens arrive, within each platform's rate limits.

`ReplyStreamer` owns one reply; `EditScheduler` owns the rate budgets shared by every reply
on one platform. The engine knows no platform: surfaces name their scopes and limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from core.messages import ReplyStatus, Source
from core.surface import Operation, RateLimited, RateScope, Surface

log = structlog.get_logger(__name__)

FAILURE_MARKER = "\n\n⚠️ _The answer was cut off: {reason}_"
CANCELLED_MARKER = "\n\n_(stopped)_"
PLACEHOLDER = "…"


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """One rate-limit scope. A 429 halves the rate; successes bring it back slowly."""

    def __init__(self, scope: RateScope, now: float) -> None:
        self.base_rate = scope.per_second
        self.rate = scope.per_second
        self.burst = scope.burst
        self.tokens = scope.burst
        self.updated = now
        self.blocked_until = 0.0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, now: float) -> float:
        self._refill(now)
        if now < self.blocked_until:
            return self.blocked_until - now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def penalize(self, retry_after: float, now: float) -> None:
        self.blocked_until = max(self.blocked_until, now + retry_after)
        self.rate = max(self.rate / 2, self.base_rate / 16)
        self.tokens = min(self.tokens, 0.0)

    def reward(self) -> None:
        self.rate = min(self.base_rate, self.rate * 1.05)


class EditScheduler:
    """Rate budgets for one platform, keyed by the platform's limit scopes."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._buckets: dict[str, TokenBucket] = {}
        self.rate_limited = 0  # 429s received, for logs and benchmarks

    def _bucket(self, scope: RateScope) -> TokenBucket:
        bucket = self._buckets.get(scope.key)
        if bucket is None:
            bucket = self._buckets[scope.key] = TokenBucket(scope, self.clock.now())
        return bucket

    async def acquire(self, scopes: Sequence[RateScope], *, final: bool = False) -> None:
        """Wait until every scope has budget, then spend one unit from each."""
        buckets = [self._bucket(s) for s in scopes]
        while True:
            now = self.clock.now()
            wait = max((b.wait_time(now) for b in buckets), default=0.0)
            if wait <= 0:
                for b in buckets:
                    b.take(now)
                return
            await self.clock.sleep(wait)

    def succeeded(self, scopes: Sequence[RateScope]) -> None:
        for s in scopes:
            self._bucket(s).reward()

    def rate_limited_by(self, scopes: Sequence[RateScope], error: RateLimited) -> None:
        self.rate_limited += 1
        now = self.clock.now()
        hit = [s for s in scopes if s.key == error.scope_key] or list(scopes)
        for s in hit:
            self._bucket(s).penalize(error.retry_after, now)


def split_markdown(text: str, limit: int) -> list[str]:
    """Split into parts of at most `limit` characters at paragraph or line boundaries,
    closing an open code fence at the end of a part and reopening it in the next."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    reopen = ""
    while rest:
        budget = limit - len(reopen)
        if len(rest) <= budget:
            parts.append(reopen + rest)
            break
        window = rest[: budget - 4]  # room to close a fence
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut <= budget // 4:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = len(window)
        piece, rest = rest[:cut], rest[cut:].lstrip("\n")
        body = reopen + piece
        fence = _open_fence(body)
        if fence is not None:
            parts.append(body + "\n```")
            reopen = fence + "\n"
        else:
            parts.append(body)
            reopen = ""
    return parts


def _open_fence(text: str) -> str | None:
    """The opening line of a code fence left open at the end of `text`, if any."""
    opened: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            opened = None if opened is not None else stripped
    return opened


class ReplyStreamer:
    """One reply: keeps the full text, edits the platform with coalesced, paced updates."""

    def __init__(self, surface: Surface, scheduler: EditScheduler, *, retries: int = 8) -> None:
        self.surface = surface
        self.scheduler = scheduler
        self.retries = retries
        self.text = ""
        self.message_ids: list[str] = []
        self._shown: list[str] = []
        self._dirty = asyncio.Event()
        self._finished = False
        self._task: asyncio.Task[None] | None = None
        self.edits = 0

    async def start(self) -> None:
        """Post the placeholder at once, then keep the visible text in step with `feed`."""
        await self._send(0, PLACEHOLDER, final=False)
        self._task = asyncio.create_task(self._pump())

    def feed(self, delta: str) -> None:
        self.text += delta
        self._dirty.set()

    async def _pump(self) -> None:
        while not self._finished:
            await self._dirty.wait()
            self._dirty.clear()
            if self._finished:
                return
            parts = split_markdown(self.text or PLACEHOLDER, self.surface.max_chars)
            for index, part in enumerate(parts):
                if self._finished:
                    return
                if index < len(self._shown) and self._shown[index] == part:
                    continue
                try:
                    await self._send(index, part, final=False)
                except RateLimited:
                    self._dirty.set()  # the next round carries everything so far
                    break
                except Exception as exc:  # an interim edit may fail; the final one retries
                    log.warning("stream.edit_failed", error=str(exc))
                    break

    async def _send(self, index: int, text: str, *, final: bool, sources: Sequence[Source] = ()) -> None:
        op: Operation = "edit" if index < len(self.message_ids) else "post"
        scopes = self.surface.scopes(op)
        await self.scheduler.acquire(scopes, final=final)
        try:
            if op == "post":
                self.message_ids.append(await self.surface.post(text, sources=sources))
                self._shown.append(text)
            else:
                await self.surface.edit(self.message_ids[index], text, sources=sources)
                self._shown[index] = text
            self.edits += 1
            self.scheduler.succeeded(scopes)
        except RateLimited as exc:
            self.scheduler.rate_limited_by(scopes, exc)
            raise

    async def finish(self, status: ReplyStatus, *, sources: Sequence[Source] = (), reason: str = "") -> str:
        """Land the final text (retried until it does); returns the final Markdown text."""
        self._finished = True
        self._dirty.set()
        if self._task is not None:
            await self._task
        final = self.text
        if status is ReplyStatus.FAILED:
            final += FAILURE_MARKER.format(reason=reason or "the answer could not be completed")
        elif status is ReplyStatus.CANCELLED:
            final += CANCELLED_MARKER
        parts = split_markdown(final.strip() or PLACEHOLDER, self.surface.max_chars)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if index < len(self._shown) and self._shown[index] == part and not last:
                continue
            await self._send_final(index, part, sources if last else ())
        return final

    async def _send_final(self, index: int, text: str, sources: Sequence[Source]) -> None:
        delay = 0.5
        for attempt in range(self.retries):
            try:
                await self._send(index, text, final=True, sources=sources)
                return
            except RateLimited as exc:
                await self.scheduler.clock.sleep(exc.retry_after)
            except Exception as exc:
                if attempt == self.retries - 1:
                    raise
                log.warning("stream.final_retry", attempt=attempt, error=str(exc))
                await self.scheduler.clock.sleep(delay)
                delay = min(delay * 2, 8.0)
