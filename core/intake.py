"""Answers the questions kept in the outbox once the store is reachable again (also after a restart).

Each kept question is answered on a surface its platform adapter reopens from the stored place (a
fresh one: the surface of the first attempt was closed when that attempt ended), and that surface is
closed afterwards, so every stream the retry starts is stopped. A question leaves the outbox once it
has been answered, refused, or found answered by someone else (the claim); while the store is still
unreachable it stays, and the next round tries again.
"""

from __future__ import annotations

import asyncio

import structlog

from core.outbox import Outbox
from core.pipeline import Pipeline
from core.recovery import ReplyPlatform

log = structlog.get_logger(__name__)


class KeptQuestions:
    def __init__(
        self, outbox: Outbox, pipeline: Pipeline, platforms: dict[str, ReplyPlatform], *, retry_s: float = 5.0
    ) -> None:
        self.outbox = outbox
        self.pipeline = pipeline
        self.platforms = platforms  # shared with core.recovery: the adapters registered in this process
        self.retry_s = retry_s
        self.answered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        pipeline.on_kept = self._wake.set

    async def replay_once(self) -> int:
        """One round over the kept questions this process can answer; the number that left the outbox."""
        finished = 0
        for kept in await self.outbox.pending():
            platform = self.platforms.get(kept.message.workspace.platform.value)
            if platform is None:
                continue  # another adapter's question: its process answers it
            key = kept.message.event_key
            reopened = platform.reopen(kept.place)
            try:
                outcome = await self.pipeline.resume(
                    kept.message, reopened.surface, reopened.scheduler, claimed=kept.claimed
                )
            finally:
                await reopened.close()
            if outcome.status == "queued":
                return finished  # the store is still unreachable: the next round tries again
            await self.outbox.done(key)
            finished += 1
            self.answered += outcome.status == "answered"
            log.info("intake.kept_question_done", key=key, status=outcome.status, reason=outcome.reason)
        return finished

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="outbox-replay")

    async def _loop(self) -> None:
        while True:
            try:
                await self.replay_once()
            except Exception as exc:
                log.warning("intake.replay_failed", error=repr(exc))
            try:
                await asyncio.wait_for(self._wake.wait(), self.retry_s)
                await asyncio.sleep(self.retry_s)  # a question was just kept: the store only just failed
            except TimeoutError:
                pass
            self._wake.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
