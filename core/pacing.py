"""Pacing: the clock and the rate budgets shared by every reply on one platform.

`EditScheduler` owns the rate budgets. Surfaces name the scopes each call spends from (narrowest
first: channel, workspace+method, global); each scope is a token bucket. Waiting requests are
parked on the first bucket that lacks budget, in a heap ordered by (urgent first: a Stop, an
error, a stream stop; then the stalest visible text first), and one timer per scheduler wakes
exactly the bucket that refills next.
Nothing polls: the cost of a grant is O(scopes * log waiting).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from core.surface import RateLimited, RateScope

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Budget:
    """A platform's documented limit (`limit` requests in any `window_s`) and the bucket kept inside it.

    A token bucket of rate r and burst b admits at most b + r*W requests in a window W, so a table of
    budgets states both, and `admits` shows the margin kept. `reserve` of the window's requests are
    held for finals (a reply's last text, a Stop, an error): interim requests spend the bucket's rate
    and burst and leave `reserve` requests of every window free, which only a final may take, at once.
    Adapters, fakes and benchmarks read the same table (bots/<platform>/limits.py).
    """

    limit: int  # what the platform allows in one window
    window_s: float
    per_second: float  # the bucket's rate
    burst: float  # the bucket's capacity for interim requests
    note: str = ""  # where the limit is documented, or how it was measured
    reserve: int = 0  # requests of each window only a final may use

    def admits(self, window_s: float | None = None) -> float:
        """The most requests the bucket can grant in any window of `window_s` (the platform's window),
        finals spending the reserve included."""
        return self.burst + self.reserve + self.per_second * (self.window_s if window_s is None else window_s)

    def scope(self, key: str) -> RateScope:
        return RateScope(
            key, self.per_second, burst=self.burst, window_s=self.window_s, limit=self.limit, reserve=self.reserve
        )


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

    __slots__ = ("buckets", "done", "final", "future", "key", "parked_at")

    def __init__(
        self, buckets: list[TokenBucket], key: tuple[int, float, int], future: asyncio.Future[None], *, final: bool
    ):
        self.buckets = buckets
        self.key = key  # (0 if urgent else 1, staleness origin, arrival order): smaller goes first
        self.final = final  # may spend the reserve of a scope
        self.future = future
        self.parked_at: TokenBucket | None = None
        self.done = False  # granted or abandoned

    def __lt__(self, other: _Ticket) -> bool:
        return self.key < other.key


# A request whose answer never got reported (a caller that lost track of it) stops counting as in
# flight after this long; the HTTP clients time out well before.
IN_FLIGHT_MAX_S = 30.0


class _Window:
    """What the platform may still count in its sliding window for one scope, judged by responses.

    The platform counts a request when it arrives, somewhere between its send and its response, and
    the delay varies (load, network). Spacing sends alone lets a late request and a prompt one land
    in one window. So a request counts from its send until its response plus the window: a new one
    goes only while fewer than `limit` do. Then any `limit + 1` arrivals span more than the window:
    the last sent left at or after the others' responses plus the window, and each arrived before
    its response. An interim request goes only while fewer than `limit - reserve` count, so a final
    always finds the reserve free.
    """

    __slots__ = ("answered", "in_flight", "limit", "reserve", "window_s")

    def __init__(self, limit: int, window_s: float, reserve: int = 0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.reserve = min(reserve, max(0, limit - 1))
        self.in_flight: deque[float] = deque()  # send times of requests not answered yet
        self.answered: deque[float] = deque()  # response times still within a window, oldest first

    def _expire(self, now: float) -> None:
        while self.answered and self.answered[0] + self.window_s <= now:
            self.answered.popleft()
        while self.in_flight and self.in_flight[0] + IN_FLIGHT_MAX_S <= now:
            self.in_flight.popleft()
            self.answered.append(now)  # as if answered now: later than it really was, so safe

    def free_at(self, now: float, *, final: bool = True) -> float:
        """When one more request (a final one, or an interim one) may be sent (`now` if right now)."""
        if self.limit <= 0:
            return now
        self._expire(now)
        limit = self.limit if final else self.limit - self.reserve
        excess = len(self.in_flight) + len(self.answered) - limit + 1
        if excess <= 0:
            return now
        if excess <= len(self.answered):
            return self.answered[excess - 1] + self.window_s
        # Waiting for answers: the response re-plans the wake; this is the fallback.
        return self.in_flight[0] + IN_FLIGHT_MAX_S

    def sent(self, now: float) -> None:
        if self.limit > 0:
            self.in_flight.append(now)

    def unsent(self) -> None:
        """A grant given back unused."""
        if self.in_flight:
            self.in_flight.pop()

    def responded(self, now: float) -> None:
        if self.in_flight:
            self.in_flight.popleft()  # which one does not matter: only the count and the times do
            self.answered.append(now)


class TokenBucket:
    """One rate-limit scope.

    A bucket with rate r and burst b admits at most b + r*W requests in any window W, so a surface
    picks (r, b) from the platform's documented window with a small margin. The scope's `reserve`
    adds tokens below the burst that only a final request may take: an interim one needs
    `1 + reserve` tokens, so the bucket refills the reserve before it serves interims again. A 429
    blocks the bucket for Retry-After, halves its rate and lets it climb back linearly over `recovery_s`.
    """

    __slots__ = (
        "base_rate",
        "blocked_until",
        "burst",
        "capacity",
        "key",
        "parked",
        "penalty_at",
        "penalty_rate",
        "rate",
        "recovery_s",
        "reserve",
        "reserved",
        "scope",
        "tokens",
        "updated",
        "wake_at",
        "window",
    )

    def __init__(self, scope: RateScope, now: float, recovery_s: float) -> None:
        self.scope = scope
        self.key = scope.key
        self.base_rate = scope.per_second
        self.rate = scope.per_second
        self.burst = max(1.0, scope.burst)
        self.reserve = float(max(0, scope.reserve))
        self.capacity = self.burst + self.reserve
        self.tokens = self.capacity
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
        self.window = _Window(scope.limit, scope.window_s, scope.reserve)

    def _refill(self, now: float) -> None:
        if now <= self.updated:
            return
        if self.rate < self.base_rate:
            climbed = (
                self.penalty_rate + (self.base_rate - self.penalty_rate) * (now - self.penalty_at) / self.recovery_s
            )
            self.rate = min(self.base_rate, climbed)
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def need(self, ticket: _Ticket) -> float:
        """The tokens the bucket must hold to grant `ticket` one: a final may take the reserve."""
        return 1.0 if ticket.final else 1.0 + self.reserve

    def _best_parked(self) -> _Ticket | None:
        parked = self.parked
        while parked and (parked[0].done or parked[0].parked_at is not self):
            heapq.heappop(parked)
        return parked[0] if parked else None

    def _behind_better(self, ticket: _Ticket, now: float, at: float) -> float:
        """`at`, or later while a better ticket is parked on this bucket: it goes first, at its wake-up."""
        best = self._best_parked()
        if best is not None and best is not ticket and best.key < ticket.key:
            return max(at, self.wake_at if now < self.wake_at < float("inf") else now + 1e-6)
        return at

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
        one = base + max(0.0, self.need(ticket) - self.tokens) / rate
        at = max(now, self.blocked_until, one)
        reserved = self._reservation(ticket)
        if reserved is not None:
            holder = self.need(self.reserved[0]) if self.reserved is not None else 1.0
            if self.tokens - 1.0 + max(0.0, reserved - base) * rate < holder:
                # Taking a token now would leave too few for the better ticket parked elsewhere: wait
                # until there is one more, or until the better ticket has had its turn.
                two = base + max(0.0, 1.0 + holder - self.tokens) / rate
                at = max(at, min(two, reserved + 1e-6))
        return self._behind_better(ticket, now, at)

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def refund(self, now: float) -> None:
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + 1.0)

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


class SharedBudgets(Protocol):
    """Buckets whose tokens are leased from a store shared with other processes (core.budgets)."""

    def bucket(
        self, scope: RateScope, now: float, recovery_s: float, arrived: Callable[[TokenBucket], None]
    ) -> TokenBucket:
        """A bucket for `scope`; `arrived(bucket)` is called when leased tokens come in."""
        ...


class SchedulerObserver(Protocol):
    def granted(self, scopes: Sequence[RateScope]) -> None: ...

    def rate_limited(self, scope: RateScope) -> None: ...


class EditScheduler:
    """Rate budgets for one platform, keyed by the platform's limit scopes.

    `acquire` returns once every scope of the call has a token. When budget is short, urgent requests
    go first, then the reply whose visible text has lagged longest (`since`, the time of its oldest
    unshown text; a reply's last text gets a head start, core.streaming). Finals may also spend a
    scope's reserve. Replies of every workspace compete in that one order, so a busy workspace cannot
    starve a quiet one: a waiting reply becomes the stalest within one interval and is served next.
    """

    def __init__(
        self, clock: Clock | None = None, *, recovery_s: float = 60.0, shared: SharedBudgets | None = None
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.recovery_s = recovery_s
        # With shared budgets (several processes on one platform), every bucket spends leased tokens.
        self.shared = shared
        self._buckets: dict[str, TokenBucket] = {}
        self._timers: list[tuple[float, int, TokenBucket]] = []
        self._timer: TimerHandle | None = None
        self._timer_at = float("inf")
        self._order = itertools.count()
        self.rate_limited = 0  # 429s received, for logs and benchmarks
        self.granted = 0
        self.observer: SchedulerObserver | None = None  # the metrics (wired by core.app)

    def bucket(self, scope: RateScope) -> TokenBucket:
        bucket = self._buckets.get(scope.key)
        if bucket is None:
            if self.shared is not None:
                bucket = self.shared.bucket(scope, self.clock.now(), self.recovery_s, self._tokens_arrived)
            else:
                bucket = TokenBucket(scope, self.clock.now(), self.recovery_s)
            self._buckets[scope.key] = bucket
        return bucket

    def _tokens_arrived(self, bucket: TokenBucket) -> None:
        """Leased tokens came in: plan the wake of the bucket's best waiting request."""
        best = bucket._best_parked()
        if best is not None:
            self._wake_bucket_at(bucket, self._ready_at(bucket, self.clock.now(), best))

    async def acquire(
        self,
        scopes: Sequence[RateScope],
        *,
        final: bool = False,
        urgent: bool | None = None,
        since: float | None = None,
    ) -> None:
        """Wait until every scope has budget for this call, then spend one unit from each.

        `final` requests may spend a scope's reserve; `urgent` ones (by default the finals) go before
        every other request, the rest in the order of `since`: when the caller's visible text started
        lagging (defaults to now). A cancelled wait gives its tokens back if it had been granted.
        """
        now = self.clock.now()
        key = (0 if (final if urgent is None else urgent) else 1, now if since is None else since, next(self._order))
        buckets = [self.bucket(s) for s in scopes]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = _Ticket(buckets, key, future, final=final)
        if self._try(ticket, now):
            return
        try:
            await future
        except asyncio.CancelledError:
            if ticket.done and future.done() and not future.cancelled():
                for b in buckets:  # granted, but the caller no longer wants it
                    b.refund(self.clock.now())
                    b.window.unsent()
            ticket.done = True
            raise

    @staticmethod
    def _ready_at(bucket: TokenBucket, now: float, ticket: _Ticket) -> float:
        """When `bucket` can grant `ticket`: its tokens and the platform's window both allow it (the
        reserve of both is for finals only)."""
        return max(bucket.ready_at(now, ticket), bucket.window.free_at(now, final=ticket.final))

    def has_slack(self, scopes: Sequence[RateScope], *, spare: float = 1.0) -> bool:
        """Whether an optional request could go on these scopes now: nothing waits on them and a
        shared burst keeps `spare` tokens after it (nothing is spent)."""
        buckets = [self.bucket(s) for s in scopes]  # first: a new bucket starts at the clock's now
        now = self.clock.now()
        # The lowest priority there is: any request waiting on these scopes or reserving them wins.
        ticket = _Ticket(buckets, (2, now, next(self._order)), asyncio.get_running_loop().create_future(), final=False)
        for bucket in ticket.buckets:
            if self._ready_at(bucket, now, ticket) > now:
                return False
            if bucket.burst >= spare + 2 and bucket.tokens < spare + 1:
                return False
        return True

    def try_acquire(self, scopes: Sequence[RateScope], *, spare: float = 1.0) -> bool:
        """Spend one unit from each scope now, only if the budget has slack (`has_slack`). For optional
        requests (typing, a placeholder), which are dropped rather than queued, so they never delay a
        reply's text."""
        if not self.has_slack(scopes, spare=spare):
            return False
        now = self.clock.now()
        for scope in scopes:
            bucket = self.bucket(scope)
            bucket.take(now)
            bucket.window.sent(now)
        self.granted += 1
        if self.observer is not None:
            self.observer.granted(list(scopes))
        return True

    def _try(self, ticket: _Ticket, now: float) -> bool:
        for bucket in ticket.buckets:
            at = self._ready_at(bucket, now, ticket)
            if at > now:
                self._park(ticket, bucket, at)
                return False
        for bucket in ticket.buckets:
            bucket.take(now)
            bucket.window.sent(now)
            if bucket.reserved is not None and bucket.reserved[0] is ticket:
                bucket.reserved = None
        ticket.done = True
        ticket.parked_at = None
        self.granted += 1
        if self.observer is not None:
            self.observer.granted([b.scope for b in ticket.buckets])
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
        if at == float("inf"):
            return  # a leased bucket without tokens: the lease's arrival wakes it
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

    def release(self, scopes: Sequence[RateScope], *, reported: bool = False) -> None:
        """Give back a grant the caller did not use (`reported`: its token only; the caller still
        reports a response for it, which settles its place in the window)."""
        now = self.clock.now()
        for scope in scopes:
            bucket = self.bucket(scope)
            bucket.refund(now)
            if not reported:
                bucket.window.unsent()

    def succeeded(self, scopes: Sequence[RateScope]) -> None:
        """A call went through (kept for adapters; recovery after a 429 is time-based)."""

    def responded(self, scopes: Sequence[RateScope]) -> None:
        """The platform answered a granted request (any answer, a 429 or an error too): from now on it
        counts in the scope's window until the window has passed. Every grant that was sent reports
        this once; `release` instead for one that was not."""
        now = self.clock.now()
        for scope in scopes:
            bucket = self.bucket(scope)
            bucket.window.responded(now)
            best = bucket._best_parked()
            if best is not None:
                self._wake_bucket_at(bucket, self._ready_at(bucket, now, best))

    def rate_limited_by(self, scopes: Sequence[RateScope], error: RateLimited) -> None:
        """Honor a 429: block the named scope (all of the call's scopes if unnamed) and slow it down."""
        self.rate_limited += 1
        now = self.clock.now()
        hit = [s for s in scopes if s.key == error.scope_key] or list(scopes)
        for scope in hit:
            if self.observer is not None:
                self.observer.rate_limited(scope)
            bucket = self.bucket(scope)
            bucket.penalize(max(0.0, error.retry_after), now)
            best = bucket._best_parked()
            if best is not None:
                self._wake_bucket_at(bucket, self._ready_at(bucket, now, best))

    def rate(self, key: str) -> float | None:
        """The current rate of a scope (for tests and benchmarks)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket._refill(self.clock.now())
        return bucket.rate


# `since` for a request that goes before every other final: the end of a reply whose process died,
# which has waited longest of all (and is watched for: taken over and marked within 30 s).
STALEST = float("-inf")


async def within_budget(
    scheduler: EditScheduler,
    scopes: Sequence[RateScope],
    call: Callable[[], Awaitable[T]],
    *,
    final: bool = True,
    urgent: bool | None = None,
    deadline_s: float = 120.0,
    since: float | None = None,
) -> T:
    """Run one platform request that is not a reply edit (typing, a stream stop, a notice) inside
    its budget: wait for a grant, and after a 429 wait as the platform says and try again.
    (`final`, `urgent` and `since` as for `EditScheduler.acquire`.)"""
    started = scheduler.clock.now()
    while True:
        await scheduler.acquire(scopes, final=final, urgent=urgent, since=since)
        try:
            return await call()
        except RateLimited as exc:
            scheduler.rate_limited_by(scopes, exc)
            if scheduler.clock.now() - started > deadline_s:
                raise
        finally:
            scheduler.responded(scopes)
