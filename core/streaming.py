"""Streaming replies: the reply grows in place as tokens arrive, within each platform's rate limits.

Three parts, none of which knows a platform:

* `EditScheduler` owns the rate budgets shared by every reply on one platform. Surfaces name the
  scopes each call spends from (narrowest first: channel, workspace+method, global); each scope is a
  token bucket. Waiting requests are parked on the first bucket that lacks budget, in a heap ordered
  by (final first, then the stalest visible text first), and one timer per scheduler wakes exactly
  the bucket that refills next. Nothing polls: the cost of a grant is O(scopes * log waiting).
* `ReplyStreamer` owns one reply: the full text, at most one platform request in flight, each edit
  carrying all text so far, a final edit with priority and retries, and continuation messages past
  the surface's `max_chars`.
* `DeltaWriter` writes the text deltas of every live reply to the store in one batch per tick
  (about 250 ms), with one write in flight for the whole process, so store load stays flat as
  concurrency grows.

Splitting (`split_parts` / `split_markdown`) keeps code fences valid across messages; see
`split_parts` for the exact rejoin rule.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from core.messages import ReplyStatus, Source
from core.stores.base import Delta
from core.surface import Operation, RateLimited, RateScope, Surface

log = structlog.get_logger(__name__)

FAILURE_MARKER = "\n\n⚠️ _The answer was cut off: {reason}_"
CANCELLED_MARKER = "\n\n_(stopped)_"
PLACEHOLDER = "…"
# A reply still showing only the placeholder competes as if its text were this much staler:
# the first words are what users wait for most.
FIRST_TEXT_BOOST_S = 10.0


# ---------------------------------------------------------------------------------------------
# Clocks


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time for the engine; tests pass a virtual clock so pacing is deterministic."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` (a plain function) at `when` on the clock's timeline."""
        ...


