"""ReplyPlaces in the embedded store's SQLite file (its own connection, like the leases), scoped to the
workspace of each reply (core.stores.places)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from core.policy import count_error, number_error, text_error, whole_error
from core.stores.base import StoreError
from core.stores.places import ReplyPlace, StalePlace
from core.stores.sqlite_questions import SCHEMA as HOLDS_SCHEMA
from core.stores.sqlite_side import OwnConnection, message_id

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


class SqlitePlaces(OwnConnection):
    """`ReplyPlaces` on the store's file; `await SqlitePlaces.open(path)`."""

    schema = SCHEMA + HOLDS_SCHEMA  # a place ends a hold
    name = "sqlite-places"

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
                "SELECT t.ws FROM messages m JOIN threads t ON t.id = m.thread_id WHERE m.id = ?",
                (message_id(reply_id),),
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

    async def stale_places(
        self, older_than_s: float, platforms: Sequence[str], *, limit: int = 100
    ) -> Sequence[StalePlace]:
        for error in (
            whole_error("places_page", limit, "limit"),
            count_error("platforms", len(platforms), "platforms"),
            number_error("age_s", older_than_s, "older_than_s"),
        ):
            if error is not None:
                raise StoreError("invalid", error)
        if not platforms:
            return []
        marks = ", ".join("?" for _ in platforms)

        def read(db: sqlite3.Connection) -> list[StalePlace]:
            rows = db.execute(
                f"SELECT message_id, workspace, updated_at FROM reply_places WHERE updated_at < ? "
                f"AND platform IN ({marks}) ORDER BY updated_at LIMIT ?",
                (time.time() - older_than_s, *platforms, limit),
            ).fetchall()
            return [StalePlace(*r) for r in rows]

        return await self._run(read, write=False)
