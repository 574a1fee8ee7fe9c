"""The reserve for finals: interim edits leave part of every window free, a final takes it at once.

Driven on a virtual clock against the Discord channel budget of bots/discord/limits.py (5 writes per
5 s, one of them kept for finals) and against plain budgets, with requests that reach the platform
after a delay and are answered after another, as in tests/unit/test_budget_tables.py.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
import random

import pytest

from bots.discord import limits as discord_limits
from core.budgets import shared_bucket
from core.pacing import Budget, EditScheduler
from tests.unit.test_streaming_clock import VirtualClock

CHANNEL = discord_limits.CHANNEL_MESSAGES


def most_in_any_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0)


class Platform:
    """Greedy interim callers on one scope; each request arrives `latency` after its grant and is
    answered right then (reported to the scheduler, as the streaming engine does)."""

    def __init__(self, budget: Budget, *, latency: float = 0.1, callers: int = 3, seed: int = 5) -> None:
        self.clock = VirtualClock()
        self.scheduler = EditScheduler(self.clock)
        self.scope = budget.scope("discord:channel:1")
        self.latency = latency
        self.rng = random.Random(seed)
        self.arrivals: list[float] = []
        self.interims: list[float] = []
        self.tasks = [asyncio.create_task(self._interim()) for _ in range(callers)]

    async def request(self, *, final: bool) -> float:
        """One request: returns when it was granted."""
        await self.scheduler.acquire([self.scope], final=final)
        granted = self.clock.now()
        await self.clock.sleep(self.latency * self.rng.uniform(0.5, 1.5))
        self.arrivals.append(self.clock.now())
        self.scheduler.responded([self.scope])
        return granted

    async def _interim(self) -> None:
        while True:
            self.interims.append(await self.request(final=False))

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


async def granted_within(platform: Platform, asked: float, gap: float) -> float:
    """Ask for a final now, move the clock on by `gap` (or until it is granted): how long it waited."""
    final = asyncio.create_task(platform.request(final=True))
    await platform.clock.advance(gap)
    for _ in range(100):
        if final.done():
            break
        await platform.clock.advance(0.1)
    return (await final) - asked


async def test_a_final_goes_out_at_once_while_interim_edits_are_paced() -> None:
    platform = Platform(CHANNEL)
    clock = platform.clock
    await clock.advance(7.3)  # the interim callers are well into their pace
    waits = []
    for gap in (0.37, 2.9, 1.3, 4.1, 0.8, 3.3):
        asked = clock.now()
        waits.append(await granted_within(platform, asked, gap))
    platform.stop()
    assert max(waits) == pytest.approx(0.0, abs=1e-6), f"finals waited {waits}"
    # Interims keep to the four writes of each window the reserve leaves them...
    assert most_in_any_window(platform.interims, CHANNEL.window_s) <= CHANNEL.limit - CHANNEL.reserve
    # ...and, finals included, the platform never counts more than its limit in a window.
    assert most_in_any_window(platform.arrivals, CHANNEL.window_s) <= CHANNEL.limit
    assert len(platform.interims) >= 8, "interim edits still flow at about four per window"


async def test_without_a_reserve_the_final_waits_for_the_channels_next_turn() -> None:
    platform = Platform(dataclasses.replace(CHANNEL, reserve=0, per_second=1 / 1.02))
    clock = platform.clock
    await clock.advance(7.3)
    waited = await granted_within(platform, clock.now(), 3.0)
    platform.stop()
    assert waited > 0.2, "the interim edits had spent the channel's turn"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_greedy_finals_and_interims_together_stay_within_the_window(seed: int) -> None:
    platform = Platform(CHANNEL, latency=0.3, callers=4, seed=seed)

    async def finals() -> None:
        while True:
            await platform.request(final=True)
            await platform.clock.sleep(platform.rng.uniform(0.0, 2.0))

    extra = [asyncio.create_task(finals()) for _ in range(2)]
    await platform.clock.advance(CHANNEL.window_s * 8)
    platform.stop()
    for task in extra:
        task.cancel()
    assert most_in_any_window(platform.arrivals, CHANNEL.window_s) <= CHANNEL.limit
    assert len(platform.arrivals) >= CHANNEL.limit * 6


def test_the_reserve_counts_in_what_the_bucket_admits() -> None:
    assert CHANNEL.reserve == 1
    assert CHANNEL.admits() == pytest.approx(CHANNEL.burst + 1 + CHANNEL.per_second * CHANNEL.window_s)
    assert math.floor(CHANNEL.admits() + 1e-9) <= CHANNEL.limit
    # The leased bucket of several processes keeps the reserve in its burst and the same bound.
    rate, burst, late = shared_bucket(CHANNEL.scope("discord:channel:1"))
    assert burst > 1.0
    assert math.floor(burst + rate * (CHANNEL.window_s + late)) <= CHANNEL.limit
