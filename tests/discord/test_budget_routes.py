"""Which Discord budget each REST route spends from (bots/discord/budget.py)."""

from __future__ import annotations

from bots.discord import limits
from bots.discord.budget import retry_after, scopes_of


def test_routes_map_to_the_budgets_of_the_limits_table() -> None:
    assert scopes_of("POST", "/api/v10/channels/42/messages") == limits.message_scopes("42")
    assert scopes_of("PATCH", "/api/v10/channels/42/messages/7") == limits.message_scopes("42")
    assert scopes_of("POST", "/api/v10/channels/42/typing") == limits.typing_scopes("42")
    assert scopes_of("POST", "/api/v10/channels/42/messages/7/threads") == limits.thread_scopes("42")
    assert scopes_of("GET", "/api/v10/channels/42/messages") == limits.history_scopes("42")
    assert scopes_of("GET", "/api/v10/users/@me") == (limits.GLOBAL_SCOPE,)
    assert scopes_of("POST", "/api/v10/interactions/1/tok/callback") == ()  # exempt from the global limit


def test_retry_after_prefers_the_precise_reset_header() -> None:
    assert retry_after({"X-RateLimit-Reset-After": "0.250", "Retry-After": "1"}) == 0.25
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({}) == 1.0
