"""One SQLite connection driven from one worker thread, so the event loop never waits on disk.

Both embedded parts (the store and the FTS5 retriever) use it; sqlite3 connections must stay on
the thread that uses them, and one writer thread also serializes writes without lock contention.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteWorker:
    def __init__(self, path: Path, schema: str, *, name: str) -> None:
        self.path = path
        self.schema = schema
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._submit(self._connect)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(self.schema)
        self._db = db

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _database(self) -> sqlite3.Connection:
        assert self._db is not None, f"{self.path.name} is not open (await open() first)"
        return self._db

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(lambda: fn(self._database()))

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction: checks inside it see and guard exactly what is written."""

        def run() -> T:
            db = self._database()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")  # inside the try: a failed COMMIT must not leave the transaction open
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return await self._submit(run)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._submit(shut)
        self._executor.shutdown(wait=True)
