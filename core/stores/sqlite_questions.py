"""Question holds in the embedded store's SQLite file, shared by the processes of one machine.

Its own connection to the store's file, like the leases (core.stores.sqlite_leases); a hold is
written in the same transaction as the event's claim (the store's `event_claims` table), so a
question is never claimed without being held. Times are the wall clock, shared by all processes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence

from core.policy import count_error, whole_error
from core.stores.questions import HeldQuestion
from core.stores.sqlite_leases import _number, _refuse, _text  # the same checks as the leases
from core.stores.sqlite_side import OwnConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS held_questions (
    key TEXT PRIMARY KEY, workspace TEXT NOT NULL, platform TEXT NOT NULL, message TEXT NOT NULL,
    place TEXT NOT NULL, owner TEXT NOT NULL, claimant TEXT NOT NULL, heartbeat_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS held_questions_by_heartbeat ON held_questions (heartbeat_at);
"""


class SqliteQuestions(OwnConnection):
    """`QuestionHolds` on the store's file (opened after the store: its claims table is the store's)."""

    schema = SCHEMA
    name = "sqlite-questions"

    async def hold(self, owner: str, claimant: str, question: HeldQuestion) -> bool:
        _text(owner, "owner", "id")
        _text(claimant, "claimant", "id")
        q = question
        row = (
            _text(q.key, "event key", "key"),
            _text(q.workspace, "workspace", "workspace"),
            q.workspace.partition(":")[0],
            _text(q.message, "question", "text"),
            _text(q.place, "place", "place"),
        )

        if not q.key.startswith(f"{q.workspace}:"):
            _refuse("the event must be of the workspace")

        def hold(db: sqlite3.Connection) -> bool:
            now = time.time()
            if db.execute("INSERT OR IGNORE INTO event_claims (key, at) VALUES (?, ?)", (q.key, now)).rowcount == 1:
                db.execute(
                    "INSERT OR REPLACE INTO held_questions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, owner, claimant, now),
                )
                return True
            # Claimed already: by this attempt (its retry, or it took the question over), or by another.
            cur = db.execute(
                "UPDATE held_questions SET owner = ?, heartbeat_at = ? WHERE key = ? AND claimant = ?",
                (owner, now, q.key, claimant),
            )
            return cur.rowcount == 1

        return await self._run(hold)

    async def heartbeat(self, owner: str, keys: Mapping[str, str]) -> Sequence[str]:
        _text(owner, "owner", "id")
        _refuse(count_error("heartbeat_replies", len(keys), "questions"))
        for workspace in set(keys.values()):
            _text(workspace, "workspace", "workspace")

        def beat(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            sql = "UPDATE held_questions SET heartbeat_at = ? WHERE key = ? AND owner = ? AND workspace = ?"
            return [k for k, ws in keys.items() if db.execute(sql, (now, k, owner, ws)).rowcount == 0]

        return await self._run(beat)

    async def take_over(
        self, owner: str, claimant: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[HeldQuestion]:
        _text(owner, "owner", "id")
        _text(claimant, "claimant", "id")
        _number(stale_s, "stale_s", 86_400)
        _refuse(whole_error("lease_page", limit, "limit"))
        _refuse(count_error("platforms", len(platforms), "platforms"))
        served = f" AND platform IN ({', '.join('?' for _ in platforms)})" if platforms else ""

        def take(db: sqlite3.Connection) -> list[HeldQuestion]:
            now = time.time()
            rows = db.execute(
                f"SELECT key, workspace, message, place FROM held_questions WHERE heartbeat_at < ?{served} "
                "ORDER BY heartbeat_at LIMIT ?",
                (now - stale_s, *platforms, limit),
            ).fetchall()
            db.executemany(
                "UPDATE held_questions SET owner = ?, claimant = ?, heartbeat_at = ? WHERE key = ?",
                [(owner, claimant, now, r[0]) for r in rows],
            )
            return [HeldQuestion(*r) for r in rows]

        return await self._run(take)

    async def release(self, owner: str, workspace: str, key: str) -> bool:
        args = (_text(key, "event key", "key"), _text(owner, "owner", "id"), _text(workspace, "workspace", "workspace"))
        return await self._run(
            lambda db: (
                db.execute("DELETE FROM held_questions WHERE key = ? AND owner = ? AND workspace = ?", args).rowcount
                == 1
            )
        )
