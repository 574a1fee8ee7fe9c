"""The EditScheduler on leased buckets: several schedulers (processes) on one store keep one window,
and each keeps its own order (finals first, then the stalest reply) within what it leased."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.budgets import BudgetLessor
from core.pacing import EditScheduler
from core.stores.sqlite import SqliteStore
from core.stores.sqlite_leases import SqliteLeases
from core.surface import RateScope
from tests.contract.test_leases_processes import most_in_window

GLOBAL = RateScope("discord:global", per_second=40.0, burst=5.0)


@pytest.fixture
async def path(tmp_path: Path) -> AsyncIterator[Path]:
    store = await SqliteStore.open(tmp_path / "store.sqlite")
    await store.close()
    yield tmp_path / "store.sqlite"


async def test_two_schedulers_on_one_store_keep_one_window(path: Path) -> None:
    leases = [await SqliteLeases.open(path) for _ in range(2)]
    lessors = [BudgetLessor(lease) for lease in leases]
    schedulers = [EditScheduler(shared=lessor) for lessor in lessors]
    granted: list[float] = []

    async def edit(scheduler: EditScheduler, channel: int) -> None:
        await scheduler.acquire([RateScope(f"discord:channel:{channel}", 10.0, 2.0), GLOBAL])
        granted.append(time.time())

    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(edit(s, i % 10) for i in range(60) for s in schedulers)),
        20,
    )
    elapsed = time.monotonic() - started
    for window in (0.25, 1.0):
        assert most_in_window(granted, window) <= int(GLOBAL.burst + GLOBAL.per_second * window + 0.25)
    assert elapsed < 120 / GLOBAL.per_second * 1.6  # close to the shared rate, not starved
    # Leases are coalesced across scopes: fewer store writes than grants even in this burst, where every
    # channel token is leased just in time behind the saturated global scope.
    assert sum(lessor.lease_calls for lessor in lessors) < len(granted)
    for lessor, lease in zip(lessors, leases, strict=True):
        await lessor.close()
        await lease.close()


async def test_finals_go_first_within_what_was_leased(path: Path) -> None:
    leases = await SqliteLeases.open(path)
    lessor = BudgetLessor(leases)
    scheduler = EditScheduler(shared=lessor)
    scope = RateScope("slack:T1:chat.update", per_second=10.0, burst=1.0)
    order: list[str] = []

    async def call(name: str, *, final: bool, since: float | None = None) -> None:
        await scheduler.acquire([scope], final=final, since=since)
        order.append(name)

    now = scheduler.clock.now()
    edits = [asyncio.create_task(call(f"edit{i}", final=False, since=now - i)) for i in range(5)]
    await asyncio.sleep(0.01)
    final = asyncio.create_task(call("final", final=True))
    await asyncio.wait_for(asyncio.gather(final, *edits), 10)
    # The first token may have gone before the final arrived; after that, the final, then stalest first.
    rest = [name for name in order if name != "final"]
    assert order.index("final") <= 1
    assert rest == sorted(rest, key=lambda n: -int(n[4:]))
    await lessor.close()
    await leases.close()


async def test_more_scopes_than_one_lease_may_carry_all_get_tokens(path: Path) -> None:
    leases = await SqliteLeases.open(path)
    lessor = BudgetLessor(leases)
    scopes = [RateScope(f"discord:channel:{i}", 1.0, 1.0, 5.0) for i in range(150)]  # the store takes 64 a call
    await asyncio.wait_for(asyncio.gather(*(lessor.acquire(s) for s in scopes)), 20)
    assert lessor.failures == 0 and lessor.lease_calls >= 3
    await lessor.close()
    await leases.close()
