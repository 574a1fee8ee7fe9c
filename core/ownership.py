"""Who streams which reply, across processes: heartbeats for this process's live replies, and a
periodic sweep that takes over replies whose owner stopped heartbeating and finishes them.

Every `heartbeat_s` one store write says "still streaming these" for all of this process's live
replies (the flat cost of 1,000 live replies is one write, not 1,000). A process that dies stops
heartbeating; after `stale_s` its replies are stale, and the next sweep of any live process serving
that platform wins them (one winner per reply: the store decides) and finishes each on the platform
with the text so far and an "interrupted" marker, then marks it failed (`OrphanFinisher`: the
fault-handling path, core.recovery). With the defaults (3 s, 10 s, sweeps every 5 s) a dead owner's
replies are taken within about 15 s and finished soon after, well inside 30 s.

A process that was only paused (not dead) learns at its next heartbeat that it lost a reply: the
reply moves from the finisher's `live` set to its `lost` set, and the pipeline leaves it alone (no
final edit, no store write), so no reply is finished twice.

The heartbeat also says which of its replies a Stop was clicked for on another process
(core.stores.stops); `on_stop` stops them here as a local Stop does. So a Stop from another process
takes effect within one heartbeat interval. A Stop for a reply whose owner died is heard by the
process that takes the reply over (its first heartbeat of the taken replies), which then ends it as
stopped rather than interrupted. The process the Stop was clicked on sweeps at once (`sweep_soon`):
if the owner's heartbeat is stale already, that process takes the reply over and stops it now, not
at the next periodic sweep (the store still gives each reply to one taker only).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import structlog

from core.messages import WorkspaceRef
from core.periodic import Periodic
from core.stores.leases import StreamLeases, TakenReply

log = structlog.get_logger(__name__)


class OrphanFinisher(Protocol):
    live: dict[str, str]  # the replies this process streams now -> their workspace keys
    lost: set[str]  # the replies another process took over from this one

    @property
    def platforms(self) -> Mapping[str, object]:
        """The platforms whose replies this process can finish."""
        ...

    async def finish_orphan(
        self, reply_id: str, ws: WorkspaceRef, *, streaming: bool = True, stopped: bool = False
    ) -> bool:
        """Finish a reply nobody streams any more, on its platform and in the store (as stopped if
        `stopped`, else interrupted); True if it did."""
        ...


class ReplyOwnership:
    def __init__(
        self,
        leases: StreamLeases,
        finisher: OrphanFinisher,
        *,
        owner: str | None = None,
        heartbeat_s: float = 3.0,
        stale_s: float = 10.0,
        sweep_s: float = 5.0,
        on_stop: Callable[[Iterable[str]], object] | None = None,
    ) -> None:
        self.leases = leases
        self.finisher = finisher
        self.on_stop = on_stop  # stops live replies a Stop was recorded for elsewhere
        self.owner = owner or f"proc-{uuid.uuid4().hex[:12]}"
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.sweep_s = sweep_s
        self._taking: dict[str, str] = {}  # replies this process took over and is finishing -> workspaces
        self._loops = Periodic("ownership.step_failed")
        self._soon: asyncio.Task[None] | None = None  # a sweep asked for now (sweep_soon)
        self.taken_over = 0
        self.finished = 0

    async def heartbeat(self) -> Sequence[str]:
        """Keep owning the live replies; returns those another process took over (now in `lost`)."""
        live = self.finisher.live
        replies = self._taking | live
        if not replies:
            return []
        beat = await self.leases.heartbeat(self.owner, replies)
        lost = [r for r in beat.lost if r in live]
        if lost:
            self.finisher.lost.update(lost)
            for reply in lost:
                live.pop(reply, None)
            log.warning("ownership.replies_lost", owner=self.owner, replies=lost)
        stop = [r for r in beat.stop if r in live]  # not the ones taken over: those end as interrupted
        if stop and self.on_stop is not None:
            self.on_stop(stop)
        return lost

    async def sweep(self) -> int:
        """Take over stale replies of the platforms served here and finish them; how many were finished."""
        platforms = sorted(self.finisher.platforms)
        if not platforms:
            return 0  # no adapter registered yet: nothing here could finish a reply on its platform
        taken = await self.leases.take_over(self.owner, self.stale_s, platforms=platforms)
        # All heartbeated from now on (not only the one being finished), or a slow finish lets the others
        # go stale and another process takes them too; finished side by side, each waits its own budget.
        self._taking.update((reply.reply_id, reply.workspace) for reply in taken)
        self.taken_over += len(taken)
        if not taken:
            return 0
        log.warning("ownership.taken_over", owner=self.owner, taken=len(taken))
        stop = await self._stops_asked(taken)
        done = sum(await asyncio.gather(*(self._finish(reply, reply.reply_id in stop) for reply in taken)))
        log.warning("ownership.finished", owner=self.owner, taken=len(taken), finished=done)
        self.finished += done
        return done

    async def _stops_asked(self, taken: Sequence[TakenReply]) -> set[str]:
        """Which taken replies someone asked to stop: the heartbeat that now names them says so."""
        try:
            beat = await self.leases.heartbeat(self.owner, {reply.reply_id: reply.workspace for reply in taken})
        except Exception as exc:  # not known: they end as interrupted, as before Stops reached the store
            log.warning("ownership.stops_unknown", owner=self.owner, error=repr(exc))
            return set()
        return set(beat.stop)

    async def _finish(self, reply: TakenReply, stopped: bool = False) -> bool:
        try:
            ws = WorkspaceRef.from_key(reply.workspace)
            finished = await self.finisher.finish_orphan(reply.reply_id, ws, stopped=stopped)
            await self.leases.release(self.owner, reply.workspace, reply.reply_id)
            return finished
        except Exception as exc:  # kept: another sweep takes it again once it is stale
            log.warning("ownership.finish_failed", reply=reply.reply_id, error=repr(exc))
            return False
        finally:
            self._taking.pop(reply.reply_id, None)

    def sweep_soon(self) -> None:
        """Sweep now, beside the periodic sweeps (once at a time): a Stop was asked for a reply streamed
        elsewhere, whose owner may be dead already."""
        if self._soon is None or self._soon.done():
            self._soon = asyncio.create_task(self._sweep_now(), name="reply-takeover-now")

    async def _sweep_now(self) -> None:
        try:
            await self.sweep()
        except Exception as exc:  # the periodic sweep tries again
            log.warning("ownership.step_failed", error=repr(exc))

    def start(self) -> None:
        self._loops.start(
            ("reply-heartbeat", self.heartbeat_s, self.heartbeat), ("reply-takeover", self.sweep_s, self.sweep)
        )

    async def stop(self) -> None:
        await self._loops.stop()
        if self._soon is not None:
            self._soon.cancel()
            await asyncio.gather(self._soon, return_exceptions=True)
            self._soon = None
