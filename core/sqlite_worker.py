"""One SQLite connection driven from one worker thread, so the event loop never waits on disk.

Both embedded parts (the store and the FTS5 retriever) use it; sqlite3 connections must stay on
the thread that uses them, and one writer thread also serializes writes without lock contention.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from core.errors import Unavailable

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0
# Integrity and programming errors are bugs and pass through; any other database error (locked past
# the busy timeout, disk full, unreadable file) is an outage the callers may retry or degrade on.
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class SqliteUnavailable(Unavailable):
    """The database file could not be used right now (locked, unreadable, disk full)."""


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
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            # Switching a fresh file to WAL takes an exclusive lock and SQLite does not always wait for
            # it through the busy handler: another process opening the same new folder at the same
            # instant gets "database is locked" at once. Retry it within the busy timeout instead.
            _with_retry(lambda: db.execute("PRAGMA journal_mode=WAL"))
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _with_retry(lambda: db.executescript(self.schema))
        except BaseException:
            db.close()
            raise
        self._db = db

    async def _submit(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except _BUGS:
            raise
        except sqlite3.DatabaseError as exc:
            raise SqliteUnavailable(f"{self.path.name} is unavailable ({exc})") from exc

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


def _with_retry(step: Callable[[], object], *, within_s: float = BUSY_TIMEOUT_S) -> None:
    """Run `step` (on the worker thread), retrying "database is locked" until `within_s` has passed."""
    deadline = time.monotonic() + within_s
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)  # the worker thread, never the event loop
        delay = min(delay * 2, 0.1)
