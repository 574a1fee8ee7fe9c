"""Platform budgets shared by several processes: this process's side of the store's token buckets.

One `BudgetLessor` per process keeps, per shared scope, the tokens it has leased from the store
(`BudgetLeases`), each usable from its moment on and for a short while after. When a scope runs low
it leases more: one store write for every scope that needs tokens at that moment, one write in
flight at a time, each asking for about what the scope used over the last horizon, so at steady
state a lease round trip per scope is rare. Tokens left at shutdown are given back.

A lease also says how long the process's requests waiting for the scope have waited (`waiting`, in
the scheduler's order: finals count as older than any interim edit), so the store can give the
scope's next tokens to the stalest request of all the processes (core.stores.leases.demand_share),
as one process's scheduler gives its own: a process whose replies have lagged less than another's
is refused for now and asks again when the store says.

The window rule: a token may be spent up to `late_s` after its moment (timers and the lease round
trip make exact timing impossible), which could add rate*late requests to a window. So the shared
bucket is sized for the window W the scope states: with N = floor(burst + rate*W) (the most the
table's bucket admits, within the platform's limit), it keeps burst' + rate'*(W + late) < N + 1 by
giving up burst first and then, if burst 1 is still too much, a little rate. All processes together
then send at most N in any window W, as one process's own bucket would. A scope's reserve for
finals (core.pacing) is part of the store bucket's burst, as it is of a local bucket's capacity;
each process's own window keeps its interim requests out of the reserve. A scope without a stated
window gives up burst only: late = min(LATE_MAX_S, (burst - 0.75) / rate), burst' = max(1, burst -
rate*late), which adds at most a quarter token.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from core.pacing import TokenBucket, _Ticket
from core.policy import COUNTS, NUMBERS
from core.stores.leases import BudgetGrant, BudgetLeases, BudgetRequest
from core.surface import RateScope

log = structlog.get_logger(__name__)

LATE_MAX_S = 1.0
LATE_S = 0.15  # how late a leased token may be spent, for scopes that state their window
HORIZON_S = 1.0  # lease no token further ahead than this (or one interval, for slow scopes)
MAX_WANT = 20
MAX_SCOPES_PER_LEASE = COUNTS["lease_buckets"]
COALESCE_S = 0.02  # at most one lease write per this long per process
LEAD_SAMPLES = 20  # lease round trips the lead is the median of
LEAD_MAX_S = 1.0
AGE_MAX_S = float(NUMBERS["age_s"][1])  # what a lease may say a request has waited
FINAL_HEAD_S = 3600.0  # a waiting final counts as this much older than it is: finals go first everywhere


def shared_bucket(scope: RateScope) -> tuple[float, float, float]:
    """(rate, burst, late) of the store bucket for `scope`; see the window rule above."""
    rate, burst = scope.per_second, max(1.0, scope.burst) + max(0, scope.reserve)
    if scope.window_s <= 0:
        late = min(LATE_MAX_S, (burst - 0.75) / rate)
        return rate, max(1.0, burst - rate * late), late
    window, late = scope.window_s, LATE_S
    most = math.floor(burst + rate * window + 1e-9)
    room = most + 1 - 1e-6  # burst' + rate' * (window + late) must stay below this
    shared_burst = min(burst, room - rate * (window + late))
    if shared_burst >= 1.0:
        return rate, shared_burst, late
    return min(rate, (room - 1.0) / (window + late)), 1.0, late


@dataclass(slots=True)
class Token:
    usable_from: float  # local clock
    usable_until: float
    seq: int  # the store lease it came from, for give-backs
    undo: float


class SharedScope:
    """The leased tokens of one scope in this process."""

    __slots__ = (
        "acquiring",
        "buckets",
        "empty_grants",
        "granted",
        "key",
        "late_s",
        "listeners",
        "listeners_keep",
        "per_second",
        "request",
        "retry_armed",
        "retry_at",
        "taken",
        "tokens",
    )

    def __init__(self, scope: RateScope) -> None:
        self.key = scope.key
        self.per_second = scope.per_second
        rate, burst, self.late_s = shared_bucket(scope)
        horizon = max(HORIZON_S, 1.5 / rate)
        self.request = BudgetRequest(scope.key, rate, burst, 1, horizon)
        self.tokens: deque[Token] = deque()
        self.taken: deque[float] = deque()  # when tokens were spent, over the last horizon (demand)
        self.listeners: list[Callable[[], None]] = []  # called once, at the next lease's arrival
        self.listeners_keep: list[Callable[[], None]] = []  # called at every arrival (scheduler buckets)
        self.buckets: list[LeasedBucket] = []  # the schedulers' buckets of this scope (their waiting tickets)
        self.acquiring: list[float] = []  # when each `BudgetLessor.acquire` waiting here began
        self.retry_at = 0.0  # a refused lease: ask again no sooner than this
        self.retry_armed = False
        self.granted = 0  # tokens leased, and leases that granted none (for the logs)
        self.empty_grants = 0

    def expire(self, now: float) -> int:
        dropped = 0
        while self.tokens and self.tokens[0].usable_until < now:
            self.tokens.popleft()
            dropped += 1
        return dropped

    def first_usable(self, now: float) -> float | None:
        """When the next token may be spent (now or later), or None without one."""
        self.expire(now)
        return max(now, self.tokens[0].usable_from) if self.tokens else None

    def take(self, now: float) -> Token:
        self.expire(now)
        token = self.tokens.popleft()
        self.taken.append(now)
        while self.taken and self.taken[0] < now - self.request.horizon_s:
            self.taken.popleft()
        return token

    def put_back(self, token: Token) -> None:
        """An unused grant goes back to the front (it is the earliest)."""
        self.tokens.appendleft(token)
        if self.taken:
            self.taken.pop()

    def waiting(self, now: float) -> tuple[float, ...]:
        """How long the requests parked for this scope's tokens have waited, longest first (finals
        first: FINAL_HEAD_S older), without the oldest ones the tokens held already go to, at most one
        more than a lease may want (the rest is said later)."""
        held = len(self.tokens)
        parked = (t.key for b in self.buckets for t in b.parked if not t.done and t.parked_at is b)
        keys = heapq.nsmallest(held + MAX_WANT + 1, parked)  # a lease goes often: not the whole heap sorted
        ages = [_age(rank, since, now) for rank, since, _ in keys]
        ages += [_age(1, since, now) for since in self.acquiring]
        return tuple(sorted(ages, reverse=True)[held : held + MAX_WANT + 1])

    def want(self) -> int:
        """About what was spent over the last horizon, plus one: a token not spent soon after its moment
        is lost, so the number of waiting requests (which may still wait on other scopes) does not
        size a lease; it grows with use instead."""
        return max(1, min(MAX_WANT, len(self.taken) + 1 - len(self.tokens)))


class BudgetLessor:
    """Leases tokens for shared scopes from the store; see the module docstring."""

    def __init__(
        self,
        leases: BudgetLeases,
        *,
        owner: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.leases = leases
        self.owner = owner  # the process, for the store's account of who waits (see the module docstring)
        # The clock of the schedulers' tickets too (core.pacing.SystemClock): waiting ages are read from them.
        self.clock = clock
        self.wall = wall  # the clock the store's grants are stamped with (BudgetGrant.at)
        self._scopes: dict[str, SharedScope] = {}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.lease_calls = 0
        self.wasted = 0  # tokens that expired unused
        self.failures = 0
        self.round_trips: deque[float] = deque(maxlen=2000)  # of the latest lease writes, in seconds

    def scope(self, scope: RateScope) -> SharedScope:
        shared = self._scopes.get(scope.key)
        if shared is None:
            shared = self._scopes[scope.key] = SharedScope(scope)
        return shared

    def bucket(
        self, scope: RateScope, now: float, recovery_s: float, arrived: Callable[[TokenBucket], None]
    ) -> TokenBucket:
        """An EditScheduler bucket spending this process's leased tokens of `scope` (SharedBudgets)."""
        bucket = LeasedBucket(scope, now, recovery_s, self.scope(scope), self)
        bucket.shared.listeners_keep.append(lambda: arrived(bucket))
        bucket.shared.buckets.append(bucket)
        return bucket

    def need(self, shared: SharedScope) -> None:
        """Lease more tokens for this scope soon (coalesced with every other scope that needs some)."""
        if self._closed:
            return
        wait = shared.retry_at - self.clock()
        if wait > 0:  # refused a moment ago: ask again when the store said
            if not shared.retry_armed:
                shared.retry_armed = True
                asyncio.get_running_loop().call_later(wait, self._retry, shared)
            return
        self._pending.add(shared.key)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def _retry(self, shared: SharedScope) -> None:
        shared.retry_armed = False
        self.need(shared)

    async def acquire(self, scope: RateScope) -> None:
        """Wait for one token of `scope` and spend it (for callers outside the EditScheduler)."""
        shared = self.scope(scope)
        while True:
            now = self.clock()
            at = shared.first_usable(now)
            if at is not None and at <= now:
                shared.take(now)
                if len(shared.tokens) <= shared.want() // 2:
                    self.need(shared)  # lease ahead, before the last token is gone
                return
            if at is None:
                arrived = asyncio.get_running_loop().create_future()
                shared.listeners.append(functools.partial(_wake, arrived))
                shared.acquiring.append(now)
                self.need(shared)
                try:
                    await arrived
                finally:
                    shared.acquiring.remove(now)
            else:
                await asyncio.sleep(at - now)

    async def _run(self) -> None:
        backoff = 0.05
        while self._pending and not self._closed:
            # At most the store's bound of buckets per lease; the rest go in the next write.
            keys = set(sorted(self._pending)[:MAX_SCOPES_PER_LEASE])
            self._pending -= keys
            self._wake.clear()
            scopes = [self._scopes[k] for k in sorted(keys)]
            sent = self.clock()
            requests = [_sized(s, self._lead(), sent) for s in scopes]
            try:
                grants = await self.leases.lease(requests, owner=self.owner)
            except Exception as exc:  # a store outage: keep asking, gently; requests wait meanwhile
                self.failures += 1
                log.warning("budgets.lease_failed", scopes=len(scopes), error=repr(exc))
                self._pending |= keys
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            received, received_wall = self.clock(), self.wall()
            self.round_trips.append(received - sent)
            # Coalesce: the scopes that run low meanwhile go together in the next write.
            pause = asyncio.create_task(asyncio.sleep(COALESCE_S))
            self.lease_calls += 1
            for shared, grant in zip(scopes, grants, strict=True):
                shared.granted += len(grant.slots)
                if not grant.slots:  # none within the horizon, or older demand elsewhere: ask again later
                    shared.empty_grants += 1
                    shared.retry_at = received + max(0.01, grant.retry_after_s)
                self._add(shared, grant, sent, received, received - (received_wall - grant.at))
                if not grant.slots:
                    self.need(shared)  # arms the retry
            await pause

    def _add(self, shared: SharedScope, grant: BudgetGrant, sent: float, received: float, stamped: float) -> None:
        # The store's `now` lies between sending and receiving: never spend a token before its moment
        # could have come (`received`), nor later than `late` after it could have come (`sent`). The
        # grant's wall-clock stamp, the clock all processes share, says where in between (`stamped`, on
        # this process's clock): then each token is usable for `late` after its moment however long the
        # round trip took (a loaded store answers in more than `late`, which would waste every token).
        earliest, latest = sent, received
        if grant.at > 0:
            earliest = latest = min(max(stamped, sent), received)
        for offset, undo in zip(grant.slots, grant.undo, strict=True):
            usable_from = latest + offset
            usable_until = earliest + offset + shared.late_s
            if usable_until >= usable_from:
                shared.tokens.append(Token(usable_from, usable_until, grant.seq, undo))
            else:
                self.wasted += 1
        listeners, shared.listeners = shared.listeners, []
        for listener in [*listeners, *shared.listeners_keep]:
            listener()

    async def give_back(self) -> int:
        """Return the tokens not yet spent (at shutdown); how many went back. Only the newest lease of a
        scope can be undone in the store (one made after it by another process keeps its tokens)."""
        returned = 0
        for shared in self._scopes.values():
            shared.expire(self.clock())
            if not shared.tokens:
                continue
            newest = shared.tokens[-1].seq
            tail = [t for t in shared.tokens if t.seq == newest]
            shared.tokens.clear()
            try:
                if await self.leases.give_back(shared.key, newest, tail[0].undo):
                    returned += len(tail)
            except Exception as exc:
                log.warning("budgets.give_back_failed", key=shared.key, error=repr(exc))
        return returned

    def _lead(self) -> float:
        """Slots no earlier than the recent median round trip after the store's now: a slot at its very
        now would pass before the answer arrives whenever the store is slower than `late_s`."""
        recent = sorted(list(self.round_trips)[-LEAD_SAMPLES:])
        return min(LEAD_MAX_S, recent[len(recent) // 2]) if recent else 0.0

    def stats(self) -> dict[str, float]:
        """Lease writes, their round trip (p50/p99 of the latest) and the leased tokens that expired unused."""
        trips = sorted(self.round_trips) or [0.0]

        def quantile(q: float) -> float:
            return round(trips[min(len(trips) - 1, int(len(trips) * q))], 4)

        return {
            "leases": self.lease_calls,
            "rtt_p50_s": quantile(0.5),
            "rtt_p99_s": quantile(0.99),
            "wasted": self.wasted,
        }

    async def close(self) -> None:
        # Said at shutdown; a warning when leased tokens went unused (budget the other processes lacked).
        (log.warning if self.wasted else log.info)("budgets.leases", **self.stats())
        busiest = sorted(self._scopes.values(), key=lambda s: s.granted, reverse=True)[:4]
        log.info("budgets.scopes", scopes={s.key: {"granted": s.granted, "empty": s.empty_grants} for s in busiest})
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
        await self.give_back()


class LeasedBucket(TokenBucket):
    """A scheduler bucket whose tokens are the process's leased ones (no local refill).

    The scheduler's order (finals first, then the stalest reply) decides who gets each leased token;
    without one, a waiting request asks the lessor for more and is woken when they arrive.
    """

    __slots__ = ("lessor", "shared", "spent")

    def __init__(self, scope: RateScope, now: float, recovery_s: float, shared: SharedScope, lessor: BudgetLessor):
        super().__init__(scope, now, recovery_s)
        self.shared = shared
        self.lessor = lessor
        self.spent: list[Token] = []  # the latest grants, so an unused one can be refunded

    def _refill(self, now: float) -> None:
        self.lessor.wasted += self.shared.expire(now)
        self.tokens = float(len(self.shared.tokens))

    def _usable(self, at: float, skip: int = 0) -> Token | None:
        for token in self.shared.tokens:
            if token.usable_until >= at:
                if skip == 0:
                    return token
                skip -= 1
        return None

    def ready_at(self, now: float, ticket: _Ticket) -> float:
        self._refill(now)
        at = max(now, self.blocked_until)
        first = self._usable(at)
        if first is None:
            # Lease just in time: a token leased while the request still waits on another scope
            # could expire unused (it may be spent only shortly after its moment).
            # (Other leased scopes without tokens lease in the same store write as this one.)
            others = max(
                (b.ready_at(now, ticket) for b in ticket.buckets if b is not self and not _empty(b, now)),
                default=now,
            )
            if others > now + self.shared.late_s:
                return min(others, now + 0.25)  # look again then (at the latest, in case the other is leasing)
            self.lessor.need(self.shared)
            return float("inf")
        at = max(at, first.usable_from)
        reserved = self._reservation(ticket)
        if reserved is not None and reserved < float("inf"):
            # A better request parked elsewhere will want a token here by `reserved`: leave it one.
            second = self._usable(max(at, reserved), skip=1)
            if second is None or second.usable_from > reserved:
                at = max(at, reserved + 1e-6)
        return self._behind_better(ticket, now, at)

    def take(self, now: float) -> None:
        self._refill(now)
        while self.shared.tokens and self.shared.tokens[0].usable_until < max(now, self.blocked_until):
            self.shared.tokens.popleft()
            self.lessor.wasted += 1
        self.spent.append(self.shared.take(now))
        del self.spent[:-8]
        self.tokens = float(len(self.shared.tokens))
        if len(self.shared.tokens) <= self.shared.want() // 2:
            self.lessor.need(self.shared)  # lease ahead, before the last token is gone

    def refund(self, now: float) -> None:
        if self.spent:
            token = self.spent.pop()
            if token.usable_until >= now:
                self.shared.put_back(token)
        self.tokens = float(len(self.shared.tokens))

    def penalize(self, retry_after: float, now: float) -> None:
        # The platform said wait: tokens that fall due meanwhile are lost (the others' are not ours).
        self.blocked_until = max(self.blocked_until, now + retry_after)


def _empty(bucket: TokenBucket, now: float) -> bool:
    return isinstance(bucket, LeasedBucket) and bucket._usable(max(now, bucket.blocked_until)) is None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _sized(shared: SharedScope, lead_s: float, now: float) -> BudgetRequest:
    r = shared.request
    return BudgetRequest(r.key, r.per_second, r.burst, shared.want(), r.horizon_s, lead_s, shared.waiting(now))


def _age(rank: int, since: float, now: float) -> float:
    """A waiting ticket's age as a lease says it, from its key (`rank` 0: urgent, a final; since -inf:
    STALEST)."""
    age = AGE_MAX_S if since == float("-inf") else max(0.0, now - since)
    return min(AGE_MAX_S, age + (FINAL_HEAD_S if rank == 0 else 0.0))
