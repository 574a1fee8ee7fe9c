"""A virtual clock for deterministic streaming tests (reusable by adapter tests), and its own tests.

Time only moves when a test says so: `advance(dt)` fires due timers in order and lets the event loop
run everything that became ready before moving on. No real sleeps anywhere.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _Handle, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle()
        heapq.heappush(self._timers, (when, next(self._order), handle, callback))
        return handle

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_at(self._now + max(0.0, seconds), wake)
        try:
            await future
        finally:
            handle.cancel()

    async def settle(self) -> None:
        """Let the event loop run until nothing is ready to run (no I/O in these tests)."""
        loop = asyncio.get_running_loop()
        for _ in range(10_000):
            await asyncio.sleep(0)
            if not loop._ready:  # type: ignore[attr-defined]
                await asyncio.sleep(0)
                if not loop._ready:  # type: ignore[attr-defined]
                    return
        raise AssertionError("the event loop never settled")

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer due on the way, in order."""
        target = self._now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._timers)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            callback()
            await self.settle()
        self._now = target
        await self.settle()

    async def run_until(self, done: Callable[[], bool], *, limit: float = 3600.0, step: float = 0.01) -> None:
        """Advance in small steps until `done()` holds (or fail after `limit` virtual seconds)."""
        end = self._now + limit
        await self.settle()
        while not done():
            if self._now >= end:
                raise AssertionError("condition not reached in virtual time")
            await self.advance(step)


async def test_timers_fire_in_order_and_only_when_due() -> None:
    clock = VirtualClock()
    fired: list[str] = []
    clock.call_at(clock.now() + 2, lambda: fired.append("b"))
    clock.call_at(clock.now() + 1, lambda: fired.append("a"))
    cancelled = clock.call_at(clock.now() + 1.5, lambda: fired.append("x"))
    cancelled.cancel()
    await clock.advance(0.5)
    assert fired == []
    await clock.advance(2)
    assert fired == ["a", "b"]


async def test_sleep_resumes_at_virtual_time() -> None:
    clock = VirtualClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(3)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    start = clock.now()
    await clock.advance(2.9)
    assert woke == []
    await clock.advance(0.2)
    assert woke == [start + 3]
    await task
