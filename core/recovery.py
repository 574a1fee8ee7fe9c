"""Replies that no live process is streaming any more are finished on the platform, then marked failed.

A reply's place (core.stores.places) is stored when it is first posted. When the process streaming
it dies, the reply stays `streaming` in the store and half-shown (or as an open native stream) on
the platform. `Recovery.finish_orphan(reply_id)` is the one path that ends such a reply: the
adapter's `ReplyPlatform` shows the text so far with a visible "interrupted" marker (stopping any
native stream), then the store marks the reply failed with that text and forgets its place. It is
idempotent: a reply no longer streaming is left alone, so it never happens twice for one reply.
A reply someone asked to stop before its owner died (core.stores.stops) ends as a local Stop ends
it instead: the stopped marker (core.streaming.final_text) and the status cancelled.

Who may call it for which reply is ownership: with one process, `sweep()` takes every reply left
`streaming` by an earlier run (not live here and silent for `orphan_after_s`), at start-up and then
every `interval_s`. With several processes, stream leases decide (take over a dead owner's reply,
then call `finish_orphan`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from core.messages import ReplyStatus, Source, WorkspaceRef
from core.pacing import EditScheduler
from core.stores.base import ThreadStore
from core.stores.places import ReplyPlaces
from core.streaming import final_text
from core.surface import Operation, Placed, RateScope, Surface

log = structlog.get_logger(__name__)

INTERRUPTED_MARKER = "\n\n⚠️ _Interrupted: the bot restarted while answering. Please ask again._"


@dataclass(frozen=True, slots=True)
class Reopened:
    """A fresh surface at a stored place, with the budgets it spends from; `close()` ends it
    (stops the streams it started)."""

    surface: Surface
    scheduler: EditScheduler
    close: Callable[[], Awaitable[None]]


class ReplyPlatform(Protocol):
    """An adapter's side of recovery: reopen a reply's place for a kept question, or finish a reply there."""

    def reopen(self, place: dict[str, Any]) -> Reopened: ...

    async def finish_interrupted(self, place: dict[str, Any], text: str) -> None:
        """Show `text` (Markdown: the reply so far and the marker) as the reply's final state at `place`,
        ending any native stream there. Raises if the platform refused (recovery tries again later)."""
        ...


class Recovery:
    """Finds and finishes orphaned replies; `live` holds the replies this process is streaming now."""

    def __init__(
        self,
        store: ThreadStore,
        places: ReplyPlaces | None,
        *,
        orphan_after_s: float = 25.0,
        interval_s: float = 5.0,
    ) -> None:
        self.store = store
        self.places = places
        # Longer than the model's idle limit, so a live reply waiting on a silent model is never taken.
        self.orphan_after_s = orphan_after_s
        self.interval_s = interval_s
        self.platforms: dict[str, ReplyPlatform] = {}
        self.live: dict[str, str] = {}  # reply id -> its workspace key
        # Replies another process took over from this one (core.ownership): the pipeline leaves them alone.
        self.lost: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.finished = 0

    # -- the one reusable path ---------------------------------------------------------------------
    async def finish_orphan(
        self, reply_id: str, ws: WorkspaceRef, *, streaming: bool = True, stopped: bool = False
    ) -> bool:
        """Finish one reply of `ws` nobody streams any more, on its platform and in the store. True if it did.

        Leaves it alone if it is live here, ended already, or belongs to a platform this process does not
        serve. A platform refusal leaves it `streaming` for a later try. `streaming=False` only finishes a
        reply that ended in the store but not on the platform (its place is still kept). `stopped`: a Stop
        was asked for it, so it ends as stopped, not interrupted."""
        if reply_id in self.live:
            return False
        record = await self.places.place(ws.key, reply_id) if self.places is not None else None
        message = await self.store.message(ws, reply_id)
        if message is not None and message.status is ReplyStatus.STREAMING and not streaming:
            return False
        if message is None or message.status not in (ReplyStatus.STREAMING, ReplyStatus.FAILED):
            if record is not None and self.places is not None:
                await self.places.forget_place(ws.key, reply_id)  # it ended normally; the place outlived it
            return False
        if message.status is ReplyStatus.FAILED and record is None:
            return False  # failed and shown as failed: nothing left to do
        # Failed with a place kept: marked in the store only (e.g. by a store-side sweep), not on the platform.
        status = ReplyStatus.CANCELLED if stopped else ReplyStatus.FAILED
        text = message.text
        if message.status is ReplyStatus.STREAMING:
            text = final_text(text, status) if stopped else text + INTERRUPTED_MARKER
        place: dict[str, Any] = json.loads(record.place) if record is not None else {}
        if record is not None:
            platform = self.platforms.get(record.platform)
            if platform is None:
                return False  # another adapter's reply: its process finishes it
            try:
                await platform.finish_interrupted(place, text)
            except Exception as exc:
                log.warning("recovery.platform_finish_failed", reply=reply_id, error=repr(exc))
                return False
        if message.status is ReplyStatus.STREAMING:
            ids = place.get("ids") or [message.platform_message_id]
            await self.store.complete_message(
                ws, reply_id, text=text, status=status, platform_message_id=str(ids[0] or "")
            )
        if record is not None and self.places is not None:
            await self.places.forget_place(ws.key, reply_id)
        self.finished += 1
        log.warning("recovery.reply_finished", reply=reply_id, on_platform=record is not None, stopped=stopped)
        return True

    # -- one process's view of "orphaned" ------------------------------------------------------------
    async def sweep(self, older_than_s: float | None = None) -> int:
        """Finish every reply left `streaming` (or failed only in the store) by an earlier run."""
        age = self.orphan_after_s if older_than_s is None else older_than_s
        # Silent for `age` in the store (deltas keep a live reply fresh), oldest first.
        candidates = {m.reply_id: (m.workspace, True) for m in await self.store.stale_streaming(age)}
        if self.places is not None:
            # Places kept that long, of the platforms served here: replies that ended in the store only.
            for record in await self.places.stale_places(age, sorted(self.platforms)):
                candidates.setdefault(record.reply_id, (record.workspace, False))
        done = 0
        for reply_id, (workspace, streaming) in candidates.items():
            try:
                done += await self.finish_orphan(reply_id, WorkspaceRef.from_key(workspace), streaming=streaming)
            except Exception as exc:  # the store is down: the next sweep tries again
                log.warning("recovery.sweep_failed", reply=reply_id, error=repr(exc))
                break
        return done

    def start(self) -> None:
        """Sweep now and then every `interval_s`, until `stop()`."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="recovery-sweep")

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("recovery.sweep_failed", error=repr(exc))
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- recording places --------------------------------------------------------------------------
    def placed(
        self,
        surface: Surface,
        ws: WorkspaceRef,
        reply_id: str,
        *,
        answers: str = "",
        answered: Callable[[str], None] | None = None,
    ) -> Surface:
        """`surface`, with its place stored after each post (if the surface can say where it is).
        `answers`: the event key of the held question this reply answers; its first stored place ends
        the hold (core.handover), and `answered` is told so."""
        if self.places is None or not isinstance(surface, Placed):
            return surface
        return _PlaceRecorder(surface, self.places, reply_id, ws, answers, answered)

    async def ended(self, ws: WorkspaceRef, reply_id: str) -> None:
        """The reply ended normally on the platform: its place is no longer needed."""
        if self.places is not None:
            try:
                await self.places.forget_place(ws.key, reply_id)
            except Exception as exc:  # a stale place of a finished reply is dropped by the next sweep
                log.warning("recovery.forget_place_failed", reply=reply_id, error=repr(exc))


