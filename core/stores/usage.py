"""The usage port: tokens per user, channel, day and model, and the token budgets that bound them.

A reply's usage is charged by `ThreadStore.complete_message(..., charge=Charge(...))`, in the same
transaction that stores the usage on the reply (SQLite: one `BEGIN IMMEDIATE`; Convex: the
`threads:completeMessage` mutation). That write adds the tokens to the ledger and to the running
totals of the workspace's month and the asker's day, and returns the budget thresholds it crossed
for the first time in their period (`warn_at` of the budget, then the whole): each one is also
audited there (`budget.warning`, `budget.exhausted`), so it is announced once however many processes
write. Before answering, `budget_exhausted` reads the same totals with the same rule (`exhausted`).

Budgets (admins, manage_settings, audited): a monthly token budget for the workspace and a daily
token budget per user by role (like the hourly question quotas). Periods are UTC; a month's budget
resets at 00:00 UTC on the 1st, a day's at 00:00 UTC. Tokens counted: input + output + cache reads +
cache writes, every token the model processed for the reply.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.messages import Actor, Usage, WorkspaceRef
from core.policy import RULES

WARN_AT: float = float(RULES["budgets"]["warn_at"])
MONTH = "month"  # the scope of the workspace's budget; any other scope is a role label (a daily budget)

Scope = str  # "month" or a role label


@dataclass(frozen=True, slots=True)
class Charge:
    """Whom a reply's tokens count against: the asker (and the role their daily budget is taken from)
    and the model that answered (for the cost estimate). The channel is the reply's thread's."""

    user_id: str
    role: str  # the asker's role label
    model: str = ""


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str  # YYYY-MM-DD, UTC
    user_id: str
    channel_id: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class TokenBudgets:
    month: int | None = None  # tokens per UTC month for the whole workspace; None: no budget
    day: dict[str, int] = field(default_factory=dict)  # role label -> tokens per user per UTC day


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget at a moment: how much of it is used, and when it resets."""

    scope: Literal["month", "day"]
    used: int
    limit: int
    resets_at: float  # unix seconds, UTC
    level: float = 1.0  # for a crossing: the threshold crossed (WARN_AT or 1.0)
    user_id: str = ""  # for a daily budget: whose


class UsageLedger(Protocol):
    async def token_budgets(self, ws: WorkspaceRef) -> TokenBudgets: ...

    async def set_token_budget(self, ws: WorkspaceRef, actor: Actor, scope: Scope, tokens: int | None) -> TokenBudgets:
        """Set (None: remove) the monthly budget (`scope` "month") or a role's daily one; manage_settings; audited."""
        ...

    async def budget_exhausted(self, ws: WorkspaceRef, user_id: str, role: str) -> BudgetState | None:
        """The budget a question from this user would break (the month's first), or None."""
        ...

    async def usage_rows(self, ws: WorkspaceRef, actor: Actor, since_day: str) -> Sequence[UsageRow]:
        """The ledger from `since_day` (YYYY-MM-DD) on, at most COUNTS["usage_rows"] rows; view_audit."""
        ...


# -- the one rule (convex/functions/lib/usage.ts is its TypeScript twin) ----------------------------
def tokens_of(usage: Usage) -> int:
    return usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens


def periods(now: float | None = None) -> tuple[str, str]:
    """(month "YYYY-MM", day "YYYY-MM-DD") of `now`, UTC."""
    t = time.gmtime(time.time() if now is None else now)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}", f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"


def resets_at(scope: Literal["month", "day"], now: float | None = None) -> float:
    """The start of the next UTC month or day."""
    t = time.gmtime(time.time() if now is None else now)
    if scope == "day":
        return float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def exhausted(used: int, limit: int | None) -> bool:
    return limit is not None and used >= limit


def crossed(used: int, limit: int | None, noticed: float) -> list[float]:
    """The thresholds (WARN_AT, then 1.0) `used` has reached that were not announced yet in the period
    (`noticed`: the highest announced). Reaching both at once announces both; a budget lowered below
    the use so far is announced by the next write."""
    if limit is None:
        return []
    return [level for level in (WARN_AT, 1.0) if level > noticed and used >= level * limit]
