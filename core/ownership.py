"""Who streams which reply, across processes: heartbeats for this process's live replies, and a
periodic sweep that takes over replies whose owner stopped heartbeating and finishes them.

Every `heartbeat_s` one store write says "still streaming these" for all of this process's live
replies (the flat cost of 1,000 live replies is one write, not 1,000). A process that dies stops
heartbeating; after `stale_s` its replies are stale, and the next sweep of any live process serving
that platform wins them (one winner per reply: the store decides) and finishes each on the platform
with the text so far and an "interrupted" marker, then marks it failed (`OrphanFinisher`, the
fault-handling path). With the defaults (3 s, 10 s, 3 s) a dead owner's replies are taken within
about 13 s and finished soon after, well inside 30 s.

A process that was only paused (not dead) learns at its next heartbeat that it lost a reply, and
must not finish it itself: `owns(reply_id)` is False from then on, so no reply is finished twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol

import structlog

from core.stores.leases import StreamLeases

log = structlog.get_logger(__name__)


class OrphanFinisher(Protocol):
    async def finish_orphan(self, reply_id: str) -> bool:
        """Finish a reply nobody streams any more, on its platform and in the store; True if it did."""
        ...


class ReplyOwnership:
    def __init__(
        self,
        leases: StreamLeases,
        *,
        platforms: Sequence[str] = (),
        owner: str | None = None,
        heartbeat_s: float = 3.0,
        stale_s: float = 10.0,
        sweep_s: float = 3.0,
    ) -> None:
        self.leases = leases
        self.platforms = tuple(platforms)
        self.owner = owner or f"proc-{uuid.uuid4().hex[:12]}"
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.sweep_s = sweep_s
        self.finisher: OrphanFinisher | None = None
        self.live: set[str] = set()  # replies this process streams now
        self.lost: set[str] = set()  # replies another process took over from this one
        self._taking: set[str] = set()  # replies this process took over and is finishing
        self._tasks: list[asyncio.Task[None]] = []
        self.taken_over = 0
        self.finished = 0

    # -- the live replies ---------------------------------------------------------------------------
    def started(self, reply_id: str) -> None:
        self.live.add(reply_id)

    def ended(self, reply_id: str) -> None:
        self.live.discard(reply_id)

    def owns(self, reply_id: str) -> bool:
        """False once another process took the reply over: this one must leave it alone."""
        return reply_id not in self.lost

    async def release(self, reply_id: str) -> None:
        self.live.discard(reply_id)
        try:
            await self.leases.release(self.owner, reply_id)
        except Exception as exc:  # the lease goes stale; the sweep finds the reply finished and drops it
            log.warning("ownership.release_failed", reply=reply_id, error=repr(exc))

    # -- heartbeats and sweeps ----------------------------------------------------------------------
    async def heartbeat(self) -> Sequence[str]:
        replies = sorted(self.live | self._taking)
        if not replies:
            return []
        lost = [r for r in await self.leases.heartbeat(self.owner, replies) if r in self.live]
        if lost:
            self.lost.update(lost)
            self.live.difference_update(lost)
            log.warning("ownership.replies_lost", owner=self.owner, replies=lost)
        return lost

    async def sweep(self) -> int:
        """Take over stale replies of the platforms served here and finish them; how many were finished."""
        if self.finisher is None:
            return 0
        taken = await self.leases.take_over(self.owner, self.stale_s, platforms=self.platforms)
        done = 0
        for reply_id in taken:
            self.taken_over += 1
            self._taking.add(reply_id)
            try:
                if await self.finisher.finish_orphan(reply_id):
                    done += 1
                    await self.leases.release(self.owner, reply_id)
            except Exception as exc:  # not released: another sweep takes it again once it is stale
                log.warning("ownership.finish_failed", reply=reply_id, error=repr(exc))
            finally:
                self._taking.discard(reply_id)
        if taken:
            log.warning("ownership.taken_over", owner=self.owner, taken=len(taken), finished=done)
        self.finished += done
        return done

    def start(self, finisher: OrphanFinisher) -> None:
        self.finisher = finisher
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._every(self.heartbeat_s, self.heartbeat), name="reply-heartbeat"),
                asyncio.create_task(self._every(self.sweep_s, self.sweep), name="reply-takeover"),
            ]

    async def _every(self, interval: float, step: _Step) -> None:
        while True:
            try:
                await step()
            except Exception as exc:  # the store is down: try again next time
                log.warning("ownership.step_failed", step=getattr(step, "__name__", "?"), error=repr(exc))
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


class _Step(Protocol):
    async def __call__(self) -> Iterable[str] | int: ...