class _PlaceRecorder:
    """Delegates to the surface; after each post, stores where the reply now is."""

    def __init__(
        self,
        surface: Surface,
        places: ReplyPlaces,
        reply_id: str,
        ws: WorkspaceRef,
        answers: str = "",
        answered: Callable[[str], None] | None = None,
    ) -> None:
        self._surface = surface
        self._places = places
        self._reply_id = reply_id
        self._ws = ws
        self._answers = answers  # until the first place is stored
        self._answered = answered
        self.max_chars = surface.max_chars

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return self._surface.scopes(operation)

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        message_id = await self._surface.post(text, sources=sources)
        assert isinstance(self._surface, Placed)
        try:
            place = json.dumps(self._surface.place())
            key = self._answers
            await self._places.put_place(self._reply_id, self._ws.key, self._ws.platform.value, place, answers=key)
            if key:
                self._answers = ""
                if self._answered is not None:
                    self._answered(key)
        except Exception as exc:  # the reply goes on; only a crash now would leave it unfindable
            log.warning("recovery.put_place_failed", reply=self._reply_id, error=repr(exc))
        return message_id

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await self._surface.edit(message_id, text, sources=sources)

    async def thinking(self) -> None:
        await self._surface.thinking()

    async def notice(self, text: str) -> None:
        await self._surface.notice(text)

    def __getattr__(self, name: str) -> Any:  # anything else a surface offers
        return getattr(self._surface, name)
