"""The feedback port: 👍/👎 on a reply, with what it answered, kept for curators to review.

Anyone who can see a reply may rate it (one rating per person per reply, the latest wins); reading
the ratings needs manage_knowledge (curators and above), checked inside the store's own read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.messages import Actor, WorkspaceRef

Rating = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Feedback:
    reply_key: str  # the question's event key: which reply was rated
    user_id: str
    rating: Rating
    question: str
    answer: str
    sources: tuple[str, ...] = ()  # the cited sources' URIs
    model: str = ""
    reason: str = ""
    at: float = 0.0


class FeedbackStore(Protocol):
    async def add_feedback(self, ws: WorkspaceRef, feedback: Feedback) -> None:
        """Record (or replace) this person's rating of this reply."""
        ...

    async def recent_feedback(
        self, ws: WorkspaceRef, actor: Actor, *, rating: Rating = "down", limit: int = 10, before: float | None = None
    ) -> Sequence[Feedback]:
        """Newest first, older than `before` when given; needs manage_knowledge."""
        ...
