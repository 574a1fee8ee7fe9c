"""Stop, Regenerate and 👍/👎: the replies that can still be stopped, who may click, what a click needs.

A reply's buttons carry its `ref` (`reply_ref` of the question's event key). Clicks are authorized
like questions are answered for: the person who asked, or a curator or above. Each click is claimed
once (platforms redeliver interactions too), so a double click or a retried delivery stops or
regenerates once. A reply is stoppable while its stream runs; Stop cancels the task that streams it,
which ends the model stream and finishes the reply marked as stopped. With several processes
(`stops`: core.stores.stops), a Stop landing on a process that does not stream the reply is recorded
in the store, which judges it by the same rule; the streaming process learns of it at its next reply
heartbeat (core.ownership) and calls `stop_streaming`, the same cancel as a local Stop. If that
process is dead, the one taking its reply over ends it as stopped; the clicked process is told
(`on_stopping`) so it can take the reply over at once when the owner's heartbeat is stale already.

When a reply ends, what its buttons need (who asked, the question, the answer, its sources and model,
how it ended) is kept in the store (core.stores.controls), so Regenerate and feedback work after a
restart too; a Stop on a reply that no longer streams (say, one a restart interrupted) says so.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Literal, Protocol, cast

import structlog

from core.messages import Actor, IncomingMessage, ReplyStatus, WorkspaceRef, decode_message, encode_message
from core.roles import Permission, Role, allows
from core.stores.controls import ReplyControl, ReplyControlsStore, ReplyEnd
from core.stores.feedback import Feedback, FeedbackStore, Rating
from core.stores.stops import ReplyStops

log = structlog.get_logger(__name__)

STOP = "stop"
REGENERATE = "regenerate"
# stopping: the reply streams on another process, which was asked to stop it (core.stores.stops).
ControlResult = Literal["done", "duplicate", "not_allowed", "gone", "ended", "stopping"]


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
    reply_id: str
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
        stops: ReplyStops | None = None,
    ) -> None:
        self.roles = roles
        self.claims = claims
        self.feedback = feedback
        self.kept = kept
        self.stops = stops  # with several processes: Stops for replies streamed elsewhere
        self.on_stopping: Callable[[], object] | None = None  # a Stop was recorded for a reply streamed elsewhere
        self._running: dict[str, _Running] = {}  # ref -> the task streaming its reply
        self._noting: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def streaming(self, message: IncomingMessage, reply_id: str) -> AsyncIterator[None]:
        """While reply `reply_id` to `message` streams (in the current task), Stop can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        ref = reply_ref(message.event_key)
        self._running[ref] = _Running(task, message.author.user_id, reply_id)
        if self.stops is not None:  # beside the stream, not before it: the first text is not delayed
            noting = asyncio.create_task(self._note(message.workspace, ref, reply_id, message.author.user_id))
            self._noting.add(noting)
            noting.add_done_callback(self._noting.discard)
        try:
            yield
        finally:
            self._running.pop(ref, None)

    async def _note(self, ws: WorkspaceRef, ref: str, reply_id: str, asker: str) -> None:
        assert self.stops is not None
        try:
            await self.stops.streaming(ws, ref, reply_id, asker)
        except Exception as exc:  # the reply goes on; a Stop from another process then finds it ended
            log.warning("controls.note_streaming_failed", reply=reply_id, error=repr(exc))

    def stop_streaming(self, reply_ids: Iterable[str]) -> int:
        """A Stop was recorded on another process for these replies streaming here: stop each once."""
        wanted = set(reply_ids)
        stopped = 0
        for running in self._running.values():
            if running.reply_id in wanted and not running.stopped:
                running.stopped = True
                running.task.cancel()
                stopped += 1
                log.info("controls.stopped_from_elsewhere", reply=running.reply_id)
        return stopped

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
        """The one rule (the stores apply the same, core/policy/rules.json): the asker, or a role that
        may control others' replies."""
        if actor.user_id == asker_id:
            return True
        return allows(await self.roles.role_of(ws, actor), Permission.CONTROL_OTHERS_REPLIES)

    async def stop(self, ws: WorkspaceRef, actor: Actor, ref: str, click_id: str) -> ControlResult:
        running = self._running.get(ref)
        if running is None:
            # Not streaming here. With several processes, perhaps on another one: the store judges the
            # click and that process stops it; otherwise it ended (perhaps before a restart).
            if self.stops is None:
                return "ended"
            answer = await self.stops.request_stop(ws, actor, ref)
            if answer in ("stopping", "duplicate") and self.on_stopping is not None:
                self.on_stopping()  # a second click too: by now the owner may have gone stale
            return answer
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
    "stopping": "Stopping… that reply is being written by another of the bot's processes; it stops in a few seconds.",
    "duplicate": "",
    "done": "",
}
