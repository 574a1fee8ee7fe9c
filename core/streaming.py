"""Streaming replies: the reply grows in place as tokens arrive, within each platform's rate limits.

`ReplyStreamer` owns one reply: the full text, at most one platform request in flight, each edit
carrying all text so far, a final edit with priority and retries, and continuation messages past
the surface's `max_chars`. It knows no platform: pacing lives in `core.pacing`, splitting in
`core.markdown`, store writes of deltas in `core.stores.deltas`.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence

import structlog

from core.markdown import Part, split_growing
from core.messages import ReplyStatus, Source
from core.pacing import EditScheduler
from core.surface import PLACEHOLDER, Finishing, Operation, RateLimited, Surface

log = structlog.get_logger(__name__)

FAILURE_MARKER = "\n\n⚠️ _The answer was cut off: {reason}_"
CANCELLED_MARKER = "\n\n_(stopped)_"
# A reply still showing only the placeholder competes as if its text were this much staler:
# the first words are what users wait for most.
FIRST_TEXT_BOOST_S = 10.0
# A reply's last text competes as if it were this much staler. Not first outright: when many replies
# share a budget and finish together, finals ahead of everything would freeze the replies still
# streaming for seconds. A Stop or an error goes first (urgent); the scope's reserve serves either.
FINAL_BOOST_S = 1.0


def final_text(text: str, status: ReplyStatus, reason: str = "") -> str:
    """A finished reply's text: `text` with the marker of how it ended. The one rule, for the streamer
    and for a reply another process ends for a dead owner (core.recovery)."""
    if status is ReplyStatus.FAILED:
        return text + FAILURE_MARKER.format(reason=reason or "the answer could not be completed")
    if status is ReplyStatus.CANCELLED:
        return text + CANCELLED_MARKER
    return text


class ReplyStreamer:
    """One reply: keeps the full text and edits the platform with coalesced, paced updates.

    A single worker task per reply sends one request at a time; `feed` only appends text and wakes
    it. While the worker waits for budget, new text accumulates, so the edit it finally sends
    carries everything so far. `finish` waits for a request in flight (never cancels it, so it can
    never land after the final edit), then sends the final text with priority and retries.
    """

    def __init__(
        self,
        surface: Surface,
        scheduler: EditScheduler,
        *,
        retries: int = 8,
        error_backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        min_interval_s: float = 1.0,
        final_deadline_s: float = 300.0,
    ) -> None:
        self.surface = surface
        # Errors end the final edit after `retries` tries; 429s do not count, as the platform says
        # when to come back: the final text keeps waiting for its turn up to `final_deadline_s`.
        self.final_deadline_s = final_deadline_s
        self.min_interval_s = min_interval_s
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.retries = retries
        self.error_backoff_s = error_backoff_s
        self.max_backoff_s = max_backoff_s
        self.message_ids: list[str] = []
        self.edits = 0  # successful platform requests (posts and edits)
        self.rate_limited = 0
        self.failed_requests = 0
        self._chunks: list[str] = []
        self._text = ""
        self._shown: list[str] = []  # the text each message shows now
        # Where each message's slice of the text begins, and how far the last one shows it: the
        # splitter keeps both, so text once shown never moves to another message or shrinks.
        self._starts: list[int] = []
        self._shown_end = 0
        self._since: float | None = None  # when the oldest text not yet sent arrived
        # Where each fed chunk starts in the text, and when it came: after a request that showed only
        # part of the text (a full message before the next part), the rest lags from its own arrival.
        self._fed_at: list[int] = []
        self._fed_when: list[float] = []
        self._fed = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_request = False
        self._started_at = 0.0
        self._last_request_at = float("-inf")
        self._text_shown = False
        self._finishing = False
        self._finished = False
        self._errors = 0
        # For the metrics: when the first words were shown (time.monotonic) and, per request that
        # showed new text, how long that text had waited (the engine's clock).
        self.first_text_at: float | None = None
        self.lags: list[float] = []

    @property
    def text(self) -> str:
        """All text fed so far."""
        if self._chunks:
            self._text += "".join(self._chunks)
            self._chunks.clear()
        return self._text

    async def start(self) -> None:
        """Start showing the reply: the placeholder is posted as soon as the channel's budget allows
        (carrying any text that arrived meanwhile); this call itself does not wait for it."""
        if self._worker is None:
            self._since = self._started_at = self.clock.now()
            self._worker = asyncio.create_task(self._run())
            self._wake.set()

    def feed(self, delta: str) -> None:
        if not delta or self._finishing:
            return
        self._chunks.append(delta)
        now = self.clock.now()
        self._fed_at.append(self._fed)
        self._fed_when.append(now)
        self._fed += len(delta)
        if self._since is None:
            self._since = now
        self._wake.set()

    async def _run(self) -> None:
        while not self._finishing:
            await self._wake.wait()
            self._wake.clear()
            while not self._finishing:
                step = self._next_step()
                if step is None:
                    break
                scopes = self.surface.scopes(step[0])
                since = self._since if self._since is not None else self.clock.now()
                if not self._text_shown:
                    # The user has waited since the question: the first words beat later edits.
                    since = min(since, self._started_at - FIRST_TEXT_BOOST_S)
                elif step[0] == "edit" and self.min_interval_s > 0:
                    # Interim edits of one reply are spaced out, so a shared burst budget goes to
                    # first words and finals instead of tiny increments of one reply.
                    wait = self._last_request_at + self.min_interval_s - self.clock.now()
                    if wait > 0:
                        await self.clock.sleep(wait)
                        continue  # re-plan: more text has arrived
                if not self.text and step[0] == "post":
                    # A placeholder before the first words is optional: sent only while the budget
                    # has slack, and the edit's too where edits spend another budget (Slack's Tier 3:
                    # a placeholder there could wait minutes for its first words), else the first
                    # words make the first post.
                    edits = self.surface.scopes("edit")
                    if not (self.scheduler.has_slack(edits) and self.scheduler.try_acquire(scopes)):
                        break
                else:
                    await self.scheduler.acquire(scopes, since=since)
                # Re-plan with the text as it is now: everything that arrived while waiting rides along.
                replanned = self._next_step()
                if replanned is None or replanned[0] != step[0]:
                    self.scheduler.release(scopes)
                    continue
                op, index, part, covers_all = replanned
                lag_since = self._since
                if covers_all:
                    self._since = None  # text fed from now on starts a new lag
                elif self._since is not None:
                    # What this request leaves unshown lags from when its first character came.
                    self._since = max(self._since, self._arrival(part[0] + len(part[1].body)))
                self._in_request = True
                self._last_request_at = self.clock.now()
                try:
                    ok = await self._request(op, index, part, final=False)
                finally:
                    self._in_request = False
                if ok and self.text:
                    if not self._text_shown:
                        self.first_text_at = time.monotonic()
                    self._text_shown = True
                    if lag_since is not None:
                        self.lags.append(self.clock.now() - lag_since)
                if not ok:
                    if lag_since is not None and (self._since is None or lag_since < self._since):
                        self._since = lag_since
                    if self._errors and not self._finishing:
                        # Back off after errors (a 429 is honored by the scheduler's bucket instead).
                        await self.clock.sleep(min(self.max_backoff_s, self.error_backoff_s * 2 ** (self._errors - 1)))

    def _arrival(self, offset: int) -> float:
        """When the character at `offset` of the text was fed."""
        index = bisect.bisect_right(self._fed_at, offset) - 1
        return self._fed_when[index] if index >= 0 else self._started_at

    def _plan(self, text: str, *, hold_back: bool) -> list[tuple[int, Part]]:
        """The messages of `text` as (start offset, part); the placeholder while there is no text."""
        if not text:
            return [(0, Part(PLACEHOLDER))]
        parts = split_growing(text, self.surface.max_chars, self._starts, self._shown_end, hold_back=hold_back)
        planned: list[tuple[int, Part]] = []
        offset = 0
        for part in parts:
            planned.append((offset, part))
            offset += len(part.body)
        return planned

    def _next_step(self) -> tuple[Operation, int, tuple[int, Part], bool] | None:
        """The next request towards showing all text: (operation, message index, (start, part), shows
        everything fed)."""
        if self._since is None:
            return None  # everything fed has been sent
        text = self.text
        planned = self._plan(text, hold_back=True)
        last = len(planned) - 1
        for index, (start, part) in enumerate(planned):
            everything = index == last and start + len(part.body) >= len(text)
            if index >= len(self.message_ids):
                return ("post", index, (start, part), everything)
            if self._shown[index] != part.text:
                return ("edit", index, (start, part), everything)
        if start + len(part.body) >= len(text):
            self._since = None
        return None

    async def _request(
        self, op: Operation, index: int, planned: tuple[int, Part], *, final: bool, sources: Sequence[Source] = ()
    ) -> bool:
        """Send one request; True if it went through. The caller holds the scheduler's grant.

        A 429 is reported to the scheduler and returns False; other errors return False for an
        interim edit and are raised for the final one (whose caller retries with backoff).
        """
        scopes = self.surface.scopes(op)
        start, piece = planned
        part = piece.text
        try:
            if op == "post":
                message_id = await self.surface.post(part, sources=sources)
                self.message_ids.append(message_id)
                self._shown.append(part)
            else:
                await self.surface.edit(self.message_ids[index], part, sources=sources)
                self._shown[index] = part
            if self.text and part != PLACEHOLDER:
                if index >= len(self._starts):
                    self._starts.append(start)
                if index == len(self._starts) - 1:
                    self._shown_end = max(self._shown_end, start + len(piece.body))
        except RateLimited as exc:
            self.rate_limited += 1
            self.scheduler.rate_limited_by(scopes, exc)
            return False
        except Exception as exc:
            self.failed_requests += 1
            self._errors += 1
            log.warning("stream.request_failed", op=op, final=final, error=repr(exc))
            if final:
                raise
            return False
        finally:
            self.scheduler.responded(scopes)  # the platform counts it in its window from here
        self._errors = 0
        self.edits += 1
        self.scheduler.succeeded(scopes)
        return True

    async def abandon(self) -> None:
        """Stop showing the reply without a final edit (another process has finished it)."""
        self._finishing = self._finished = True
        worker = self._worker
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.wait([worker])

    async def finish(self, status: ReplyStatus, *, sources: Sequence[Source] = (), reason: str = "") -> str:
        """Land the final text (retried with backoff until it does); returns the final Markdown text.

        Raises the last error if the platform refused the final text `retries` times.
        """
        if self._finished:
            return final_text(self.text, status, reason)
        self._finishing = True
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            if self._in_request:
                await asyncio.wait([worker])  # let the request in flight land before the final one
            else:
                worker.cancel()
                await asyncio.wait([worker])
        final = final_text(self.text, status, reason)
        if isinstance(self.surface, Finishing):
            self.surface.finishing()  # the final request carries the finished controls too
        try:
            await self._land(final.rstrip(), sources, urgent=status is not ReplyStatus.COMPLETE)
        finally:
            self._finished = True
        return final

    async def _land(self, text: str, sources: Sequence[Source], *, urgent: bool) -> None:
        parts = self._plan(text, hold_back=False)
        waiting = self._since  # the oldest text the final edit is the first to show, if any
        since = (self._since if self._since is not None else self.clock.now()) - (0.0 if urgent else FINAL_BOOST_S)
        for index, planned in enumerate(parts):
            last = index == len(parts) - 1
            part = planned[1].text
            # The last message is always sent again with the sources, even when its text is unchanged.
            if index < len(self._shown) and self._shown[index] == part and not (last and sources):
                continue
            op: Operation = "post" if index >= len(self.message_ids) else "edit"
            delay = self.error_backoff_s
            errors = 0
            started = self.clock.now()
            while True:
                await self.scheduler.acquire(self.surface.scopes(op), final=True, urgent=urgent, since=since)
                try:
                    if await self._request(op, index, planned, final=True, sources=sources if last else ()):
                        break
                except Exception:
                    errors += 1
                    if errors >= self.retries:
                        raise
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, self.max_backoff_s)
                    continue
                # Rate limited: the bucket now waits out Retry-After before granting again.
                if self.clock.now() - started > self.final_deadline_s:
                    raise RateLimited(0.0, "final edit still rate limited")
        if waiting is not None and self.text:
            self.lags.append(self.clock.now() - waiting)
        if self.first_text_at is None and self.text:
            self.first_text_at = time.monotonic()
        # Messages beyond the final split (possible only if the text shrank) are left as they are.
