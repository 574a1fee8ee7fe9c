"""Store throughput: the embedded SQLite store's hot paths, as the pipeline uses them.

    uv run python bench/store.py                 # 2,000 claims and messages, 20 batches of 1,000 deltas
    uv run python bench/store.py --n 5000 --json

Rows: event claims (one per incoming event, run concurrently as events arrive), user/assistant
messages appended with idempotency keys, and the DeltaWriter's batched delta writes. Everything
goes through the real store on a temporary database file (WAL, one worker thread). The Convex
store is not measured here: its test server is convex-test in memory, whose speed says nothing
about a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef  # noqa: E402
from core.stores.base import Delta, Store  # noqa: E402
from core.stores.sqlite import SqliteStore  # noqa: E402

WS = WorkspaceRef(Platform.SLACK, "T-bench")
CONCURRENCY = 50  # events in flight at once, as a busy bot sees them


async def timed(n: int, make: Callable[[int], Awaitable[object]]) -> float:
    """Run make(0..n-1) with CONCURRENCY in flight; returns the operations per second."""
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await make(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory() as folder:
        store = await SqliteStore.open(Path(folder) / "bench.sqlite")
        try:
            yield store
        finally:
            await store.close()


async def measure(store: Store, n: int, batches: int) -> dict[str, Any]:
    claims = await timed(n, lambda i: store.claim_event(f"slack:T-bench:C1:{i}.0"))
    thread = await store.thread_for(WS, "C1", "bench")
    messages = await timed(
        n, lambda i: store.add_message(WS, thread, MessageRole.USER, f"question {i}", idempotency_key=f"k{i}")
    )
    reply = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    started = time.perf_counter()
    for b in range(batches):
        await store.append_deltas([Delta(reply, b * 1000 + i, "word ", WS.key) for i in range(1000)])
    batch_ms = 1000 * (time.perf_counter() - started) / batches
    return {
        "claims_per_s": round(claims),
        "messages_per_s": round(messages),
        "ms_per_1000_delta_batch": round(batch_ms, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with sqlite_store() as store:
        figures = await measure(store, args.n, args.batches)
    return {"store": "sqlite", "n": args.n, "concurrency": CONCURRENCY, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Embedded store throughput: event claims, messages and delta batches per second."
    )
    parser.add_argument("--n", type=int, default=2000, help="claims and messages to write (2000)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 deltas (20)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if not args.json:
        print(
            f"{result['store']}: {result['claims_per_s']:,} event claims/s, {result['messages_per_s']:,} messages/s "
            f"({CONCURRENCY} in flight), {result['ms_per_1000_delta_batch']} ms per batch of 1,000 deltas\n"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
