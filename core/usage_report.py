"""What people read about tokens: the `/chatbot usage` report with its cost estimate, the budget
overview, the refusal a question gets over budget and the notices when a budget is nearly or fully used."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from core.config import ModelPrice
from core.messages import Usage
from core.policy import COUNTS
from core.stores.usage import BudgetState, TokenBudgets, UsageRow, exhausted, resets_at, tokens_of

TOP = 10  # rows shown per table (users, channels); days are all shown


def price_of(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of the longest prefix of `model` in the table, or None."""
    matches = [key for key in prices if model.startswith(key)]
    return prices[max(matches, key=len)] if matches else None


def cost_of(usage: Usage, price: ModelPrice) -> float:
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / 1_000_000


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_write_tokens + b.cache_write_tokens,
    )


def when(at: float) -> str:
    """A reset moment as people read it: "00:00 UTC on 1 January 2027"."""
    t = time.gmtime(at)
    return f"00:00 UTC on {t.tm_mday} {time.strftime('%B %Y', t)}"


def _line(label: str, usage: Usage, cost: float, unpriced: bool) -> str:
    dollars = f"${cost:,.2f}" + ("+" if unpriced else "") if cost or not unpriced else "no price"
    return (
        f"• {label}: {tokens_of(usage):,} tokens (in {usage.input_tokens:,}, out {usage.output_tokens:,}, "
        f"cache read {usage.cache_read_tokens:,}, cache write {usage.cache_write_tokens:,}) · {dollars}"
    )


def usage_report(rows: Sequence[UsageRow], prices: Mapping[str, ModelPrice], since_day: str) -> str:
    """Tokens and estimated cost in total and by user, channel and day (Markdown)."""
    if not rows:
        return f"No tokens used since {since_day}."
    unpriced_models = sorted({r.model or "(default)" for r in rows if price_of(r.model, prices) is None})

    def table(title: str, key: Callable[[UsageRow], str], limit: int | None) -> list[str]:
        usage: dict[str, Usage] = defaultdict(Usage)
        cost: dict[str, float] = defaultdict(float)
        unpriced: set[str] = set()
        for r in rows:
            k = key(r)
            usage[k] = _add(usage[k], r.usage)
            price = price_of(r.model, prices)
            if price is None:
                unpriced.add(k)
            else:
                cost[k] += cost_of(r.usage, price)
        order = sorted(usage, key=lambda k: (-tokens_of(usage[k]), k)) if limit else sorted(usage, reverse=True)
        shown = order[:limit] if limit else order
        lines = [f"**{title}**", *(_line(k, usage[k], cost[k], k in unpriced) for k in shown)]
        if len(order) > len(shown):
            lines.append(f"• … and {len(order) - len(shown)} more")
        return lines

    everything = table("Total", lambda r: f"since {since_day}", None)
    lines = [
        f"**Usage since {since_day}** (estimated cost from the configured prices)",
        *everything[1:],
        *table("By user", lambda r: f"<@{r.user_id}>", TOP),
        *table("By channel", lambda r: f"<#{r.channel_id}>", TOP),
        *table("By day", lambda r: r.day, None),
    ]
    if unpriced_models:
        lines.append(f"_No price configured for {', '.join(unpriced_models)} (CHATBOT_MODEL_PRICES)._")
    if len(rows) >= COUNTS["usage_rows"]:
        lines.append(f"_Only the newest {COUNTS['usage_rows']:,} ledger rows are counted; ask for fewer days._")
    return "\n".join(lines)


def budgets_report(budgets: TokenBudgets, month_used: int) -> str:
    month = (
        f"{month_used:,} of {budgets.month:,} tokens this month ({month_used / budgets.month:.0%})"
        if budgets.month
        else f"none ({month_used:,} tokens this month)"
    )
    day = ", ".join(f"{role}: {tokens:,}" for role, tokens in sorted(budgets.day.items())) or "none"
    lines = ["**Token budgets** (UTC periods)", f"• workspace, monthly: {month}", f"• per user, daily by role: {day}"]
    if exhausted(month_used, budgets.month):
        lines.append(f"• ⚠️ Used up: questions are refused until {when(resets_at('month'))}.")
    return "\n".join(lines)


def budget_refusal(state: BudgetState) -> str:
    """The polite refusal of a question over budget, saying when it resets."""
    if state.scope == "month":
        return (
            "Sorry, this workspace has used its token budget for this month, so I can't answer right now. "
            f"The budget resets at {when(state.resets_at)}; an admin can raise it with `/chatbot budget month`."
        )
    return (
        "Sorry, you've used your token budget for today, so I can't answer right now. "
        f"It resets at {when(state.resets_at)}."
    )


def budget_notice(state: BudgetState) -> str:
    """The one-time notice when a budget is first nearly (warn_at) or fully used."""
    if state.scope == "day":
        part = "all" if state.level >= 1 else f"{state.used / state.limit:.0%}"
        return (
            f"Heads-up: you've used {part} of your daily token budget ({state.used:,} of {state.limit:,}); "
            f"it resets at {when(state.resets_at)}."
        )
    if state.level >= 1:
        return (
            f"Heads-up for admins: this workspace has used its whole monthly token budget ({state.used:,} of "
            f"{state.limit:,} tokens). Questions are refused until {when(state.resets_at)} unless an admin "
            "raises it (`/chatbot budget month <tokens>`); `/chatbot usage` shows where the tokens went."
        )
    return (
        f"Heads-up for admins: this workspace has used {state.used / state.limit:.0%} of its monthly token budget "
        f"({state.used:,} of {state.limit:,} tokens); it resets at {when(state.resets_at)}. "
        "`/chatbot usage` shows where the tokens went."
    )
