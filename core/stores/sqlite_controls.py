"""Reply controls in the embedded store's SQLite file (through the store's own worker and checks), kept
for the rule book's `retention.reply_controls_s` after the reply ended (each put prunes a few older)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import get_args

from core.messages import WorkspaceRef
from core.policy import RETENTION
from core.stores.base import StoreError
from core.stores.controls import ReplyControl, ReplyEnd
from core.stores.sqlite import _check, _source_uris, _ws
from core.stores.sqlite_side import SideTable, prune

SCHEMA = """
CREATE TABLE IF NOT EXISTS reply_controls (
    ws TEXT NOT NULL, ref TEXT NOT NULL, asker TEXT NOT NULL, question TEXT NOT NULL, context TEXT NOT NULL,
    state TEXT NOT NULL, answer TEXT NOT NULL, sources TEXT NOT NULL, model TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (ws, ref));
CREATE INDEX IF NOT EXISTS reply_controls_by_age ON reply_controls (updated_at);
"""


def check_control(control: ReplyControl) -> None:
    """The bounds of one record, from the rule book."""
    c = control
    _check(c.ref, "reply ref", "key")
    _check(c.asker, "asker")
    _check(c.question, "question", "text", allow_empty=True)
    _check(c.context, "context", "place")
    if c.state not in get_args(ReplyEnd):
        raise StoreError("invalid", "a reply ends complete, failed or cancelled")
    _check(c.answer, "answer", "text", allow_empty=True)
    _check(c.model, "model", "model", allow_empty=True)
    _source_uris(c.sources)


class SqliteControls(SideTable):
    schema = SCHEMA

    async def put_control(self, ws: WorkspaceRef, control: ReplyControl) -> None:
        key = _ws(ws)
        check_control(control)
        await self._schema()
        c = control
        row = (key, c.ref, c.asker, c.question, c.context, c.state, c.answer, json.dumps(list(c.sources)), c.model)

        def put(db: sqlite3.Connection) -> None:
            now = time.time()
            prune(db, "reply_controls", "updated_at", now - RETENTION["reply_controls_s"])
            db.execute(
                "INSERT OR REPLACE INTO reply_controls "
                "(ws, ref, asker, question, context, state, answer, sources, model, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, now),
            )

        await self.store._tx(put)

    async def control(self, ws: WorkspaceRef, ref: str) -> ReplyControl | None:
        key = _ws(ws)
        _check(ref, "reply ref", "key")
        await self._schema()

        def read(db: sqlite3.Connection) -> ReplyControl | None:
            row = db.execute(
                "SELECT ref, asker, question, context, state, answer, sources, model, updated_at "
                "FROM reply_controls WHERE ws = ? AND ref = ?",
                (key, ref),
            ).fetchone()
            if row is None:
                return None
            return ReplyControl(row[0], row[1], row[2], row[3], row[4], row[5], tuple(json.loads(row[6])), *row[7:])

        return await self.store._read(read)
