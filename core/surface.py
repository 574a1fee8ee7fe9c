"""The Surface port: where one reply appears on a platform (a channel, a thread, a terminal).

Adapters implement it; the streaming engine drives it. A surface knows its platform's
format and length limit and names the rate-limit scopes each call spends from; it knows
nothing of pacing, which lives in `core.pacing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from core.messages import Source

Operation = Literal["post", "edit"]

# What the engine posts before the first words arrive; surfaces may show it their own way.
PLACEHOLDER = "…"


@dataclass(frozen=True, slots=True)
class RateScope:
    """A platform rate-limit bucket: e.g. ("slack:T1:chat.update", 50/60 per second, burst 3)."""

    key: str
    per_second: float
    burst: float = 1.0
    window_s: float = 0.0  # the platform's window the bucket is sized for (0: not stated)
    limit: int = 0  # what the platform counts in one window: no more may be in it (0: not stated)
    # Of those, how many only a final request may use (a reply's last text, a Stop): interim edits
    # leave them free, so a final goes out at once instead of behind the next interim's turn.
    reserve: int = 0


class RateLimited(Exception):
    """The platform answered 429; the scheduler waits `retry_after` and slows the scope down."""

    def __init__(self, retry_after: float, scope_key: str | None = None) -> None:
        super().__init__(f"rate limited for {retry_after:.2f}s ({scope_key or 'unknown scope'})")
        self.retry_after = retry_after
        self.scope_key = scope_key


class Surface(Protocol):
    max_chars: int  # the most Markdown text one platform message holds (sources excluded)

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        """The rate-limit scopes one call of `operation` spends from, narrowest first."""
        ...

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        """Post a new message in the reply's place; returns its platform message id."""
        ...

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        """Replace the message's whole text (Markdown; the surface converts it)."""
        ...

    async def thinking(self) -> None:
        """Show that an answer is coming (typing indicator, assistant status); best effort."""
        ...

    async def notice(self, text: str) -> None:
        """A short message for the author only (ephemeral where the platform has it)."""
        ...


@runtime_checkable
class Placed(Protocol):
    """A surface that can say where its reply is, so another run can find it again.

    `place()` is plain JSON data in the adapter's own terms (channel, thread, the ids of the
    messages posted so far, which of them are open native streams): the adapter's `ReplyPlatform`
    (core.recovery) reopens a surface from it for a kept question, or finishes an interrupted reply.
    """

    def place(self) -> dict[str, Any]: ...


@runtime_checkable
class Finishing(Protocol):
    """A surface whose reply controls change when it is done (Stop becomes Regenerate).

    The engine calls `finishing()` just before it lands the final text, so the surface can change
    the controls in that same request instead of a second one behind it in the channel's budget.
    """

    def finishing(self) -> None: ...
