"""Feedback in the embedded store's SQLite file (through the store's own worker and checks)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from core.messages import Actor, WorkspaceRef
from core.policy import COUNTS
from core.roles import Permission
from core.stores.base import StoreError
from core.stores.feedback import Feedback, Rating
from core.stores.sqlite import _check, _source_uris, _ws
from core.stores.sqlite_side import SideTable

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    ws TEXT NOT NULL, reply_key TEXT NOT NULL, user_id TEXT NOT NULL, rating TEXT NOT NULL, reason TEXT NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, sources TEXT NOT NULL, model TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (ws, reply_key, user_id))
"""


def check_feedback(feedback: Feedback) -> None:
    """The bounds of one rating, from the rule book."""
    _check(feedback.reply_key, "reply key", "key")
    _check(feedback.user_id, "user id")
    if feedback.rating not in ("up", "down"):
        raise StoreError("invalid", "a rating is up or down")
    _check(feedback.question, "question", "text", allow_empty=True)
    _check(feedback.answer, "answer", "text", allow_empty=True)
    _check(feedback.model, "model", "model", allow_empty=True)
    _check(feedback.reason, "reason", "detail", allow_empty=True)
    _source_uris(feedback.sources)


class SqliteFeedback(SideTable):
    schema = SCHEMA

    async def add_feedback(self, ws: WorkspaceRef, feedback: Feedback) -> None:
        _ws(ws)
        check_feedback(feedback)
        await self._schema()
        f = feedback
        row = (ws.key, f.reply_key, f.user_id, f.rating, f.reason, f.question, f.answer)
        rest = (json.dumps(list(f.sources)), f.model, time.time())

        def add(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO feedback (ws, reply_key, user_id, rating, reason, question, answer, sources, model, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ws, reply_key, user_id) DO UPDATE SET "
                "rating = excluded.rating, reason = excluded.reason, at = excluded.at",
                row + rest,
            )

        await self.store._tx(add)

    async def recent_feedback(
        self, ws: WorkspaceRef, actor: Actor, *, rating: Rating = "down", limit: int = 10, before: float | None = None
    ) -> Sequence[Feedback]:
        _ws(ws)
        if not 1 <= limit <= COUNTS["messages_page"]:
            raise StoreError("invalid", f"limit must be from 1 to {COUNTS['messages_page']}")
        await self._schema()

        def read(db: sqlite3.Connection) -> list[Feedback]:
            self.store._require(db, ws.key, actor, Permission.MANAGE_KNOWLEDGE)
            rows = db.execute(
                "SELECT reply_key, user_id, rating, question, answer, sources, model, reason, at FROM feedback "
                "WHERE ws = ? AND rating = ? AND at < ? ORDER BY at DESC LIMIT ?",
                (ws.key, rating, before if before is not None else float("inf"), limit),
            ).fetchall()
            return [Feedback(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7], r[8]) for r in rows]

        return await self.store._act(ws.key, actor, "feedback list", read)