class SystemClock:
    """The event loop's monotonic clock (the same as time.monotonic() on Linux and macOS)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), callback)


# ---------------------------------------------------------------------------------------------
# Rate budgets


class _Ticket:
    """One waiting request: granted when every bucket it spends from has a token for it."""

    __slots__ = ("buckets", "done", "future", "key", "parked_at")

    def __init__(self, buckets: list[TokenBucket], key: tuple[int, float, int], future: asyncio.Future[None]):
        self.buckets = buckets
        self.key = key  # (0 for a final edit else 1, staleness origin, arrival order): smaller goes first
        self.future = future
        self.parked_at: TokenBucket | None = None
        self.done = False  # granted or abandoned

    def __lt__(self, other: _Ticket) -> bool:
        return self.key < other.key


class TokenBucket:
    """One rate-limit scope.

    A bucket with rate r and burst b admits at most b + r*W requests in any window W, so a surface
    picks (r, b) from the platform's documented window with a small margin. A 429 blocks the bucket
    for Retry-After, halves its rate and lets it climb back linearly over `recovery_s`.
    """

    __slots__ = (
        "base_rate",
        "blocked_until",
        "burst",
        "key",
        "parked",
        "penalty_at",
        "penalty_rate",
        "rate",
        "recovery_s",
        "reserved",
        "tokens",
        "updated",
        "wake_at",
    )

    def __init__(self, scope: RateScope, now: float, recovery_s: float) -> None:
        self.key = scope.key
        self.base_rate = scope.per_second
        self.rate = scope.per_second
        self.burst = max(1.0, scope.burst)
        self.tokens = self.burst
        self.updated = now
        self.blocked_until = 0.0
        self.recovery_s = recovery_s
        self.penalty_at = 0.0
        self.penalty_rate = scope.per_second
        self.parked: list[_Ticket] = []  # heap of tickets waiting for this bucket
        self.wake_at = float("inf")
        # The best ticket that is parked elsewhere but needs this bucket too, and when it may be ready:
        # a lesser ticket may only take a token if one is still there for it by then.
        self.reserved: tuple[_Ticket, float] | None = None

    def _refill(self, now: float) -> None:
        if now <= self.updated:
            return
        if self.rate < self.base_rate:
            climbed = (
                self.penalty_rate + (self.base_rate - self.penalty_rate) * (now - self.penalty_at) / self.recovery_s
            )
            self.rate = min(self.base_rate, climbed)
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def _best_parked(self) -> _Ticket | None:
        parked = self.parked
        while parked and (parked[0].done or parked[0].parked_at is not self):
            heapq.heappop(parked)
        return parked[0] if parked else None

    def _reservation(self, ticket: _Ticket) -> float | None:
        """When a better ticket parked elsewhere will want a token here, if it will."""
        if self.reserved is None:
            return None
        holder, at = self.reserved
        if holder.done or holder is ticket or not holder.key < ticket.key:
            if holder.done:
                self.reserved = None
            return None
        return at

    def ready_at(self, now: float, ticket: _Ticket) -> float:
        """The earliest time this bucket can grant `ticket` a token (`now` if it can right now)."""
        self._refill(now)
        base = max(now, self.updated)  # `updated` lies ahead while a Retry-After block lasts
        rate = max(self.rate, 1e-9)
        one = base + max(0.0, 1.0 - self.tokens) / rate
        at = max(now, self.blocked_until, one)
        reserved = self._reservation(ticket)
        if reserved is not None and self.tokens - 1.0 + max(0.0, reserved - base) * rate < 1.0:
            # Taking a token now would leave none for the better ticket parked elsewhere: wait until
            # there are two, or until the better ticket has had its turn.
            two = base + max(0.0, 2.0 - self.tokens) / rate
            at = max(at, min(two, reserved + 1e-6))
        best = self._best_parked()
        if best is not None and best is not ticket and best.key < ticket.key:
            at = max(at, self.wake_at if now < self.wake_at < float("inf") else now + 1e-6)
        return at

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def refund(self, now: float) -> None:
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + 1.0)

    def penalize(self, retry_after: float, now: float) -> None:
        self._refill(now)
        self.blocked_until = max(self.blocked_until, now + retry_after)
        self.penalty_rate = max(self.rate / 2, self.base_rate / 16)
        self.rate = self.penalty_rate
        # The climb back starts when the block ends.
        self.penalty_at = self.blocked_until
        # One request may go right when the block ends; then the halved rate applies.
        self.updated = max(self.updated, self.blocked_until)
        self.tokens = 1.0


class EditScheduler:
    """Rate budgets for one platform, keyed by the platform's limit scopes.

    `acquire` returns once every scope of the call has a token. When budget is short, final edits
    go first, then the reply whose visible text has lagged longest (`since`, the time of its oldest
    unshown text). Replies of every workspace compete in that one order, so a busy workspace cannot
    starve a quiet one: a waiting reply becomes the stalest within one interval and is served next.
    """

    def __init__(self, clock: Clock | None = None, *, recovery_s: float = 60.0) -> None:
        self.clock: Clock = clock or SystemClock()
        self.recovery_s = recovery_s
        self._buckets: dict[str, TokenBucket] = {}
        self._timers: list[tuple[float, int, TokenBucket]] = []
        self._timer: TimerHandle | None = None
        self._timer_at = float("inf")
        self._order = itertools.count()
        self.rate_limited = 0  # 429s received, for logs and benchmarks
        self.granted = 0

    def bucket(self, scope: RateScope) -> TokenBucket:
        bucket = self._buckets.get(scope.key)
        if bucket is None:
            bucket = self._buckets[scope.key] = TokenBucket(scope, self.clock.now(), self.recovery_s)
        return bucket

    async def acquire(self, scopes: Sequence[RateScope], *, final: bool = False, since: float | None = None) -> None:
        """Wait until every scope has budget for this call, then spend one unit from each.

        `since` is when the caller's visible text started lagging (defaults to now); a cancelled
        wait gives its tokens back if it had already been granted.
        """
        now = self.clock.now()
        key = (0 if final else 1, now if since is None else since, next(self._order))
        buckets = [self.bucket(s) for s in scopes]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = _Ticket(buckets, key, future)
        if self._try(ticket, now):
            return
        try:
            await future
        except asyncio.CancelledError:
            if ticket.done and future.done() and not future.cancelled():
                for b in buckets:  # granted, but the caller no longer wants it
                    b.refund(self.clock.now())
            ticket.done = True
            raise

    def _try(self, ticket: _Ticket, now: float) -> bool:
        for bucket in ticket.buckets:
            at = bucket.ready_at(now, ticket)
            if at > now:
                self._park(ticket, bucket, at)
                return False
        for bucket in ticket.buckets:
            bucket.take(now)
            if bucket.reserved is not None and bucket.reserved[0] is ticket:
                bucket.reserved = None
        ticket.done = True
        ticket.parked_at = None
        self.granted += 1
        if not ticket.future.done():
            ticket.future.set_result(None)
        return True

    def _park(self, ticket: _Ticket, bucket: TokenBucket, at: float) -> None:
        ticket.parked_at = bucket
        heapq.heappush(bucket.parked, ticket)
        for other in ticket.buckets:
            if other is not bucket:
                held = other.reserved
                if held is None or held[0].done or held[0] is ticket or ticket.key < held[0].key:
                    other.reserved = (ticket, at)
        if bucket._best_parked() is ticket:
            self._wake_bucket_at(bucket, at)

    def _wake_bucket_at(self, bucket: TokenBucket, at: float) -> None:
        now = self.clock.now()
        if now < bucket.wake_at <= at:
            return  # an earlier wake is already due; it will re-plan
        bucket.wake_at = at
        heapq.heappush(self._timers, (at, next(self._order), bucket))
        self._arm()

    def _arm(self) -> None:
        """Keep exactly one clock timer, set for the earliest planned bucket wake."""
        timers = self._timers
        while timers and timers[0][2].wake_at != timers[0][0]:
            heapq.heappop(timers)  # superseded plans
        if not timers:
            return
        at = timers[0][0]
        if at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self.clock.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = self.clock.now()
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, bucket = heapq.heappop(timers)
            if bucket.wake_at != at:
                continue  # superseded by a later plan
            bucket.wake_at = float("inf")
            self._serve(bucket, now)
        self._arm()

    def _serve(self, bucket: TokenBucket, now: float) -> None:
        """Hand this bucket's budget to its parked tickets, best first, until it runs dry."""
        while True:
            best = bucket._best_parked()
            if best is None:
                return
            heapq.heappop(bucket.parked)
            best.parked_at = None
            if not self._try(best, now) and best.parked_at is bucket:
                return  # still waiting on this bucket: _park planned the next wake

    def release(self, scopes: Sequence[RateScope]) -> None:
        """Give back a grant the caller did not use."""
        now = self.clock.now()
        for scope in scopes:
            self.bucket(scope).refund(now)

    def succeeded(self, scopes: Sequence[RateScope]) -> None:
        """A call went through (kept for adapters; recovery after a 429 is time-based)."""

    def rate_limited_by(self, scopes: Sequence[RateScope], error: RateLimited) -> None:
        """Honor a 429: block the named scope (all of the call's scopes if unnamed) and slow it down."""
        self.rate_limited += 1
        now = self.clock.now()
        hit = [s for s in scopes if s.key == error.scope_key] or list(scopes)
        for scope in hit:
            bucket = self.bucket(scope)
            bucket.penalize(max(0.0, error.retry_after), now)
            best = bucket._best_parked()
            if best is not None:
                self._wake_bucket_at(bucket, bucket.ready_at(now, best))

    def rate(self, key: str) -> float | None:
        """The current rate of a scope (for tests and benchmarks)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket._refill(self.clock.now())
        return bucket.rate


# ---------------------------------------------------------------------------------------------
# Splitting


@dataclass(frozen=True, slots=True)
class Part:
    """One platform message of a split text: `text == reopen + body + close`.

    `body` is a slice of the original text; `reopen` and `close` are the fence lines the splitter
    added so that every message renders its code block on its own.
    """

    body: str
    reopen: str = ""  # "<opening fence line>\n" when the body starts inside a code fence
    close: str = ""  # "<fence>" (body ends with "\n") or "\n<fence>" when the body ends inside one

    @property
    def text(self) -> str:
        return self.reopen + self.body + self.close


@dataclass(frozen=True, slots=True)
class _Fence:
    char: str  # "`" or "~"
    length: int  # length of the marker run
    opener: str  # the opening line, stripped

    @property
    def closer(self) -> str:
        return self.char * self.length


def _fence_line(line: str, open_fence: _Fence | None) -> _Fence | None:
    """The fence state after `line`, given the state before it.

    A line opens a fence when, stripped, it starts with three or more backticks or tildes; it closes
    the open fence when, stripped, it is only that fence's character, at least as many as opened it.
    """
    stripped = line.strip()
    if open_fence is None:
        if stripped.startswith("```") or stripped.startswith("~~~"):
            char = stripped[0]
            run = len(stripped) - len(stripped.lstrip(char))
            return _Fence(char, run, stripped)
        return None
    if len(stripped) >= open_fence.length and stripped == open_fence.char * len(stripped):
        return None
    return open_fence


def _is_fence_line(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("```") or stripped.startswith("~~~")


class _FenceMap:
    """The fence state at every line start of a text, so the state at any cut is a lookup."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        self.before: list[_Fence | None] = [None]
        state: _Fence | None = None
        pos = 0
        while True:
            nl = text.find("\n", pos)
            line = text[pos:] if nl < 0 else text[pos:nl]
            if line.lstrip().startswith(("```", "~~~")) or state is not None:
                state = _fence_line(line, state)
            if nl < 0:
                break
            pos = nl + 1
            self.starts.append(pos)
            self.before.append(state)
        self.end = state  # after the whole text, the last line counted as complete
        self.length = len(text)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def at(self, pos: int) -> _Fence | None:
        """The state at a cut: a line cut in the middle belongs to the part where it ends."""
        if pos >= self.length:
            return self.end
        return self.before[self.line_of(pos)]


