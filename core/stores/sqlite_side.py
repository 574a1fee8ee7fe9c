"""Ports kept beside the SQLite store: their own table in its file, its worker, its checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

from core.policy import RETENTION
from core.sqlite_worker import SqliteUnavailable, SqliteWorker
from core.stores.base import StoreUnavailable
from core.stores.sqlite import SqliteStore

T = TypeVar("T")


class SideTable:
    """Creates the port's table (its CREATE TABLE and CREATE INDEX IF NOT EXISTS statements) on first use."""

    schema = ""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._ready = False

    async def _schema(self) -> None:
        if not self._ready:

            def create(db: sqlite3.Connection) -> None:
                for statement in self.schema.split(";"):
                    if statement.strip():
                        db.execute(statement)

            await self.store._tx(create)
            self._ready = True


class OwnConnection:
    """A port kept in the store's file through a connection (and worker thread) of its own, so several
    processes share it as they share the file: `await Port.open(path)`. A port names its `schema`."""

    schema = ""
    name = "sqlite-side"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, self.schema, name=self.name)

    @classmethod
    async def open(cls, path: Path) -> Self:
        port = cls(path)
        await port._worker.open()
        return port

    async def close(self) -> None:
        await self._worker.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """One write transaction (or, with `write=False`, a read); an unreachable file is StoreUnavailable."""
        try:
            return await (self._worker.transaction(fn) if write else self._worker.read(fn))
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc


def message_id(value: str) -> int | None:
    """The store's message id (an integer); anything else is no message of this store."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def prune(db: sqlite3.Connection, table: str, column: str, older_than: float) -> None:
    """Delete a few rows of `table` whose `column` (a time, indexed) is before `older_than`: more than a
    write adds, so a table of rows that only serve a reply stays small (the rule book's retention)."""
    db.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {column} < ? LIMIT ?)",
        (older_than, RETENTION["prune_batch"]),
    )


def reply_status(db: sqlite3.Connection, workspace: str, mid: int | None) -> str | None:
    """The status of message `mid` if it is a message of a thread of `workspace` (else None)."""
    row = db.execute(
        "SELECT m.status FROM messages m JOIN threads t ON t.id = m.thread_id WHERE m.id = ? AND t.ws = ?",
        (mid, workspace),
    ).fetchone()
    return None if row is None else str(row[0])
