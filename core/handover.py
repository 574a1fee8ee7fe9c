"""Questions a process claimed but has not answered on the platform yet, handed to a live process if it dies.

Every claim of an event is held in the store (core.stores.questions) with the question and where to
answer it, from the claim until the answer's first post is stored as the reply's place (that write
ends the hold, core.recovery) or the question is settled otherwise (refused, ignored, a notice).
This process heartbeats its holds every `heartbeat_s` (one write for all, only while it holds any).
A process that dies holding questions has shown nothing of their answers: after `stale_s` the next
sweep of a live process serving that platform takes them over (one winner each: the store decides)
and answers each itself, on a surface its adapter reopens at the question's place. The dead owner's
half-made reply (created in the store, never posted) is left to the reply sweep, which marks it
failed; the new answer is a reply of its own. From the first post on, a dead owner's reply is
finished with the "interrupted" marker instead (core.ownership), so no answer is shown twice.

A process that was only paused learns at its next heartbeat that a question was taken over, like a
reply (core.ownership); a hold it still has is recognised as its own again (a retried claim).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from core.messages import IncomingMessage, decode_message, encode_message
from core.periodic import Periodic
from core.recovery import ReplyPlatform
from core.stores.questions import HeldQuestion, QuestionHolds

if TYPE_CHECKING:
    from core.pipeline import Pipeline

log = structlog.get_logger(__name__)


class QuestionHandover:
    """The pipeline's claims (it calls `claim` and `settled`), their heartbeats, and the take-over sweep."""

    def __init__(
        self,
        holds: QuestionHolds,
        pipeline: Pipeline,
        platforms: Mapping[str, ReplyPlatform],
        *,
        owner: str,
        heartbeat_s: float = 3.0,
        stale_s: float = 10.0,
        sweep_s: float = 5.0,
    ) -> None:
        self.holds = holds
        self.pipeline = pipeline
        self.platforms = platforms  # shared with core.recovery: the adapters registered in this process
        self.owner = owner  # the same owner as this process's replies (core.ownership)
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.sweep_s = sweep_s
        self._claimant = f"{owner}-taken"  # this process's answer to a question it took over
        self.held: dict[str, tuple[str, str]] = {}  # event key -> (workspace key, claimant), held here
        self.taken_over = 0
        self.resumed = 0  # taken-over questions answered here
        self._loops = Periodic("handover.step_failed")
        pipeline.questions = self

    def serves(self, message: IncomingMessage) -> bool:
        """Only a question this process's adapter could reopen elsewhere is worth holding."""
        return message.workspace.platform.value in self.platforms

    async def claim(self, message: IncomingMessage, place: dict[str, Any], claimant: str) -> bool:
        """Claim the question's event and hold it (True: it is this attempt's to answer)."""
        key = message.event_key
        question = HeldQuestion(key, message.workspace.key, encode_message(message), json.dumps(place))
        won = await self.holds.hold(self.owner, claimant, question)
        if won:
            self.held[key] = (message.workspace.key, claimant)
        return won

    def claimant_of(self, key: str) -> str:
        return self.held.get(key, ("", ""))[1]

    def answered(self, key: str) -> None:
        """The answer's first post was stored as its reply's place, which ended the hold."""
        self.held.pop(key, None)

    async def settled(self, message: IncomingMessage) -> None:
        """The question was handled without a posted answer (or the place write was not the first)."""
        held = self.held.pop(message.event_key, None)
        if held is None:
            return
        try:
            await self.holds.release(self.owner, held[0], message.event_key)
        except Exception as exc:  # a stale hold is taken over and found settled: at worst a second notice
            log.warning("handover.release_failed", key=message.event_key, error=repr(exc))

    async def heartbeat(self) -> None:
        if not self.held:
            return
        # (A hold that ended meanwhile, by its answer's first place, reads as lost too: not counted.)
        named = {key: workspace for key, (workspace, _) in self.held.items()}
        lost = [k for k in await self.holds.heartbeat(self.owner, named) if k in self.held]
        for key in lost:
            self.held.pop(key, None)
        if lost:
            log.warning("handover.questions_lost", owner=self.owner, keys=list(lost))

    async def sweep(self) -> int:
        """Take over the stale questions of the platforms served here and answer them; how many."""
        platforms = sorted(self.platforms)
        if not platforms:
            return 0
        taken = await self.holds.take_over(self.owner, self._claimant, self.stale_s, platforms=platforms)
        if not taken:
            return 0
        for question in taken:
            self.held[question.key] = (question.workspace, self._claimant)  # heartbeated from now on
        self.taken_over += len(taken)
        log.warning("handover.questions_taken_over", owner=self.owner, taken=len(taken))
        answered = await asyncio.gather(*(self._answer(q) for q in taken))
        return sum(answered)

    async def _answer(self, question: HeldQuestion) -> bool:
        try:
            message = decode_message(question.message)
            platform = self.platforms[message.workspace.platform.value]
            reopened = platform.reopen(json.loads(question.place))
            try:
                outcome = await self.pipeline.resume(
                    message, reopened.surface, reopened.scheduler, claimed=True, retake=self._claimant
                )
            finally:
                await reopened.close()
        except Exception as exc:  # still held here: it goes stale and another sweep takes it again
            self.held.pop(question.key, None)
            log.warning("handover.answer_failed", key=question.key, error=repr(exc))
            return False
        self.resumed += outcome.status == "answered"
        log.warning("handover.question_answered", key=question.key, status=outcome.status)
        return True

    def start(self) -> None:
        self._loops.start(
            ("question-heartbeat", self.heartbeat_s, self.heartbeat), ("question-takeover", self.sweep_s, self.sweep)
        )

    async def stop(self) -> None:
        await self._loops.stop()
