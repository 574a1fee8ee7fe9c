"""The usage port on the embedded store's SQLite file (through the store's own worker and checks)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence

from core.messages import Actor, Usage, WorkspaceRef
from core.policy import COUNTS
from core.roles import Permission, Role, RoleChangeDenied
from core.stores import sqlite_ledger as ledger
from core.stores.base import PermissionDenied, StoreError
from core.stores.sqlite import SqliteStore, _check, _whole, _ws
from core.stores.usage import MONTH, BudgetState, Scope, TokenBudgets, UsageRow

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SCOPES = {MONTH, *(r.label for r in Role)}


def _scope(scope: object) -> str:
    if not isinstance(scope, str) or scope not in SCOPES:
        raise StoreError("invalid", f"a budget's scope is {MONTH!r} or a role ({', '.join(r.label for r in Role)})")
    return scope


def _budgets(db: sqlite3.Connection, ws: str) -> TokenBudgets:
    rows = dict(db.execute("SELECT scope, tokens FROM token_budgets WHERE ws = ?", (ws,)).fetchall())
    month = rows.pop(MONTH, None)
    return TokenBudgets(int(month) if month is not None else None, {k: int(v) for k, v in sorted(rows.items())})


class SqliteUsage:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def token_budgets(self, ws: WorkspaceRef) -> TokenBudgets:
        _ws(ws)
        return await self.store._read(lambda db: _budgets(db, ws.key))

    async def set_token_budget(self, ws: WorkspaceRef, actor: Actor, scope: Scope, tokens: int | None) -> TokenBudgets:
        _ws(ws)
        scope = _scope(scope)
        if tokens is not None:
            _whole(tokens, "token budget", "token_budget")

        def change(db: sqlite3.Connection) -> TokenBudgets:
            self.store._require(db, ws.key, actor, Permission.MANAGE_SETTINGS)
            if tokens is None:
                db.execute("DELETE FROM token_budgets WHERE ws = ? AND scope = ?", (ws.key, scope))
            else:
                db.execute(
                    "INSERT INTO token_budgets (ws, scope, tokens) VALUES (?, ?, ?) "
                    "ON CONFLICT (ws, scope) DO UPDATE SET tokens = excluded.tokens",
                    (ws.key, scope, tokens),
                )
            self.store._audit(db, ws.key, actor.user_id, "budget.set", f"{scope}: {tokens if tokens else 'none'}")
            return _budgets(db, ws.key)

        return await self.store._act(ws.key, actor, f"budget {scope}", change)

    async def budget_exhausted(self, ws: WorkspaceRef, user_id: str, role: str) -> BudgetState | None:
        _ws(ws)
        _check(user_id, "user id")
        _check(role, "role")
        now = time.time()
        return await self.store._read(lambda db: ledger.exhausted_budget(db, ws.key, user_id, role, now))

    async def usage_rows(self, ws: WorkspaceRef, actor: Actor, since_day: str) -> Sequence[UsageRow]:
        _ws(ws)
        if not isinstance(since_day, str) or not DAY.match(since_day):
            raise StoreError("invalid", "since_day is a date, YYYY-MM-DD")

        def read(db: sqlite3.Connection) -> list[UsageRow]:
            try:  # a read writes nothing, so its refusal is audited by the caller (as for the audit log)
                self.store._require(db, ws.key, actor, Permission.VIEW_AUDIT)
            except RoleChangeDenied as exc:
                raise PermissionDenied(exc.code, str(exc)) from None
            rows = db.execute(
                "SELECT day, user_id, channel_id, model, input, output, cache_read, cache_write FROM token_usage "
                "WHERE ws = ? AND day >= ? ORDER BY day DESC, user_id, channel_id, model LIMIT ?",
                (ws.key, since_day, COUNTS["usage_rows"]),
            ).fetchall()
            return [UsageRow(r[0], r[1], r[2], r[3], Usage(r[4], r[5], r[6], r[7])) for r in rows]

        return await self.store._read(read)
