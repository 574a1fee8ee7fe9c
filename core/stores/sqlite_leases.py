"""Budget and reply leases in the embedded store's SQLite file, shared by the processes of one machine.

It opens its own connection to the store's file (WAL: readers and one writer at a time across
processes); every lease is one `BEGIN IMMEDIATE` transaction, so two processes never grant the same
token or take over the same reply. Times are the wall clock, the one clock all processes share.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping, Sequence

from core.policy import count_error, number_error, text_error, whole_error
from core.stores.base import StoreError
from core.stores.leases import (
    Beat,
    BudgetGrant,
    BudgetRequest,
    Demand,
    TakenReply,
    demand_share,
    gcra,
    refused_retry_s,
    remember_demand,
)
from core.stores.sqlite_side import OwnConnection, message_id, reply_status
from core.stores.sqlite_stops import SCHEMA as STOPS_SCHEMA
from core.stores.sqlite_stops import stop_requested

SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_buckets (key TEXT PRIMARY KEY, tat REAL NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS budget_demands (
    key TEXT NOT NULL, owner TEXT NOT NULL, since REAL NOT NULL, at REAL NOT NULL, PRIMARY KEY (key, owner));
CREATE TABLE IF NOT EXISTS reply_leases (
    message_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, heartbeat_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reply_leases_by_heartbeat ON reply_leases (heartbeat_at);
"""


def _refuse(error: str | None) -> None:
    if error is not None:
        raise StoreError("invalid", error)


def _text(value: str, name: str, kind: str) -> str:
    _refuse(text_error(kind, value, name))
    return value


