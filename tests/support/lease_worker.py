"""One bot-like process spending a shared budget as fast as its leases allow (for the multi-process tests).

    python -m tests.support.lease_worker sqlite PATH | convex URL SECRET  --seconds S --rate R --burst B
prints one JSON line: the wall-clock times at which it spent a token, and its lease counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from core.budgets import BudgetLessor
from core.stores.convex import ConvexStore
from core.stores.convex_leases import ConvexLeases
from core.stores.leases import BudgetLeases
from core.stores.sqlite_leases import SqliteLeases
from core.surface import RateScope


async def spend(leases: BudgetLeases, scope: RateScope, seconds: float, start_at: float) -> dict[str, object]:
    lessor = BudgetLessor(leases)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    spent: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await lessor.acquire(scope)
        spent.append(time.time())
    await lessor.close()
    return {"spent": spent, "leases": lessor.lease_calls, "wasted": lessor.wasted}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sqlite", "convex"])
    parser.add_argument("where", nargs="+")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--burst", type=float, default=3.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    scope = RateScope("test:shared", per_second=args.rate, burst=args.burst)
    if args.kind == "sqlite":
        leases = await SqliteLeases.open(Path(args.where[0]))
        try:
            result = await spend(leases, scope, args.seconds, args.start_at)
        finally:
            await leases.close()
    else:
        store = ConvexStore(args.where[0], args.where[1])
        try:
            result = await spend(ConvexLeases(store), scope, args.seconds, args.start_at)
        finally:
            await store.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
