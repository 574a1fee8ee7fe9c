"""The platform budget tables: no bucket admits more than the platform's window allows.

Each budget is checked twice: by the token-bucket bound (a bucket of rate r and burst b grants at
most floor(b + r*W) in a window W) and by driving the real EditScheduler greedily on a virtual clock
for several windows and counting grants in every sliding window.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
import random

import pytest

from bots.discord import limits as discord_limits
from bots.slack import limits as slack_limits
from core.pacing import Budget, EditScheduler
from tests.unit.test_streaming_clock import VirtualClock

BUDGETS: dict[str, Budget] = {
    **{f"discord {name}": budget for name, budget in discord_limits.TABLE.items()},
    **{f"slack {name}": spec.budget for name, spec in slack_limits.METHODS.items()},
}


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most grants in any half-open window [t, t + window_s)."""
    return max(bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times))


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_the_bucket_bound_stays_within_the_platform_limit(name: str) -> None:
    budget = BUDGETS[name]
    assert math.floor(budget.admits() + 1e-9) <= budget.limit, f"{name} admits {budget.admits():.2f}"


@pytest.mark.parametrize("name", sorted(BUDGETS))
@pytest.mark.parametrize("finals", [False, True], ids=["interim", "interim+final"])
async def test_a_greedy_caller_never_gets_more_than_the_window_allows(name: str, finals: bool) -> None:
    budget = BUDGETS[name]
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scope = budget.scope("test")
    grants: list[float] = []

    async def greedy(final: bool) -> None:
        while True:
            await scheduler.acquire([scope], final=final)
            grants.append(clock.now())

    # Interim requests alone, or with greedy finals besides, which may also take the reserve.
    tasks = [asyncio.create_task(greedy(final)) for final in ([False, True] if finals else [False])]
    await clock.advance(budget.window_s * 4)
    for task in tasks:
        task.cancel()
    served = budget.limit if finals else budget.limit - budget.reserve
    assert len(grants) >= served, "the bucket should serve about its limit per window"
    assert most_in_any_window(grants, budget.window_s) <= budget.limit


def test_slack_tier_3_keeps_under_50_a_minute_where_rate_50_per_minute_plus_a_burst_did_not() -> None:
    update = slack_limits.METHODS["chat.update"].budget
    assert (update.limit, update.window_s) == (50, 60.0)
    assert update.admits() < 50
    assert Budget(50, 60.0, 50 / 60, 3.0).admits() == pytest.approx(53)  # the bucket this table replaced


def test_discord_allows_one_write_a_second_per_channel_and_shares_it_between_posts_and_edits() -> None:
    scopes = discord_limits.message_scopes(42)
    assert scopes[0].burst == 1 and scopes[0].reserve == 1  # one write of five kept for finals
    assert scopes[0].per_second * scopes[0].window_s + scopes[0].burst + scopes[0].reserve < 6
    assert scopes[1] == discord_limits.GLOBAL_SCOPE
    assert discord_limits.typing_scopes(42)[1] == discord_limits.GLOBAL_SCOPE  # typing counts globally


async def _arrivals_with_latency(budget: Budget, *, report: bool, callers: int = 8) -> list[float]:
    """Greedy callers on a virtual clock whose requests reach the platform after a varying delay
    (0-0.4 s, as under load) and are answered after another: the platform's arrival times."""
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scope = budget.scope("test")
    rng = random.Random(17)
    arrivals: list[float] = []

    async def caller() -> None:
        while True:
            await scheduler.acquire([scope])
            # Bursty delays: mostly prompt, sometimes very late (a loaded machine, a slow network).
            await clock.sleep(rng.choice((0.0, 0.0, 0.01, 0.4)) * budget.window_s)
            arrivals.append(clock.now())
            await clock.sleep(rng.uniform(0.0, 0.05) * budget.window_s)
            if report:
                scheduler.responded([scope])

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await clock.advance(budget.window_s * 8)
    for task in tasks:
        task.cancel()
    return sorted(arrivals)


@pytest.mark.parametrize("name", sorted(BUDGETS))
async def test_arrivals_stay_within_the_window_whatever_the_latency(name: str) -> None:
    budget = BUDGETS[name]
    arrivals = await _arrivals_with_latency(budget, report=True)
    assert len(arrivals) >= budget.limit * 3, "the budget should still serve most of its limit"
    assert most_in_any_window(arrivals, budget.window_s) <= budget.limit


async def test_spacing_sends_alone_lets_late_requests_bunch_up_in_one_window() -> None:
    # The same callers paced by the token bucket alone (no window stated): late requests land
    # together with prompt ones, more than the platform allows in one window.
    budget = discord_limits.CHANNEL_MESSAGES
    arrivals = await _arrivals_with_latency(dataclasses.replace(budget, limit=0), report=False)
    assert most_in_any_window(arrivals, budget.window_s) > budget.limit
