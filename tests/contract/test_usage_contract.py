"""The token ledger and budgets, on SQLite and on Convex: cache tokens kept with each reply, usage
charged in the reply's own write, budgets admin-only, audited, bounded, announced once, enforced."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import usage_for
from core.messages import MessageRole, ReplyStatus, Usage
from core.policy import NUMBERS
from core.stores.base import PermissionDenied, Store, StoreError
from core.stores.usage import WARN_AT, BudgetState, Charge, TokenBudgets, UsageLedger, periods, resets_at
from tests.contract.conftest import STORES
from tests.contract.test_store_contract import ADMIN, MEMBER, OTHER, OWNER, WS, actions

ASKER = Charge("U-asker", "member", "claude-haiku-4-5")


@pytest.fixture(params=sorted(STORES))
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, UsageLedger]]:
    async with STORES[request.param](tmp_path, request) as store:
        yield store, usage_for(store)


async def reply(
    store: Store, usage: Usage, charge: Charge | None = ASKER, channel: str = "C1"
) -> tuple[str, list[BudgetState]]:
    thread = await store.thread_for(WS, channel, "t1")
    mid = await store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    crossed = await store.complete_message(
        WS, mid, text="an answer", status=ReplyStatus.COMPLETE, usage=usage, charge=charge
    )
    return mid, list(crossed)


async def test_a_reply_keeps_its_cache_reads_and_writes(stores: tuple[Store, UsageLedger]) -> None:
    store, _ = stores
    mid, crossed = await reply(store, Usage(10, 4, 300, 25), charge=None)
    stored = await store.message(WS, mid)
    assert stored is not None and stored.usage == Usage(10, 4, 300, 25)
    assert crossed == []
    with pytest.raises(StoreError):  # the tokens' bound holds for cache counts too
        await reply(store, Usage(1, 1, NUMBERS["tokens"][1] + 1, 0), charge=None)


async def test_usage_is_charged_by_user_channel_day_and_model(stores: tuple[Store, UsageLedger]) -> None:
    store, ledger = stores
    await reply(store, Usage(10, 4, 300, 25))
    await reply(store, Usage(1, 2, 3, 4))
    await reply(store, Usage(5, 5), channel="C2")
    await reply(store, Usage(7, 7), charge=None)  # nobody to charge (a recovered reply): not in the ledger
    rows = await ledger.usage_rows(WS, ADMIN, periods()[1])
    by_channel = {r.channel_id: (r.day, r.user_id, r.model, r.usage) for r in rows}
    today = periods()[1]
    assert by_channel == {
        "C1": (today, "U-asker", "claude-haiku-4-5", Usage(11, 6, 303, 29)),
        "C2": (today, "U-asker", "claude-haiku-4-5", Usage(5, 5)),
    }
    assert await ledger.usage_rows(OTHER, OWNER, today) == []  # scoped to the workspace
    with pytest.raises(PermissionDenied):  # usage is for admins (view_audit)
        await ledger.usage_rows(WS, MEMBER, today)
    with pytest.raises(StoreError):
        await ledger.usage_rows(WS, ADMIN, "last week")


async def test_budgets_are_admin_only_audited_and_bounded(stores: tuple[Store, UsageLedger]) -> None:
    store, ledger = stores
    assert await ledger.token_budgets(WS) == TokenBudgets()
    await ledger.set_token_budget(WS, ADMIN, "month", 1000)
    assert await ledger.set_token_budget(WS, ADMIN, "member", 200) == TokenBudgets(1000, {"member": 200})
    assert await ledger.token_budgets(OTHER) == TokenBudgets()
    with pytest.raises(PermissionDenied):
        await ledger.set_token_budget(WS, MEMBER, "month", 10**9)
    for bad_scope, tokens in (("week", 10), ("member", 0), ("month", NUMBERS["token_budget"][1] + 1)):
        with pytest.raises(StoreError) as caught:
            await ledger.set_token_budget(WS, ADMIN, bad_scope, tokens)
        assert caught.value.code == "invalid"
    assert await ledger.set_token_budget(WS, ADMIN, "member", None) == TokenBudgets(1000)
    trail = await actions(store)
    assert trail.count("budget.set") == 3 and "refused" in trail


async def test_the_month_budget_is_announced_once_at_each_threshold_and_then_refuses(
    stores: tuple[Store, UsageLedger],
) -> None:
    store, ledger = stores
    await ledger.set_token_budget(WS, ADMIN, "month", 1000)
    _, crossed = await reply(store, Usage(700, 50))
    assert crossed == []
    assert await ledger.budget_exhausted(WS, "U-asker", "member") is None
    _, crossed = await reply(store, Usage(40, 20, 10, 0))  # 820 >= 80% of 1000
    assert [(c.scope, c.level, c.used, c.limit) for c in crossed] == [("month", WARN_AT, 820, 1000)]
    _, crossed = await reply(store, Usage(10, 10))  # past 80% again: not announced again
    assert crossed == []
    _, crossed = await reply(store, Usage(100, 100))  # 1040: the whole budget
    assert [(c.scope, c.level) for c in crossed] == [("month", 1.0)]
    assert crossed[0].resets_at == resets_at("month") and crossed[0].resets_at > time.time()
    over = await ledger.budget_exhausted(WS, "someone-else", "guest")  # the whole workspace is over
    assert over is not None and (over.scope, over.used, over.limit) == ("month", 1040, 1000)
    assert await ledger.budget_exhausted(OTHER, "U-asker", "member") is None
    trail = await actions(store)
    assert trail.count("budget.warning") == 1 and trail.count("budget.exhausted") == 1
    await ledger.set_token_budget(WS, ADMIN, "month", 5000)  # raised: answering again
    assert await ledger.budget_exhausted(WS, "U-asker", "member") is None


async def test_a_daily_budget_is_per_user_by_role(stores: tuple[Store, UsageLedger]) -> None:
    store, ledger = stores
    await ledger.set_token_budget(WS, ADMIN, "member", 100)
    _, crossed = await reply(store, Usage(90, 20))  # both thresholds at once
    assert [(c.scope, c.level, c.user_id) for c in crossed] == [("day", WARN_AT, "U-asker"), ("day", 1.0, "U-asker")]
    over = await ledger.budget_exhausted(WS, "U-asker", "member")
    assert over is not None and over.scope == "day" and over.resets_at == resets_at("day")
    assert await ledger.budget_exhausted(WS, "U-other", "member") is None  # another member's day
    assert await ledger.budget_exhausted(WS, "U-asker", "curator") is None  # no curator budget
