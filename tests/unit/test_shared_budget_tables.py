"""Every scope of both platforms' budget tables, leased by any number of processes, stays within the
platform's window: the store bucket's burst + rate*(window + lateness) floors to what one process's
own bucket admits (and that, tests/unit/test_budget_tables.py proves, to within the platform's limit)."""

from __future__ import annotations

import math

import pytest

from bots.discord import limits as discord_limits
from bots.slack import limits as slack_limits
from core.budgets import shared_bucket
from core.pacing import Budget
from core.stores.leases import gcra


def budgets() -> list[tuple[str, Budget]]:
    found = [(f"discord:{k}", b) for k, b in discord_limits.TABLE.items()]
    for name, value in vars(slack_limits).items():
        if isinstance(value, Budget):
            found.append((f"slack:{name}", value))
        elif hasattr(value, "budget") and isinstance(value.budget, Budget):
            found.append((f"slack:{name}", value.budget))
    for name, table in vars(slack_limits).items():
        if isinstance(table, dict):
            for key, method in table.items():
                budget = getattr(method, "budget", method)
                if isinstance(budget, Budget):
                    found.append((f"slack:{name}:{key}", budget))
    return found


@pytest.mark.parametrize(("name", "budget"), budgets(), ids=[n for n, _ in budgets()])
def test_leased_tokens_spent_late_still_fit_the_window(name: str, budget: Budget) -> None:
    rate, burst, late = shared_bucket(budget.scope(name))
    own = math.floor(budget.admits())
    assert own <= budget.limit
    assert math.floor(burst + rate * (budget.window_s + late)) <= own
    assert rate >= 0.8 * budget.per_second  # the margin costs little of the rate
    # And the store's GCRA grants exactly that: tokens leased greedily, each spent `late` after its
    # moment in the worst case, never put more than `own` into any window.
    tat, times, at = 0.0, [], 0.0
    while at < budget.window_s * 4:
        slots, _, tat, _ = gcra(tat, at, rate, burst, 100, budget.window_s)
        times += [at + s + (late if i % 2 else 0.0) for i, s in enumerate(slots)]
        at += budget.window_s / 7
    times.sort()
    worst = max(sum(1 for t in times if start <= t < start + budget.window_s) for start in times)
    assert worst <= own
