"""ReplyPlaces in the embedded store's SQLite file (its own connection, like the leases), scoped to the
workspace of each reply (core.stores.places)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from core.policy import text_error, whole_error
from core.sqlite_worker import SqliteUnavailable, SqliteWorker
from core.stores.base import StoreError, StoreUnavailable
from core.stores.places import ReplyPlace
from core.stores.sqlite_questions import SCHEMA as HOLDS_SCHEMA

T = TypeVar("T")

COLUMNS = "message_id, workspace, platform, place, updated_at"

SCHEMA = """
CREATE TABLE IF NOT EXISTS reply_places (
    message_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, platform TEXT NOT NULL, place TEXT NOT NULL,
    updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reply_places_by_age ON reply_places (updated_at);
"""


def _text(value: str, name: str, kind: str) -> str:
    error = text_error(kind, value, name)
    if error is not None:
        raise StoreError("invalid", error)
    return value


def _id(reply_id: str) -> int | None:
    """The store's message id (an integer); anything else is no reply of this store."""
    try:
        return int(reply_id)
    except ValueError:
        return None


class SqlitePlaces:
    """`ReplyPlaces` on the store's file; `await SqlitePlaces.open(path)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, SCHEMA + HOLDS_SCHEMA, name="sqlite-places")  # a place ends a hold

    @classmethod
    async def open(cls, path: Path) -> SqlitePlaces:
        places = cls(path)
        await places._worker.open()
        return places

    async def close(self) -> None:
        await self._worker.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        try:
            return await (self._worker.transaction(fn) if write else self._worker.read(fn))
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc

    async def put_place(self, reply_id: str, workspace: str, platform: str, place: str, *, answers: str = "") -> None:
        row = (
            _text(reply_id, "reply id", "id"),
            _text(workspace, "workspace", "workspace"),
            _text(platform, "platform", "id"),
            _text(place, "place", "place"),
        )
        if answers:
            _text(answers, "event key", "key")
        if workspace.partition(":")[0] != platform:
            raise StoreError("invalid", "the platform must be the workspace's")

        def put(db: sqlite3.Connection) -> None:
            # Only a reply of this workspace gets a place (no caller can plant one for another's reply).
            owner = db.execute(
                "SELECT t.ws FROM messages m JOIN threads t ON t.id = m.thread_id WHERE m.id = ?", (_id(reply_id),)
            ).fetchone()
            if owner is None or owner[0] != workspace:
                raise StoreError("not_found", f"no reply {reply_id} in this workspace")
            db.execute(
                "INSERT INTO reply_places (message_id, workspace, platform, place, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id) DO UPDATE SET place = excluded.place, updated_at = excluded.updated_at",
                (*row, time.time()),
            )
            if answers:
                db.execute("DELETE FROM held_questions WHERE key = ? AND workspace = ?", (answers, workspace))

        await self._run(put)

    async def place(self, workspace: str, reply_id: str) -> ReplyPlace | None:
        args = (_text(reply_id, "reply id", "id"), _text(workspace, "workspace", "workspace"))

        def read(db: sqlite3.Connection) -> ReplyPlace | None:
            row = db.execute(
                f"SELECT {COLUMNS} FROM reply_places WHERE message_id = ? AND workspace = ?", args
            ).fetchone()
            return ReplyPlace(*row) if row else None

        return await self._run(read, write=False)

    async def forget_place(self, workspace: str, reply_id: str) -> None:
        args = (_text(reply_id, "reply id", "id"), _text(workspace, "workspace", "workspace"))
        await self._run(lambda db: db.execute("DELETE FROM reply_places WHERE message_id = ? AND workspace = ?", args))

    async def places(self, *, limit: int = 100) -> Sequence[ReplyPlace]:
        error = whole_error("places_page", limit, "limit")
        if error is not None:
            raise StoreError("invalid", error)

        def read(db: sqlite3.Connection) -> list[ReplyPlace]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM reply_places ORDER BY updated_at LIMIT ?",
                (limit,),
            ).fetchall()
            return [ReplyPlace(*r) for r in rows]

        return await self._run(read, write=False)
