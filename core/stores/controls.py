"""The reply-controls port: what a click on a reply's buttons needs, kept beyond this process's life.

A reply's buttons carry its `ref` (a short digest of the question's event key: Discord custom ids
hold 100 characters). When a reply ends, the pipeline keeps, under that ref: who asked (they, or a
curator and above, may regenerate), the question (to answer it again, and with the answer, sources
and model, to file a 👍/👎 with its context), and how the reply ended. So Regenerate and feedback
work after a restart, and a Stop on a reply that no longer streams gets a clear answer. Every call
names its workspace; a ref is found only in the workspace it was kept in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from core.messages import WorkspaceRef

ReplyEnd = Literal["complete", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class ReplyControl:
    ref: str
    asker: str  # the user id of who asked
    question: str  # the question's text
    context: str  # the rest of the question as JSON (core.messages.encode_message without its text)
    state: ReplyEnd  # how the reply ended
    answer: str = ""
    sources: tuple[str, ...] = ()  # the cited sources' URIs
    model: str = ""
    updated_at: float = 0.0


class ReplyControlsStore(Protocol):
    async def put_control(self, ws: WorkspaceRef, control: ReplyControl) -> None:
        """Keep (or replace) what the buttons of reply `control.ref` need."""
        ...

    async def control(self, ws: WorkspaceRef, ref: str) -> ReplyControl | None:
        """What was kept for `ref` in this workspace, if anything."""
        ...
