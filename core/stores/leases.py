"""The ports that let several bot processes share one platform and one set of replies.

`BudgetLeases`: every platform budget scope is a token bucket in the store. A process leases a few
tokens at a time (one short write for all the scopes it needs); each token comes with the moment
from which it may be spent, so the tokens of all processes together keep the bucket's window
(at most burst + rate*W in any window W). The unused tail of a lease can be given back. Who gets a
bucket's next tokens is the store's to say, as one process's scheduler says it for its own replies:
a lease names how long its requests have waited, and while another process's demand has waited
longer, only the requests at least as old are leased (`demand_share`, the rule book's "leases").

`StreamLeases`: a streaming reply has an owner and a heartbeat; a live process takes over replies
whose owner stopped heartbeating, and exactly one process wins each. Heartbeats and releases name
each reply's workspace and touch only a reply of that workspace; the take-over sweep is the one call
across workspaces (see `take_over`).

SQLite (one machine, one file) and Convex (any number of machines) implement both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.policy import RULES

_LEASES = RULES["leases"]
DEMAND_TTL_S: float = _LEASES["demand_ttl_s"]  # a demand not said again within this long holds nobody back
MARGIN_S: float = _LEASES["margin_s"]  # demands this close in age are leased as they come
RETRY_S: tuple[float, float] = (_LEASES["retry_s"][0], _LEASES["retry_s"][1])  # a refused lease asks again
OWNERS: int = _LEASES["owners"]  # the most waiting demands a bucket remembers


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    key: str  # the platform scope, e.g. "discord:global"
    per_second: float
    burst: float
    want: int  # tokens wanted (1-100)
    horizon_s: float  # grant no token that may only be spent later than this (after the lead)
    lead_s: float = 0.0  # grant no token earlier than this after the store's now (the round trip)
    # How long each of the process's requests waiting for this scope has waited, longest first (the
    # process's own measure: finals count as older than any interim edit). Empty: leasing ahead.
    waiting: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetGrant:
    key: str
    slots: tuple[float, ...]  # per token: seconds after the store's `now` from which it may be spent
    undo: tuple[float, ...]  # per token: what `give_back` restores to return it and the ones after it
    seq: int  # the bucket's lease number: a give-back applies only while no lease came after it
    retry_after_s: float = 0.0  # when nothing was granted: how long until a token is within the horizon
    at: float = 0.0  # the store's wall clock at the lease (seconds since the epoch; 0: not known)


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat answers about the replies it named."""

    lost: tuple[str, ...] = ()  # no longer this owner's: it must leave them alone
    stop: tuple[str, ...] = ()  # still its own, and someone asked to stop them (core.stores.stops)


@dataclass(frozen=True, slots=True)
class TakenReply:
    reply_id: str
    workspace: str  # the workspace key (WorkspaceRef.key) the reply belongs to


@dataclass(frozen=True, slots=True)
class Demand:
    """A process's requests for a bucket that are still waiting for tokens, as the store keeps it."""

    owner: str
    since: float  # the store's clock: when the oldest of them began waiting
    at: float  # when the owner last said so


class BudgetLeases(Protocol):
    async def lease(self, requests: Sequence[BudgetRequest], *, owner: str = "") -> Sequence[BudgetGrant]:
        """Lease tokens from every named bucket in one write; one grant per request, in order. `owner`
        (the process) is who the requests' `waiting` is remembered for."""
        ...

    async def give_back(self, key: str, seq: int, undo: float) -> bool:
        """Return a lease's unused tail (pass the `undo` of its first unused token); False if too late."""
        ...


class StreamLeases(Protocol):
    async def heartbeat(self, owner: str, replies: Mapping[str, str]) -> Beat:
        """Own (or keep owning) these streaming replies (reply id -> its workspace key); says which
        this owner no longer holds (or are no reply of the workspace named with them), and which of
        the others a Stop was requested for on another process."""
        ...

    async def take_over(
        self, owner: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[TakenReply]:
        """Claim replies whose owner stopped heartbeating `stale_s` ago (or that never had one and
        stopped growing as long ago), of these platforms' workspaces (all if none are named); each is
        won by one caller only. The one sweep across workspaces (a process serves all of its platform's):
        it returns only what finishing needs, each reply's id and workspace, and the finisher then reads
        and writes the reply within that workspace."""
        ...

    async def release(self, owner: str, workspace: str, reply_id: str) -> bool:
        """The owner finished the reply of `workspace`; True if it still held it."""
        ...


def gcra(
    tat: float, now: float, per_second: float, burst: float, want: int, horizon_s: float, lead_s: float = 0.0
) -> tuple[list[float], list[float], float, float]:
    """The generic cell rate algorithm for one lease: (slots, undo, new tat, retry after).

    `tat` is the bucket's theoretical arrival time of its next token. The Convex function
    (convex/functions/leases.ts) computes the same; the contract suite runs both.
    """
    interval = 1.0 / per_second
    tolerance = (burst - 1.0) * interval
    slots: list[float] = []
    undo: list[float] = []
    nxt = tat
    while len(slots) < want:
        slot = max(now + lead_s, nxt - tolerance)
        if slot - now > horizon_s + lead_s:
            break
        undo.append(nxt)
        slots.append(slot - now)
        nxt = max(nxt, slot) + interval
    retry = max(0.0, nxt - tolerance - now - horizon_s - lead_s) if not slots else 0.0
    return slots, undo, nxt, retry


def demand_share(
    demands: Sequence[Demand], owner: str, waiting: Sequence[float], want: int, now: float
) -> tuple[int, list[Demand]]:
    """How many tokens a lease of `owner` may take now, and the bucket's other live demands.

    While another owner's demand, said within DEMAND_TTL_S, has waited longer than this lease's
    requests (by more than MARGIN_S), only the requests at least that old are leased: the scope's
    next tokens go to the stalest request of all the processes, as one process's scheduler gives
    its own. An owner without a name is remembered for nobody. The Convex function
    (convex/functions/leases.ts) computes the same; the contract suite runs both.
    """
    others = [d for d in demands if d.owner != owner and d.at >= now - DEMAND_TTL_S]
    if not others:
        return want, others
    rival = max(now - d.since for d in others)
    return min(want, sum(1 for age in waiting if age >= rival - MARGIN_S)), others


def remember_demand(
    others: list[Demand], owner: str, waiting: Sequence[float], granted: int, now: float
) -> list[Demand]:
    """The bucket's demands after a lease that granted `granted` tokens: the owner's requests left
    waiting (if any) are remembered by the oldest of them; the most recently said OWNERS are kept."""
    kept = list(others)
    if owner and len(waiting) > granted:
        kept.append(Demand(owner, now - waiting[granted], now))
    return sorted(kept, key=lambda d: d.at, reverse=True)[:OWNERS]


def refused_retry_s(tat: float, now: float, per_second: float, burst: float) -> float:
    """When a lease refused for older demand elsewhere asks again: about when the bucket's next token
    is due (that demand's owner takes it meanwhile), within RETRY_S."""
    due = tat - (burst - 1.0) / per_second - now
    return min(RETRY_S[1], max(RETRY_S[0], due))
