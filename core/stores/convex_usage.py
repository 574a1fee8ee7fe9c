"""The usage port in Convex (convex/functions/usage.ts), through the `ConvexStore`'s client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.messages import Actor, Usage, WorkspaceRef
from core.stores.convex import ConvexStore, _actor, _budget_state
from core.stores.usage import BudgetState, Scope, TokenBudgets, UsageRow


def _budgets(data: dict[str, Any]) -> TokenBudgets:
    month = data.get("month")
    return TokenBudgets(int(month) if month is not None else None, {k: int(v) for k, v in sorted(data["day"].items())})


class ConvexUsage:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def token_budgets(self, ws: WorkspaceRef) -> TokenBudgets:
        return _budgets(await self._store._query("usage:budgets", workspace=ws.key))

    async def set_token_budget(self, ws: WorkspaceRef, actor: Actor, scope: Scope, tokens: int | None) -> TokenBudgets:
        data = await self._store._mutation(
            "usage:setBudget", workspace=ws.key, actor=_actor(actor), scope=scope, tokens=tokens
        )
        return _budgets(data)

    async def budget_exhausted(self, ws: WorkspaceRef, user_id: str, role: str) -> BudgetState | None:
        data = await self._store._query("usage:exhausted", workspace=ws.key, user=user_id, role=role)
        return _budget_state(data) if data else None

    async def usage_rows(self, ws: WorkspaceRef, actor: Actor, since_day: str) -> Sequence[UsageRow]:
        rows = await self._store._query("usage:rows", workspace=ws.key, actor=_actor(actor), sinceDay=since_day)
        return [
            UsageRow(
                r["day"],
                r["user"],
                r["channel"],
                r["model"],
                Usage(
                    int(r["inputTokens"]),
                    int(r["outputTokens"]),
                    int(r["cacheReadTokens"]),
                    int(r["cacheWriteTokens"]),
                ),
            )
            for r in rows
        ]
