"""The platform budget tables: no bucket admits more than the platform's window allows.

Each budget is checked twice: by the token-bucket bound (a bucket of rate r and burst b grants at
most floor(b + r*W) in a window W) and by driving the real EditScheduler greedily on a virtual clock
for several windows and counting grants in every sliding window.
"""

from __future__ import annotations

import asyncio
import bisect
import math

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
async def test_a_greedy_caller_never_gets_more_than_the_window_allows(name: str) -> None:
    budget = BUDGETS[name]
    clock = VirtualClock()
    scheduler = EditScheduler(clock)
    scope = budget.scope("test")
    grants: list[float] = []

    async def greedy() -> None:
        while True:
            await scheduler.acquire([scope])
            grants.append(clock.now())

    task = asyncio.create_task(greedy())
    await clock.advance(budget.window_s * 4)
    task.cancel()
    assert len(grants) >= budget.limit, "the bucket should serve about its limit per window"
    assert most_in_any_window(grants, budget.window_s) <= budget.limit


def test_slack_tier_3_keeps_under_50_a_minute_where_rate_50_per_minute_plus_a_burst_did_not() -> None:
    update = slack_limits.METHODS["chat.update"].budget
    assert (update.limit, update.window_s) == (50, 60.0)
    assert update.admits() < 50
    assert Budget(50, 60.0, 50 / 60, 3.0).admits() == pytest.approx(53)  # the bucket this table replaced


def test_discord_allows_one_write_a_second_per_channel_and_shares_it_between_posts_and_edits() -> None:
    scopes = discord_limits.message_scopes(42)
    assert scopes[0].per_second == pytest.approx(1 / 1.02) and scopes[0].burst == 1
    assert scopes[1] == discord_limits.GLOBAL_SCOPE
    assert discord_limits.typing_scopes(42)[1] == discord_limits.GLOBAL_SCOPE  # typing counts globally
