"""Stop and Regenerate: the replies that can still be stopped, and who may click.

Clicks are authorized like questions are answered for: the person who asked, or a curator or
above. Each click is claimed once (platforms redeliver interactions too), so a double click or a
retried delivery stops or regenerates once. A reply is stoppable while its stream runs in this
process; Stop cancels the task that streams it, which ends the model stream and finishes the reply
marked as stopped.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from core.messages import Actor, IncomingMessage, WorkspaceRef
from core.roles import Role
from core.stores.feedback import Feedback, FeedbackStore, Rating

STOP = "stop"
REGENERATE = "regenerate"
ControlResult = Literal["done", "duplicate", "not_allowed", "gone"]


class RoleOf(Protocol):
    async def role_of(self, ws: WorkspaceRef, actor: Actor) -> Role | None: ...


class Claims(Protocol):
    async def claim_event(self, key: str) -> bool: ...


@dataclass
class _Running:
    task: asyncio.Task[object]
    asker_id: str
    stopped: bool = False


class ReplyControls:
    def __init__(
        self, roles: RoleOf, claims: Claims, *, feedback: FeedbackStore | None = None, remember: int = 10_000
    ) -> None:
        self.roles = roles
        self.claims = claims
        self.feedback = feedback
        self._answers: OrderedDict[str, tuple[str, tuple[str, ...], str]] = OrderedDict()  # key -> answer
        self.remember = remember
        self._running: dict[str, _Running] = {}  # question key -> the task streaming its reply
        self._asked: OrderedDict[str, IncomingMessage] = OrderedDict()  # question key -> question, to regenerate

    @contextmanager
    def streaming(self, message: IncomingMessage) -> Iterator[None]:
        """While the reply to `message` streams (in the current task), Stop can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._running[message.event_key] = _Running(task, message.author.user_id)
        self._asked[message.event_key] = message
        self._asked.move_to_end(message.event_key)
        while len(self._asked) > self.remember:
            self._asked.popitem(last=False)
        try:
            yield
        finally:
            self._running.pop(message.event_key, None)

    def answered(self, key: str, text: str, sources: tuple[str, ...], model: str) -> None:
        """What the reply to `key` said (for feedback), while this process remembers it."""
        self._answers[key] = (text, sources, model)
        self._answers.move_to_end(key)
        while len(self._answers) > self.remember:
            self._answers.popitem(last=False)

    async def rate(self, ws: WorkspaceRef, actor: Actor, key: str, rating: Rating, reason: str = "") -> ControlResult:
        """Keep a 👍/👎 with the question, the answer, its sources and the model."""
        question, answer = self._asked.get(key), self._answers.get(key)
        if self.feedback is None or question is None or answer is None:
            return "gone"
        text, sources, model = answer
        await self.feedback.add_feedback(
            ws, Feedback(key, actor.user_id, rating, question.text, text, sources, model, reason[:2000])
        )
        return "done"

    def question(self, key: str) -> IncomingMessage | None:
        """The question a reply answered (for Regenerate), while this process remembers it."""
        return self._asked.get(key)

    async def may_control(self, ws: WorkspaceRef, actor: Actor, asker_id: str) -> bool:
        if actor.user_id == asker_id:
            return True
        role = await self.roles.role_of(ws, actor)
        return role is not None and role >= Role.CURATOR

    async def stop(self, ws: WorkspaceRef, actor: Actor, key: str, click_id: str) -> ControlResult:
        running = self._running.get(key)
        if running is None:
            return "gone"
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

    async def may_regenerate(self, ws: WorkspaceRef, actor: Actor, key: str, click_id: str) -> ControlResult:
        """Whether this click may answer `key` again (claimed: a second delivery is a duplicate)."""
        question = self._asked.get(key)
        if question is None:
            return "gone"
        if key in self._running:
            return "duplicate"  # still answering
        if not await self.may_control(ws, actor, question.author.user_id):
            return "not_allowed"
        if not await self.claims.claim_event(f"{ws.key}:{REGENERATE}:{click_id}"):
            return "duplicate"
        return "done"


REFUSALS: dict[ControlResult, str] = {
    "not_allowed": "Only the person who asked, or a curator or admin, can do that.",
    "gone": "That reply can't be changed any more.",
    "duplicate": "",
    "done": "",
}
