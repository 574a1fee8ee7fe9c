"""Usage and budgets end to end through the real Slack adapter: `/chatbot usage` shows who used what,
an admin sets the workspace's monthly budget, the answer that uses it up tells the admins once, and the
next question gets the polite refusal saying when it resets."""

from __future__ import annotations

import time

from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from core.stores.usage import periods, resets_at, tokens_of
from core.usage_report import when
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import TEAM_ID
from tests.slack.conftest import Harness
from tests.slack.test_conversations import answered, mention
from tests.slack.test_persona import command

WS = WorkspaceRef(Platform.SLACK, TEAM_ID)
ADMIN = Actor("UADMIN", PlatformFacts(is_admin=True))


async def test_a_workspace_over_its_budget_gets_the_refusal_and_the_admins_the_notice(
    fast_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = fast_harness
    h.slack.add_user("UADMIN", name="admin", is_admin=True)
    first = mention("how do refunds work?")
    await answered(h, first)

    report = await command(h, "usage")
    assert "<@U1>" in report and "<#C1>" in report and periods()[1] in report and "$" in report
    assert "Not allowed" in await command(h, "usage", user="UMEMBER")
    used = sum(tokens_of(r.usage) for r in await h.bot.core.usage.usage_rows(WS, ADMIN, periods()[1]))
    assert used > 0 and f"{used:,} tokens" in report

    # One more answer of the same size uses the whole budget: the admins are told, in the thread.
    assert "now 1" in await command(h, f"budget month {used + 1}")
    second = mention("and for annual plans?")
    await answered(h, second)
    shown = [h.slack.shown_text(m) for m in h.slack.replies_in("C1", second["ts"])]
    notices = [t for t in shown if "Heads-up for admins" in t]
    assert len(notices) == 1 and "whole monthly token budget" in notices[0]
    assert when(resets_at("month")) in notices[0]

    # Over budget: a polite refusal with the reset moment, and no call to the model.
    asked = len(fake_anthropic.requests)
    await answered(h, mention("what about discounts?"))
    assert len(fake_anthropic.requests) == asked
    refusal = h.slack.ephemerals[-1]["text"]
    assert "used its token budget for this month" in refusal
    assert when(resets_at("month")) in refusal and resets_at("month") > time.time()

    # Announced once: another admin-visible trail in the audit log, and the overview says so.
    audit = await command(h, "audit 50")
    assert audit.count("budget.exhausted") == 1 and audit.count("budget.warning") == 1
    assert "refused" in audit
    assert "Used up" in await command(h, "budget")

    # Raised again: answered again, and nothing is announced twice.
    await command(h, "budget month 10m")
    third = mention("and for monthly plans?")
    await answered(h, third)
    shown = [h.slack.shown_text(m) for m in h.slack.replies_in("C1", third["ts"])]
    assert shown and not any("Heads-up" in t for t in shown)