def split_parts(text: str, limit: int) -> list[Part]:
    """Split Markdown into platform messages of at most `limit` characters each.

    Cuts fall, in order of preference, after a blank line (in the second half of the window), after
    a line break, after a space (past a quarter of the window), else mid-line. A part that ends
    inside a code fence gets a closing fence line (`close`), and the next part starts with the
    opening line again (`reopen`); the last part is closed too, so a reply cut mid-block renders.

    Rejoin rule (exact, property-tested): ``"".join(p.body for p in parts) == text``, where each
    message is ``p.text == p.reopen + p.body + p.close``. In words: drop from each message the
    leading reopen line (``opener + "\\n"``) and the trailing close (``fence`` after a body that
    ends in a line break, else ``"\\n" + fence``), then concatenate. Line breaks at a cut stay at
    the end of the earlier part, where platforms do not show them.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    if len(text) <= limit and "```" not in text and "~~~" not in text:
        return [Part(text)]
    fences = _FenceMap(text)
    parts: list[Part] = []
    start = 0
    while True:
        open_at_start = fences.at(start) if start > 0 else None
        reopen = _reopen_line(open_at_start, limit)
        budget = limit - len(reopen)
        while True:
            cut = _choose_cut(text, start, budget, fences)
            body = text[start:cut]
            close = _close_for(fences.at(cut), body, limit) if cut > start else ""
            over = len(reopen) + len(body) + len(close) - limit
            if over <= 0:
                break
            budget -= over
            if budget < 1:  # a fence too long to repeat: give up on fences for this part
                reopen, close, budget = "", "", limit
                cut = _choose_cut(text, start, budget, fences)
                body = text[start:cut]
                break
        parts.append(Part(body, reopen, close))
        if cut >= len(text):
            return parts
        start = cut


def _reopen_line(fence: _Fence | None, limit: int) -> str:
    if fence is None:
        return ""
    line = fence.opener if len(fence.opener) <= limit // 4 else fence.closer
    return line + "\n"


def _close_for(fence: _Fence | None, body: str, limit: int) -> str:
    if fence is None:
        return ""
    return fence.closer if body.endswith("\n") else "\n" + fence.closer


def _choose_cut(text: str, start: int, budget: int, fences: _FenceMap) -> int:
    end = start + budget
    if end >= len(text):
        return len(text)
    para = text.rfind("\n\n", start, end)
    if para >= 0 and para + 2 - start > budget // 2:
        return para + 2
    line = text.rfind("\n", start, end)
    if line >= 0 and line + 1 - start > budget // 4:
        return line + 1
    space = text.rfind(" ", start, end)
    cut = space + 1 if space >= 0 and space + 1 - start > budget // 4 else end
    # A mid-line cut must not leave either half looking like a fence line on its own message:
    # never cut inside a fence line, and never so that the rest of the line starts like one.
    index = fences.line_of(cut)
    line_start = fences.starts[index]
    if line_start < cut:
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        if _is_fence_line(text[line_start:line_end]):
            if line_start > start:
                return line_start
        else:
            while cut > start + 1 and cut > line_start and _is_fence_line(text[cut:line_end]):
                cut -= 1
    return cut


def split_markdown(text: str, limit: int) -> list[str]:
    """The message texts of `split_parts` (each at most `limit` characters, fences balanced)."""
    return [part.text for part in split_parts(text, limit)]


def join_parts(parts: Sequence[Part]) -> str:
    """The original text of a split (see the rejoin rule in `split_parts`)."""
    return "".join(part.body for part in parts)


# ---------------------------------------------------------------------------------------------
# One reply


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
        self._since: float | None = None  # when the oldest text not yet sent arrived
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_request = False
        self._started_at = 0.0
        self._last_request_at = float("-inf")
        self._text_shown = False
        self._finishing = False
        self._finished = False
        self._errors = 0

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
        if self._since is None:
            self._since = self.clock.now()
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
                self._in_request = True
                self._last_request_at = self.clock.now()
                try:
                    ok = await self._request(op, index, part, final=False)
                finally:
                    self._in_request = False
                if ok and self.text:
                    self._text_shown = True
                if not ok:
                    if lag_since is not None and (self._since is None or lag_since < self._since):
                        self._since = lag_since
                    if self._errors and not self._finishing:
                        # Back off after errors (a 429 is honored by the scheduler's bucket instead).
                        await self.clock.sleep(min(self.max_backoff_s, self.error_backoff_s * 2 ** (self._errors - 1)))

    def _next_step(self) -> tuple[Operation, int, str, bool] | None:
        """The next request towards showing all text: (operation, message index, part, is last part)."""
        if self._since is None:
            return None  # everything fed has been sent
        parts = split_markdown(self.text or PLACEHOLDER, self.surface.max_chars)
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if index >= len(self.message_ids):
                return ("post", index, part, index == last)
            if self._shown[index] != part:
                return ("edit", index, part, index == last)
        self._since = None
        return None

    async def _request(
        self, op: Operation, index: int, part: str, *, final: bool, sources: Sequence[Source] = ()
    ) -> bool:
        """Send one request; True if it went through. The caller holds the scheduler's grant.

        A 429 is reported to the scheduler and returns False; other errors return False for an
        interim edit and are raised for the final one (whose caller retries with backoff).
        """
        scopes = self.surface.scopes(op)
        try:
            if op == "post":
                message_id = await self.surface.post(part, sources=sources)
                self.message_ids.append(message_id)
                self._shown.append(part)
            else:
                await self.surface.edit(self.message_ids[index], part, sources=sources)
                self._shown[index] = part
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
        self._errors = 0
        self.edits += 1
        self.scheduler.succeeded(scopes)
        return True

    async def finish(self, status: ReplyStatus, *, sources: Sequence[Source] = (), reason: str = "") -> str:
        """Land the final text (retried with backoff until it does); returns the final Markdown text.

        Raises the last error if the platform refused the final text `retries` times.
        """
        if self._finished:
            return self._final_text(status, reason)
        self._finishing = True
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            if self._in_request:
                await asyncio.wait([worker])  # let the request in flight land before the final one
            else:
                worker.cancel()
                await asyncio.wait([worker])
        final = self._final_text(status, reason)
        try:
            await self._land(final.strip() or PLACEHOLDER, sources)
        finally:
            self._finished = True
        return final

    def _final_text(self, status: ReplyStatus, reason: str) -> str:
        final = self.text
        if status is ReplyStatus.FAILED:
            final += FAILURE_MARKER.format(reason=reason or "the answer could not be completed")
        elif status is ReplyStatus.CANCELLED:
            final += CANCELLED_MARKER
        return final

    async def _land(self, text: str, sources: Sequence[Source]) -> None:
        parts = split_markdown(text, self.surface.max_chars)
        since = self._since if self._since is not None else self.clock.now()
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            # The last message is always sent again with the sources, even when its text is unchanged.
            if index < len(self._shown) and self._shown[index] == part and not (last and sources):
                continue
            op: Operation = "post" if index >= len(self.message_ids) else "edit"
            delay = self.error_backoff_s
            errors = 0
            started = self.clock.now()
            while True:
                await self.scheduler.acquire(self.surface.scopes(op), final=True, since=since)
                try:
                    if await self._request(op, index, part, final=True, sources=sources if last else ()):
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
        # Messages beyond the final split (possible only if the text shrank) are left as they are.


# ---------------------------------------------------------------------------------------------
# Store writes of deltas


class DeltaStore(Protocol):
    async def append_deltas(self, deltas: Sequence[Delta]) -> None: ...


class DeltaWriter:
    """Throttled store writes of streaming text, shared by every live reply in the process.

    `add` only buffers. One task flushes every `tick_s`: all pending text, one `Delta` per message
    (numbered per message from 0), in a single `append_deltas` call, and never two calls at once.
    A failed write keeps its deltas (same numbers, so a store may de-duplicate a write that did land)
    and retries them first at the next tick. The task stops when nothing is pending.
    """

    def __init__(
        self, store: DeltaStore, *, tick_s: float = 0.25, clock: Clock | None = None, max_batch: int = 4096
    ) -> None:
        self.store = store
        self.tick_s = tick_s
        self.clock: Clock = clock or SystemClock()
        self.max_batch = max_batch
        self._buffer: dict[str, list[str]] = {}
        self._retry: list[Delta] = []  # written and failed: resent first, unchanged
        self._seq: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = 0
        self.failures = 0

    def add(self, message_id: str, text: str) -> None:
        if not text or self._closed:
            return
        self._buffer.setdefault(message_id, []).append(text)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    def pending(self, message_id: str) -> bool:
        return message_id in self._buffer or any(d.message_id == message_id for d in self._retry)

    async def _loop(self) -> None:
        while self._buffer or self._retry:
            await self.clock.sleep(self.tick_s)
            await self._flush_once()

    def _batch(self) -> list[Delta]:
        batch = self._retry[: self.max_batch]
        self._retry = self._retry[self.max_batch :]
        for message_id in list(self._buffer):
            if len(batch) >= self.max_batch:
                break
            seq = self._seq.get(message_id, 0)
            self._seq[message_id] = seq + 1
            batch.append(Delta(message_id, seq, "".join(self._buffer.pop(message_id))))
        return batch

    async def _flush_once(self) -> None:
        batch = self._batch()
        if not batch:
            return
        try:
            await self.store.append_deltas(batch)
        except asyncio.CancelledError:
            self._retry = batch + self._retry
            raise
        except Exception as exc:
            self.failures += 1
            log.warning("deltas.write_failed", deltas=len(batch), error=repr(exc))
            self._retry = batch + self._retry
            return
        self.writes += 1
        for message_id in {d.message_id for d in batch}:
            if not self.pending(message_id):
                for waiter in self._waiters.pop(message_id, []):
                    if not waiter.done():
                        waiter.set_result(None)

    async def flush_message(self, message_id: str, *, timeout_s: float = 5.0) -> None:
        """Wait (at most `timeout_s`) until the message's deltas are written, then forget the message:
        its final text goes to the message row, so deltas still unwritten then are dropped."""
        try:
            if self.pending(message_id):
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(message_id, []).append(waiter)
                sleeper = asyncio.ensure_future(self.clock.sleep(timeout_s))
                try:
                    await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waiter.cancel()
        finally:
            self._buffer.pop(message_id, None)
            self._retry = [d for d in self._retry if d.message_id != message_id]
            self._seq.pop(message_id, None)
            self._waiters.pop(message_id, None)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Write what is pending (one last try, bounded), then stop."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        if self._buffer or self._retry:
            flush = asyncio.ensure_future(self._flush_once())
            timer = asyncio.ensure_future(self.clock.sleep(timeout_s))
            try:
                await asyncio.wait([flush, timer], return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                if not flush.done():
                    flush.cancel()
                    log.warning("deltas.close_lost", deltas=len(self._retry) + len(self._buffer))
                    await asyncio.wait([flush])
