"""The EditScheduler on leased buckets: several schedulers (processes) on one store keep one window,
and each keeps its own order (finals first, then the stalest reply) within what it leased."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.budgets import BudgetLessor, shared_bucket
from core.pacing import EditScheduler
from core.stores.leases import DEMAND_TTL_S, RETRY_S, BudgetRequest
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
    scope = RateScope("slack:T1:chat.update", per_second=5.0, burst=1.0)
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


async def test_the_stalest_request_of_either_process_goes_first(path: Path) -> None:
    """One process streams fresh edits; another comes with edits that have lagged for 30 s. One
    process would serve the stale ones first; two on one store must too: the fresh process spends
    what it holds, and the store leases it nothing more until the stale process's edits are served
    (first come, first served, about 17 of the fresh process's edits would go meanwhile)."""
    leases = [await SqliteLeases.open(path) for _ in range(2)]
    lessors = [
        BudgetLessor(lease, owner=owner) for lease, owner in zip(leases, ("proc-fresh", "proc-stale"), strict=True)
    ]
    fresh, stale = (EditScheduler(shared=lessor) for lessor in lessors)
    scope = RateScope("slack:T1:chat.update", per_second=5.0, burst=1.0)
    order: list[str] = []

    async def edit(scheduler: EditScheduler, name: str, since: float) -> None:
        await scheduler.acquire([scope], since=since)
        order.append(name)

    now = time.monotonic()
    tasks = [asyncio.create_task(edit(fresh, "fresh", now + i * 0.01)) for i in range(24)]
    await asyncio.sleep(1.0)  # the fresh process is being served, leasing ahead
    arrived = len(order)
    tasks += [asyncio.create_task(edit(stale, "stale", now - 30)) for _ in range(10)]
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    while_stale_waited = order[arrived : len(order) - order[::-1].index("stale")]
    held = lessors[0].scope(scope).request.horizon_s * scope.per_second + 1  # what a lease may have leased ahead
    assert while_stale_waited.count("fresh") <= held
    for lessor, lease in zip(lessors, leases, strict=True):
        await lessor.close()
        await lease.close()


async def test_a_lease_refused_for_older_demand_asks_again_when_the_store_says(path: Path) -> None:
    leases, rival = await SqliteLeases.open(path), await SqliteLeases.open(path)
    lessor = BudgetLessor(leases, owner="proc-new")
    scheduler = EditScheduler(shared=lessor)
    scope = RateScope("slack:T1:chat.update", per_second=2.0, burst=1.0)
    rate, burst, _ = shared_bucket(scope)
    behind = BudgetRequest(scope.key, rate, burst, 1, 1.0, waiting=(60.0, 59.0))
    lagging = True

    async def old_demand() -> None:  # another process whose edits lag a minute, saying so twice a second
        while lagging:
            await rival.lease([behind], owner="proc-old")
            await asyncio.sleep(0.5)

    other = asyncio.create_task(old_demand())
    await asyncio.sleep(0.1)
    edit = asyncio.create_task(scheduler.acquire([scope]))
    await asyncio.sleep(2.0)
    assert not edit.done()  # the older demand goes first
    assert 1 <= lessor.lease_calls <= 2.0 / RETRY_S[0]  # not a lease every few milliseconds meanwhile
    lagging = False
    await other
    await asyncio.wait_for(edit, DEMAND_TTL_S + RETRY_S[1] + 1.0)  # once it is no longer said, this one goes
    await lessor.close()
    await leases.close()
    await rival.close()
