"""The local outbox: questions accepted while the store was unreachable, kept on disk until answered.

A small SQLite file of its own in the data folder (so a locked or unreachable store does not lock it
too), keyed by the event key: a question is written here before the user is told it was kept, and
deleted once it has been answered (or refused). `claimed` records that an attempt took the event's
claim in the store, so the retry recognizes that claim as its own instead of taking the event for a
duplicate. A question kept here survives a restart; the next run answers it (core.intake).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.messages import IncomingMessage, decode_message, encode_message
from core.sqlite_worker import SqliteWorker

SCHEMA = """
CREATE TABLE IF NOT EXISTS kept (
    key TEXT PRIMARY KEY, message TEXT NOT NULL, place TEXT NOT NULL, claimed INTEGER NOT NULL,
    kept_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True, slots=True)
class KeptQuestion:
    message: IncomingMessage
    place: dict[str, Any]  # where to answer, in the adapter's terms (core.surface.Placed)
    claimed: bool  # an earlier attempt holds (or may hold) the event's claim
    kept_at: float
    attempts: int


class Outbox:
    """`await Outbox.open(path)`; every call is one short local transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, SCHEMA, name="outbox")

    @classmethod
    async def open(cls, path: Path) -> Outbox:
        outbox = cls(path)
        await outbox._worker.open()
        return outbox

    async def close(self) -> None:
        await self._worker.close()

    async def keep(self, message: IncomingMessage, place: dict[str, Any], *, claimed: bool) -> None:
        """Keep the question (again: a later attempt may only add that the claim was taken)."""
        row = (message.event_key, encode_message(message), json.dumps(place), int(claimed), time.time())
        await self._worker.transaction(
            lambda db: db.execute(
                "INSERT INTO kept (key, message, place, claimed, kept_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET claimed = MAX(claimed, excluded.claimed), attempts = attempts + 1",
                row,
            )
        )

    async def mark_claimed(self, key: str) -> None:
        await self._worker.transaction(lambda db: db.execute("UPDATE kept SET claimed = 1 WHERE key = ?", (key,)))

    async def done(self, key: str) -> None:
        await self._worker.transaction(lambda db: db.execute("DELETE FROM kept WHERE key = ?", (key,)))

    async def pending(self, *, limit: int = 50) -> Sequence[KeptQuestion]:
        """Kept questions, oldest first."""

        def read(db: sqlite3.Connection) -> list[KeptQuestion]:
            rows = db.execute(
                "SELECT message, place, claimed, kept_at, attempts FROM kept ORDER BY kept_at LIMIT ?", (limit,)
            ).fetchall()
            return [KeptQuestion(decode_message(r[0]), json.loads(r[1]), bool(r[2]), r[3], r[4]) for r in rows]

        return await self._worker.read(read)
