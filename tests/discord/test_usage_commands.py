"""`/chatbot usage` and `/chatbot budget` as Discord app commands: through the one admin layer, for admins only."""

from __future__ import annotations

from tests.discord.test_discord import MEMBER, MOD, Harness, followup, harness, interaction  # noqa: F401  (the fixture)
from tests.fakes.discord import MOD_ROLE_ID


def command(name: str, **options: object) -> tuple[list[dict[str, object]], dict[str, object]]:
    kinds = {int: 4, str: 3}
    values = [{"name": k, "type": kinds[type(v)], "value": v} for k, v in options.items()]
    return [{"name": name, "type": 1, "options": values}], {}


async def run(h: Harness, user: str, name: str, **options: object) -> str:
    before = len(h.fake.calls_to("POST", "/webhooks/"))
    roles = (MOD_ROLE_ID,) if user == MOD else ()
    await h.fake.dispatch("INTERACTION_CREATE", interaction(user, roles, *command(name, **options)))
    return await followup(h, before)


async def test_admins_set_budgets_and_read_usage_and_members_may_not(harness: Harness) -> None:  # noqa: F811
    assert "2,000,000 tokens" in await run(harness, MOD, "budget", scope="month", tokens="2m")
    assert "each member is now 50,000 tokens" in await run(
        harness, MOD, "budget", scope="day", role="member", tokens="50k"
    )
    overview = await run(harness, MOD, "budget")
    assert "0 of 2,000,000 tokens this month" in overview and "member: 50,000" in overview
    assert "No tokens used since" in await run(harness, MOD, "usage", days=7)
    assert (await run(harness, MEMBER, "usage")).startswith("Not allowed")
    assert (await run(harness, MEMBER, "budget", scope="month", tokens="none")).startswith("Not allowed")
