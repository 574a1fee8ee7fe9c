"""The token ledger's tables and the one charge, run inside the SQLite store's own transactions.

`charge` is called by `SqliteStore.complete_message` in the transaction that stores the reply's
usage, so the ledger, the period totals, the once-only notices and their audit rows commit with it
or not at all (the rule is core/stores/usage.py's, the Convex twin convex/functions/lib/usage.ts).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Literal

from core.messages import Usage
from core.stores.usage import MONTH, BudgetState, Charge, crossed, exhausted, periods, resets_at, tokens_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS token_usage (
    ws TEXT NOT NULL, day TEXT NOT NULL, user_id TEXT NOT NULL, channel_id TEXT NOT NULL, model TEXT NOT NULL,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    PRIMARY KEY (ws, day, user_id, channel_id, model));
CREATE TABLE IF NOT EXISTS token_totals (
    ws TEXT NOT NULL, period TEXT NOT NULL, tokens INTEGER NOT NULL, noticed REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (ws, period));
CREATE TABLE IF NOT EXISTS token_budgets (
    ws TEXT NOT NULL, scope TEXT NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (ws, scope));
"""

# Files made before the cache columns existed get them on open (ADD COLUMN has no IF NOT EXISTS).
CACHE_COLUMNS = ("cache_read_tokens", "cache_write_tokens")


def migrate(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    for column in CACHE_COLUMNS:
        if column not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


def month_period(month: str) -> str:
    return f"month:{month}"


def day_period(day: str, user_id: str) -> str:
    return f"day:{day}:{user_id}"


def budget(db: sqlite3.Connection, ws: str, scope: str) -> int | None:
    row = db.execute("SELECT tokens FROM token_budgets WHERE ws = ? AND scope = ?", (ws, scope)).fetchone()
    return int(row[0]) if row else None


def total(db: sqlite3.Connection, ws: str, period: str) -> tuple[int, float]:
    row = db.execute("SELECT tokens, noticed FROM token_totals WHERE ws = ? AND period = ?", (ws, period)).fetchone()
    return (int(row[0]), float(row[1])) if row else (0, 0.0)


def _budgets(
    db: sqlite3.Connection, ws: str, user_id: str, role: str, now: float
) -> list[tuple[Literal["month", "day"], str, int | None]]:
    """The two budgets a question counts against: the workspace's month, the asker's day (by role)."""
    month, day = periods(now)
    return [
        ("month", month_period(month), budget(db, ws, MONTH)),
        ("day", day_period(day, user_id), budget(db, ws, role)),
    ]


def exhausted_budget(db: sqlite3.Connection, ws: str, user_id: str, role: str, now: float) -> BudgetState | None:
    for scope, period, limit in _budgets(db, ws, user_id, role, now):
        used, _ = total(db, ws, period)
        if limit is not None and exhausted(used, limit):
            return BudgetState(scope, used, limit, resets_at(scope, now), user_id=user_id if scope == "day" else "")
    return None


def charge(
    db: sqlite3.Connection,
    ws: str,
    channel_id: str,
    who: Charge,
    usage: Usage,
    audit: Callable[[sqlite3.Connection, str, str, str, str], None],
) -> list[BudgetState]:
    """Add the reply's tokens to the ledger and the totals; announce (audit and return) what they crossed."""
    now = time.time()
    _, day = periods(now)
    db.execute(
        "INSERT INTO token_usage (ws, day, user_id, channel_id, model, input, output, cache_read, cache_write) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ws, day, user_id, channel_id, model) DO UPDATE SET "
        "input = input + excluded.input, output = output + excluded.output, "
        "cache_read = cache_read + excluded.cache_read, cache_write = cache_write + excluded.cache_write",
        (
            ws,
            day,
            who.user_id,
            channel_id,
            who.model,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        ),
    )
    spent = tokens_of(usage)
    notices: list[BudgetState] = []
    for scope, period, limit in _budgets(db, ws, who.user_id, who.role, now):
        used, noticed = total(db, ws, period)
        used += spent
        levels = crossed(used, limit, noticed)
        db.execute(
            "INSERT INTO token_totals (ws, period, tokens, noticed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (ws, period) DO UPDATE SET tokens = excluded.tokens, noticed = excluded.noticed",
            (ws, period, used, max([noticed, *levels])),
        )
        for level in levels:
            assert limit is not None
            state = BudgetState(scope, used, limit, resets_at(scope, now), level, who.user_id if scope == "day" else "")
            action = "budget.exhausted" if level >= 1.0 else "budget.warning"
            whose = f" for <@{who.user_id}> ({who.role})" if scope == "day" else ""
            audit(db, ws, who.user_id, action, f"{scope}{whose}: {used:,} of {limit:,} tokens")
            notices.append(state)
    return notices
