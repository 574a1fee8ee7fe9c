"""A dead process's reply, finished by the process that took it over, goes before every other waiting
final in its budget (core.pacing.STALEST), so it is marked soon even when the platform is saturated."""

from __future__ import annotations

import asyncio

from core.pacing import STALEST, EditScheduler, within_budget
from core.surface import RateScope

SCOPE = RateScope("slack:T1:chat.update", per_second=20.0, burst=1.0)


async def test_the_end_of_a_taken_over_reply_goes_before_finals_that_waited_longer() -> None:
    scheduler = EditScheduler()
    order: list[str] = []

    async def call(name: str) -> None:
        order.append(name)

    await within_budget(scheduler, [SCOPE], lambda: call("first"))  # the burst is spent
    waiting = [asyncio.create_task(within_budget(scheduler, [SCOPE], lambda n=f"final {i}": call(n))) for i in range(3)]
    await asyncio.sleep(0)  # the three finals queue first
    taken = asyncio.create_task(within_budget(scheduler, [SCOPE], lambda: call("interrupted"), since=STALEST))
    await asyncio.gather(*waiting, taken)
    assert order == ["first", "interrupted", "final 0", "final 1", "final 2"]