def _number(value: float, name: str, high: float, *, least: float = 0.0) -> float:
    """A finite number above 0 (or at least `least`, when given) and at most `high`."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value > high or (value < least if least else value <= 0):
        raise StoreError(
            "invalid",
            f"{name} must be a number above 0{f' and at least {least:g}' if least else ''} and at most {high:g}",
        )
    return float(value)


class SqliteLeases(OwnConnection):
    """`BudgetLeases` and `StreamLeases` on the store's file; `await SqliteLeases.open(path)`."""

    schema = SCHEMA + STOPS_SCHEMA  # a heartbeat says which replies a Stop was asked for
    name = "sqlite-leases"

    # -- BudgetLeases ---------------------------------------------------------------------------
    async def lease(self, requests: Sequence[BudgetRequest], *, owner: str = "") -> Sequence[BudgetGrant]:
        _refuse(count_error("lease_buckets", len(requests), "buckets"))
        if owner:
            _text(owner, "owner", "id")
        for r in requests:
            _text(r.key, "budget key", "key")
            _number(r.per_second, "per_second", 10_000)
            _number(r.burst, "burst", 10_000, least=1.0)
            _number(r.horizon_s, "horizon_s", 600)
            if not (isinstance(r.lead_s, (int, float)) and 0 <= r.lead_s <= 5):
                _refuse("lead_s must be a number from 0 to 5")
            _refuse(whole_error("lease_want", r.want, "want"))
            _refuse(count_error("lease_ages", len(r.waiting), "waiting"))
            for age in r.waiting:
                _refuse(number_error("age_s", age, "waiting"))

        def lease(db: sqlite3.Connection) -> list[BudgetGrant]:
            now = time.time()
            grants: list[BudgetGrant] = []
            for r in requests:
                row = db.execute("SELECT tat, seq FROM budget_buckets WHERE key = ?", (r.key,)).fetchone()
                tat, seq = (row[0], row[1]) if row else (now, 0)
                said = db.execute("SELECT owner, since, at FROM budget_demands WHERE key = ?", (r.key,)).fetchall()
                waiting = sorted(r.waiting, reverse=True)
                share, others = demand_share([Demand(*d) for d in said], owner, waiting, r.want, now)
                if share:
                    slots, undo, new_tat, retry = gcra(tat, now, r.per_second, r.burst, share, r.horizon_s, r.lead_s)
                else:  # older demand elsewhere goes first
                    slots, undo, new_tat, retry = [], [], tat, refused_retry_s(tat, now, r.per_second, r.burst)
                if slots:
                    seq += 1
                    db.execute(
                        "INSERT INTO budget_buckets (key, tat, seq) VALUES (?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, seq = excluded.seq",
                        (r.key, new_tat, seq),
                    )
                kept = remember_demand(others, owner, waiting, len(slots), now)
                if said or kept:
                    db.execute("DELETE FROM budget_demands WHERE key = ?", (r.key,))
                    db.executemany(
                        "INSERT INTO budget_demands VALUES (?, ?, ?, ?)",
                        [(r.key, d.owner, d.since, d.at) for d in kept],
                    )
                grants.append(BudgetGrant(r.key, tuple(slots), tuple(undo), seq, retry, now))
            return grants

        return await self._run(lease)

    async def give_back(self, key: str, seq: int, undo: float) -> bool:
        _text(key, "budget key", "key")

        def give(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT tat, seq FROM budget_buckets WHERE key = ?", (key,)).fetchone()
            if row is None or row[1] != seq or not undo < row[0]:
                return False
            db.execute("UPDATE budget_buckets SET tat = ?, seq = ? WHERE key = ?", (undo, seq + 1, key))
            return True

        return await self._run(give)

    # -- StreamLeases ---------------------------------------------------------------------------
    async def heartbeat(self, owner: str, replies: Mapping[str, str]) -> Beat:
        _text(owner, "owner", "id")
        _refuse(count_error("heartbeat_replies", len(replies), "replies"))
        for workspace in set(replies.values()):
            _text(workspace, "workspace", "workspace")

        def beat(db: sqlite3.Connection) -> Beat:
            now = time.time()
            lost: list[str] = []
            stop: list[str] = []
            for reply, workspace in replies.items():
                mid = message_id(reply)
                status = reply_status(db, workspace, mid)
                if mid is None or status is None:  # no reply of this workspace: never owned through it
                    lost.append(reply)
                    continue
                lease = db.execute("SELECT owner FROM reply_leases WHERE message_id = ?", (mid,)).fetchone()
                if (lease is not None and lease[0] != owner) or (lease is None and status != "streaming"):
                    lost.append(reply)
                    continue
                if lease is not None:
                    db.execute("UPDATE reply_leases SET heartbeat_at = ? WHERE message_id = ?", (now, mid))
                else:
                    db.execute("INSERT INTO reply_leases VALUES (?, ?, ?)", (mid, owner, now))
                if stop_requested(db, workspace, mid):
                    stop.append(reply)
            return Beat(tuple(lost), tuple(stop))

        return await self._run(beat)

    async def take_over(
        self, owner: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[TakenReply]:
        _text(owner, "owner", "id")
        _number(stale_s, "stale_s", 86_400)
        _refuse(whole_error("lease_page", limit, "limit"))
        _refuse(count_error("platforms", len(platforms), "platforms"))
        # Workspace keys are "platform:id": only replies of the platforms this process can finish.
        served = " AND (" + " OR ".join("t.ws LIKE ? || ':%'" for _ in platforms) + ")" if platforms else ""

        def take(db: sqlite3.Connection) -> list[TakenReply]:
            now = time.time()
            cutoff = now - stale_s
            # Finished replies need no owner: leases left behind by a process that died after finishing.
            db.execute(
                "DELETE FROM reply_leases WHERE heartbeat_at < ? AND message_id IN "
                "(SELECT id FROM messages WHERE status != 'streaming')",
                (cutoff,),
            )
            rows = db.execute(
                "SELECT m.id, t.ws FROM messages m LEFT JOIN reply_leases l ON l.message_id = m.id "
                "JOIN threads t ON t.id = m.thread_id WHERE m.status = 'streaming' AND "
                f"((l.message_id IS NULL AND m.updated_at < ?) OR l.heartbeat_at < ?){served} ORDER BY m.id LIMIT ?",
                (cutoff, cutoff, *platforms, limit),
            ).fetchall()
            db.executemany(
                "INSERT INTO reply_leases (message_id, owner, heartbeat_at) VALUES (?, ?, ?) "
                "ON CONFLICT (message_id) DO UPDATE SET owner = excluded.owner, heartbeat_at = excluded.heartbeat_at",
                [(r[0], owner, now) for r in rows],
            )
            return [TakenReply(str(r[0]), r[1]) for r in rows]

        return await self._run(take)

    async def release(self, owner: str, workspace: str, reply_id: str) -> bool:
        _text(owner, "owner", "id")
        _text(workspace, "workspace", "workspace")
        mid = message_id(reply_id)
        if mid is None:
            raise StoreError("invalid", f"message id {reply_id!r} is not an id of this store")

        def release(db: sqlite3.Connection) -> bool:
            if reply_status(db, workspace, mid) is None:
                return False  # another workspace's reply: not released through this one
            cur = db.execute("DELETE FROM reply_leases WHERE message_id = ? AND owner = ?", (mid, owner))
            return cur.rowcount == 1

        return await self._run(release)
