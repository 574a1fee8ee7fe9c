"""N real processes spending one shared budget stay within its window together (SQLite and Convex)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from core.stores.sqlite import SqliteStore

PROCESSES = 3
RATE, BURST, SECONDS = 20.0, 3.0, 3.0


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run_workers(*where: str) -> list[dict[str, object]]:
    start_at = time.time() + 1.5  # all start together, after Python has started in each
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.lease_worker",
            *where,
            "--seconds",
            str(SECONDS),
            "--rate",
            str(RATE),
            "--burst",
            str(BURST),
            "--start-at",
            str(start_at),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def check(results: list[dict[str, object]]) -> None:
    spent = [t for r in results for t in r["spent"]]  # type: ignore[union-attr]
    assert all(r["spent"] for r in results), "every process got tokens"
    for window in (0.25, 1.0, 2.0):
        assert most_in_window(spent, window) <= int(BURST + RATE * window + 0.25), window
    # Not starved either: together they used at least half the rate (each alone would have taken it all);
    # half, not more, so a loaded test machine (other test files run beside this one) does not fail it.
    assert len(spent) >= 0.5 * RATE * SECONDS
    # Leases came in batches: far fewer store writes than tokens.
    assert sum(r["leases"] for r in results) < len(spent) / 2  # type: ignore[misc]


async def test_processes_share_a_budget_through_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = await SqliteStore.open(path)  # the store creates the file; leases add their tables
    await store.close()
    check(await run_workers("sqlite", str(path)))


async def test_processes_share_a_budget_through_convex(convex_server) -> None:  # type: ignore[no-untyped-def]
    convex_server.reset()
    check(await run_workers("convex", convex_server.url, convex_server.secret))
