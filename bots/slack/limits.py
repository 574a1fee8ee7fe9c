"""Every Slack Web API method the bot calls: Slack's documented limit and the bucket kept inside it.

The adapter takes its scopes from here, the loopback Slack (tests/fakes/slack.py, `enforce_limits`)
enforces `limit` per `window_s` per workspace (per channel where Slack counts per channel), and
bench/streaming.py prints the calls of every method against the same numbers. A bucket of rate r
and burst b grants at most floor(b + r*W) requests in a window W; tests/unit/test_budget_tables.py proves
that no bucket admits more than its window allows.

Slack's tiers (api.slack.com/apis/rate-limits) are per method per workspace: Tier 2 20+/min,
Tier 3 50+/min, Tier 4 100+/min. chat.postMessage is "1 per second per channel, short bursts
allowed"; the streaming methods publish no tier of their own: chat.startStream posts a message (so
it is treated like chat.postMessage), chat.appendStream and chat.stopStream edit one (Tier 3, like
chat.update). Each method has its own bucket: a stream stop does not wait behind a queue of edits.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.pacing import Budget
from core.surface import RateScope


def tier(per_minute: int, *, burst: float = 3.0, margin: int = 1, reserve: int = 0) -> Budget:
    """A per-minute tier, kept `margin` calls under Slack's number in any 60 s window; `reserve` of them
    held for finals (core.pacing), so a reply's last text or a Stop goes out at once."""
    rate = (per_minute - margin - burst - reserve) / 60
    note = f"Tier {per_minute}/min" + (f", {reserve} kept for finals" if reserve else "")
    return Budget(per_minute, 60.0, rate, burst, note, reserve=reserve)


# "1 message per second to a specific channel, with short bursts of more than 1 allowed": read as
# at most 3 in any 3 s, and spaced a little over a second apart, so a late request cannot make a
# burst of it.
PER_CHANNEL_POST = Budget(3, 3.0, 1 / 1.02, 1.0, "about 1 per second per channel, short bursts allowed")


@dataclass(frozen=True, slots=True)
class Method:
    budget: Budget
    per_channel: bool = False  # counted per channel (else per workspace)


METHODS: dict[str, Method] = {
    "chat.postMessage": Method(PER_CHANNEL_POST, per_channel=True),
    "chat.startStream": Method(PER_CHANNEL_POST, per_channel=True),
    # Shared by every reply in the workspace: without a reserve, a Stop's final edit waits for the
    # bucket's next token (up to 1.3 s) while other replies stream.
    "chat.update": Method(tier(50, reserve=1)),
    "chat.appendStream": Method(tier(50)),
    "chat.stopStream": Method(tier(50)),
    "chat.postEphemeral": Method(tier(100)),
    "assistant.threads.setStatus": Method(tier(50)),
    "assistant.threads.setTitle": Method(tier(50)),
    "assistant.threads.setSuggestedPrompts": Method(tier(50)),
    "conversations.replies": Method(tier(50)),
    # Distributed apps outside the Marketplace: 1 request a minute (and 15 messages a page).
    "conversations.replies:unlisted": Method(Budget(1, 60.0, 1 / 61, 1.0, "1 per minute, unlisted apps")),
    "conversations.history": Method(tier(50)),  # /chatbot summarize without a thread
    "conversations.history:unlisted": Method(Budget(1, 60.0, 1 / 61, 1.0, "1 per minute, unlisted apps")),
    # Tier 4: many people asking at once need their facts at once (a burst of 20, then 1.3/s).
    "users.info": Method(tier(100, burst=20.0)),
    "auth.test": Method(tier(100)),
}


def scope(method: str, team_id: str, channel_id: str = "") -> RateScope:
    """The bucket one call of `method` spends from (`channel_id` matters for per-channel methods)."""
    spec = METHODS[method]
    where = f"{team_id}:{channel_id}" if spec.per_channel else team_id
    return spec.budget.scope(f"slack:{where}:{method}")
