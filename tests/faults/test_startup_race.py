"""Several processes opening one fresh data folder at the same instant all start (real processes)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]

# Each child builds the whole core (every SQLite file in the data folder) in a new folder per round, all
# children at the same wall-clock instant, and claims one event there: the first open switches each
# fresh file to WAL.
CHILD = """
import asyncio, sys, time
from pathlib import Path
from core.app import build_core
from core.config import Settings

async def main(base: Path, start: float, rounds: int, name: str) -> None:
    claimed = 0
    for r in range(rounds):
        folder = base / f"round-{r}"
        folder.mkdir(parents=True, exist_ok=True)
        await asyncio.sleep(max(0.0, start + r * 0.3 - time.time()))
        core = await build_core(Settings(CHATBOT_DATA_DIR=folder))  # store, knowledge, places, outbox, leases
        claimed += await core.store.claim_event(f"slack:T1:C1:round-{r}")
        await core.close()
    print(f"{name} ok {claimed}")

asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""


async def test_processes_opening_a_fresh_folder_at_once_all_start(tmp_path: Path) -> None:
    processes, rounds = 4, 12
    start = time.time() + 3.0  # time for every interpreter to start and import
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path),
            str(start),
            str(rounds),
            f"p{i}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 120)
    failures = [err.decode()[-800:] for (_, err), c in zip(results, children, strict=True) if c.returncode != 0]
    assert not failures, failures
    claims = sum(int(out.decode().split()[-1]) for out, _ in results)
    assert claims == rounds  # every round's event was claimed exactly once across the processes
    for r in range(rounds):
        with sqlite3.connect(tmp_path / f"round-{r}" / "chatbot.sqlite") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
