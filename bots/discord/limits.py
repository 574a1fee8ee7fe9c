"""Every Discord rate limit the bot spends from: the platform's number and the bucket kept inside it.

The adapter takes its scopes from here, the loopback Discord (tests/fakes/discord.py) enforces the
`limit` per `window_s`, and bench/streaming.py prints calls against the same numbers. A bucket of
rate r and burst b grants at most floor(b + r*W) requests in a window W; tests/unit/test_budget_tables.py
proves that stays within every limit.

- Messages: POST and PATCH of /channels/{id}/messages share one bucket per channel, 5 per 5 s
  (the X-RateLimit-* headers Discord sends on those routes). One of the five is held for finals (a
  reply's last text, a Stop, an error): interim edits use at most four of every window, spaced
  evenly, so a final goes out at once instead of waiting for the channel's next turn.
- Global: 50 requests per second per bot over every route, typing and thread creation included.
  Interaction responses are exempt (Discord's docs), so slash-command answers spend nothing here.
- Typing and thread creation have their own per-channel route buckets; Discord publishes no number,
  so they get the message route's (they are one call per reply at most).
"""

from __future__ import annotations

from core.pacing import Budget
from core.surface import RateScope

# Interim writes of one channel: four per window, evenly spaced (1 + 1 reserved + 5/1.26 = 5.97
# admitted per 5 s); the window kept by core.pacing spaces them by (5 s + latency) / 4 besides.
_INTERIM_RATE = 1 / 1.26
# Routes without a reserve: a little over a second between calls, 5 span 4.08 s, so a sixth can
# only land 5.1 s after the first, 0.1 s of slack for jitter.
_CHANNEL_RATE = 1 / 1.02

CHANNEL_MESSAGES = Budget(
    5, 5.0, _INTERIM_RATE, 1.0, "POST/PATCH /channels/{id}/messages, per channel; 1 of 5 kept for finals", reserve=1
)
TYPING = Budget(5, 5.0, _CHANNEL_RATE, 1.0, "POST /channels/{id}/typing, per channel (unpublished)")
THREADS = Budget(5, 5.0, _CHANNEL_RATE, 1.0, "POST /channels/{id}/messages/{id}/threads, per channel (unpublished)")
# Reading a channel's history (thread context): a few pages at once, then about one every 1.7 s.
HISTORY = Budget(5, 5.0, 0.6, 2.0, "GET /channels/{id}/messages, per channel")
GLOBAL = Budget(50, 1.0, 44.0, 5.0, "every request of the bot, 50 per second")

TABLE: dict[str, Budget] = {
    "channel.messages": CHANNEL_MESSAGES,
    "channel.typing": TYPING,
    "channel.threads": THREADS,
    "channel.history": HISTORY,
    "global": GLOBAL,
}

GLOBAL_SCOPE = GLOBAL.scope("discord:global")


def message_scopes(channel_id: int | str) -> tuple[RateScope, RateScope]:
    """A message create or edit in a channel (a thread is a channel with buckets of its own)."""
    return (CHANNEL_MESSAGES.scope(f"discord:channel:{channel_id}"), GLOBAL_SCOPE)


def typing_scopes(channel_id: int | str) -> tuple[RateScope, RateScope]:
    return (TYPING.scope(f"discord:typing:{channel_id}"), GLOBAL_SCOPE)


def thread_scopes(channel_id: int | str) -> tuple[RateScope, RateScope]:
    return (THREADS.scope(f"discord:threads:{channel_id}"), GLOBAL_SCOPE)


def history_scopes(channel_id: int | str) -> tuple[RateScope, RateScope]:
    return (HISTORY.scope(f"discord:channel:{channel_id}:history"), GLOBAL_SCOPE)


def replies_served_smoothly(*, interval_s: float = 1.5) -> int:
    """How many replies one channel's message bucket can edit each every `interval_s` (a busy-channel
    threshold): more than this in flight and each reply's text goes stale for longer."""
    return max(1, int(CHANNEL_MESSAGES.per_second * interval_s))
