"""ReplyStops in the embedded store's SQLite file (core.stores.stops), through the store's own worker
and role checks; the reply heartbeat (core.stores.sqlite_leases) reads the same table."""

from __future__ import annotations

import sqlite3
import time

from core.messages import Actor, WorkspaceRef
from core.policy import RETENTION
from core.roles import Permission, allows
from core.stores.base import StoreError
from core.stores.sqlite import _check, _ws
from core.stores.sqlite_side import SideTable, message_id, prune, reply_status
from core.stores.stops import StopAnswer

SCHEMA = """
CREATE TABLE IF NOT EXISTS reply_stops (
    ws TEXT NOT NULL, ref TEXT NOT NULL, message_id INTEGER NOT NULL, asker TEXT NOT NULL,
    stop_by TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (ws, ref));
CREATE INDEX IF NOT EXISTS reply_stops_by_message ON reply_stops (message_id);
CREATE INDEX IF NOT EXISTS reply_stops_by_at ON reply_stops (at);
"""


def stop_requested(db: sqlite3.Connection, workspace: str, mid: int) -> bool:
    """Whether a Stop was recorded for reply `mid` of `workspace` (for the heartbeat)."""
    sql = "SELECT 1 FROM reply_stops WHERE message_id = ? AND ws = ? AND stop_by != ''"
    return db.execute(sql, (mid, workspace)).fetchone() is not None


class SqliteStops(SideTable):
    schema = SCHEMA

    async def streaming(self, ws: WorkspaceRef, ref: str, reply_id: str, asker: str) -> None:
        key = _ws(ws)
        _check(ref, "reply ref", "key")
        _check(asker, "asker")
        mid = message_id(_check(reply_id, "reply id"))
        await self._schema()

        def note(db: sqlite3.Connection) -> None:
            if reply_status(db, key, mid) is None:
                raise StoreError("not_found", f"no reply {reply_id} in this workspace")
            now = time.time()
            prune(db, "reply_stops", "at", now - RETENTION["reply_stops_s"])
            db.execute(
                "INSERT OR REPLACE INTO reply_stops (ws, ref, message_id, asker, stop_by, at) "
                "VALUES (?, ?, ?, ?, '', ?)",
                (key, ref, mid, asker, now),
            )

        await self.store._tx(note)

    async def request_stop(self, ws: WorkspaceRef, actor: Actor, ref: str) -> StopAnswer:
        key = _ws(ws)
        _check(ref, "reply ref", "key")
        _check(actor.user_id, "actor id")
        await self._schema()

        def request(db: sqlite3.Connection) -> StopAnswer:
            row = db.execute(
                "SELECT message_id, asker, stop_by FROM reply_stops WHERE ws = ? AND ref = ?", (key, ref)
            ).fetchone()
            if row is None or reply_status(db, key, row[0]) != "streaming":
                return "ended"
            role = self.store._actor_role(db, key, actor)
            if actor.user_id != row[1] and not allows(role, Permission.CONTROL_OTHERS_REPLIES):
                return "not_allowed"
            if row[2]:
                return "duplicate"
            db.execute("UPDATE reply_stops SET stop_by = ? WHERE ws = ? AND ref = ?", (actor.user_id, key, ref))
            return "stopping"

        return await self.store._tx(request)
