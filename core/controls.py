"""Stop, Regenerate and 👍/👎: the replies that can still be stopped, who may click, what a click needs.

A reply's buttons carry its `ref` (`reply_ref` of the question's event key). Clicks are authorized
like questions are answered for: the person who asked, or a curator or above. Each click is claimed
once (platforms redeliver interactions too), so a double click or a retried delivery stops or
regenerates once. A reply is stoppable while its stream runs in this process; Stop cancels the task
that streams it, which ends the model stream and finishes the reply marked as stopped.

When a reply ends, what its buttons need (who asked, the question, the answer, its sources and model,
how it ended) is kept in the store (core.stores.controls), so Regenerate and feedback work after a
restart too; a Stop on a reply that no longer streams (say, one a restart interrupted) says so.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal, Protocol, cast

import structlog

from core.messages import Actor, IncomingMessage, ReplyStatus, WorkspaceRef, decode_message, encode_message
from core.roles import Role
from core.stores.controls import ReplyControl, ReplyControlsStore, ReplyEnd
from core.stores.feedback import Feedback, FeedbackStore, Rating

log = structlog.get_logger(__name__)

STOP = "stop"
REGENERATE = "regenerate"
ControlResult = Literal["done", "duplicate", "not_allowed", "gone", "ended"]


def reply_ref(event_key: str) -> str:
    """The short, stable reference a reply's buttons carry (Discord custom ids hold 100 characters)."""
    return hashlib.blake2b(event_key.encode(), digest_size=12).hexdigest()


class RoleOf(Protocol):
    async def role_of(self, ws: WorkspaceRef, actor: Actor) -> Role | None: ...


class Claims(Protocol):
    async def claim_event(self, key: str) -> bool: ...


@dataclass
class _Running:
    task: asyncio.Task[object]
    asker_id: str
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class Regeneration:
    result: ControlResult
    question: IncomingMessage | None = None  # the question to answer again, under a new message id


class ReplyControls:
    def __init__(
        self,
        roles: RoleOf,
        claims: Claims,
        *,
        feedback: FeedbackStore | None = None,
        kept: ReplyControlsStore | None = None,
    ) -> None:
        self.roles = roles
        self.claims = claims
        self.feedback = feedback
        self.kept = kept
        self._running: dict[str, _Running] = {}  # ref -> the task streaming its reply

    @contextmanager
    def streaming(self, message: IncomingMessage) -> Iterator[None]:
        """While the reply to `message` streams (in the current task), Stop can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        ref = reply_ref(message.event_key)
        self._running[ref] = _Running(task, message.author.user_id)
        try:
            yield
        finally:
            self._running.pop(ref, None)

    async def ended(
        self, message: IncomingMessage, status: ReplyStatus, answer: str, sources: tuple[str, ...], model: str
    ) -> None:
        """Keep what the finished reply's buttons need (Regenerate, 👍/👎), beyond this process's life."""
        if self.kept is None:
            return
        context = encode_message(replace(message, text=""))
        state = cast(ReplyEnd, status.value)  # an ended reply: complete, failed or cancelled
        control = ReplyControl(
            reply_ref(message.event_key), message.author.user_id, message.text, context, state, answer, sources, model
        )
        await self.kept.put_control(message.workspace, control)

    async def _kept(self, ws: WorkspaceRef, ref: str) -> ReplyControl | None:
        if self.kept is None or not ref:
            return None
        return await self.kept.control(ws, ref)

    async def rate(self, ws: WorkspaceRef, actor: Actor, ref: str, rating: Rating, reason: str = "") -> ControlResult:
        """Keep a 👍/👎 with the question, the answer, its sources and the model."""
        kept = await self._kept(ws, ref)
        if self.feedback is None or kept is None:
            return "gone"
        feedback = Feedback(
            ref, actor.user_id, rating, kept.question, kept.answer, kept.sources, kept.model, reason[:2000]
        )
        await self.feedback.add_feedback(ws, feedback)
        return "done"

    async def may_control(self, ws: WorkspaceRef, actor: Actor, asker_id: str) -> bool:
        if actor.user_id == asker_id:
            return True
        role = await self.roles.role_of(ws, actor)
        return role is not None and role >= Role.CURATOR

    async def stop(self, ws: WorkspaceRef, actor: Actor, ref: str, click_id: str) -> ControlResult:
        running = self._running.get(ref)
        if running is None:  # it ended (perhaps before a restart: the button may still say Stop)
            return "ended"
        if not await self.may_control(ws, actor, running.asker_id):
            return "not_allowed"
        if not await self.claims.claim_event(f"{ws.key}:{STOP}:{click_id}"):
            return "duplicate"
        if running.stopped:
            # A second click (another interaction id) must not cancel again: that would interrupt
            # the final edit of the stopped reply, which runs shielded in the cancelled task.
            return "duplicate"
        running.stopped = True
        running.task.cancel()
        return "done"

    async def regenerate(self, ws: WorkspaceRef, actor: Actor, ref: str, click_id: str) -> Regeneration:
        """Whether this click may answer reply `ref` again (claimed: a second delivery is a duplicate),
        and the question to answer, under a message id of its own (its own claim, its own reply ref)."""
        if ref in self._running:
            return Regeneration("duplicate")  # still answering
        kept = await self._kept(ws, ref)
        if kept is None:
            return Regeneration("gone")
        if not await self.may_control(ws, actor, kept.asker):
            return Regeneration("not_allowed")
        if not await self.claims.claim_event(f"{ws.key}:{REGENERATE}:{click_id}"):
            return Regeneration("duplicate")
        question = replace(decode_message(kept.context), text=kept.question)
        return Regeneration("done", replace(question, message_id=f"{asked_message_id(question)}~{click_id}"))


def asked_message_id(question: IncomingMessage) -> str:
    """The platform id of the message a (perhaps regenerated) question was asked in."""
    return question.message_id.split("~", 1)[0]


REFUSALS: dict[ControlResult, str] = {
    "not_allowed": "Only the person who asked, or a curator or admin, can do that.",
    "gone": "That reply can't be changed any more.",
    "ended": "That reply is no longer streaming, so there is nothing to stop.",
    "duplicate": "",
    "done": "",
}
