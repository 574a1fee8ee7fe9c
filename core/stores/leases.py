"""The ports that let several bot processes share one platform and one set of replies.

`BudgetLeases`: every platform budget scope is a token bucket in the store. A process leases a few
tokens at a time (one short write for all the scopes it needs); each token comes with the moment
from which it may be spent, so the tokens of all processes together keep the bucket's window
(at most burst + rate*W in any window W). The unused tail of a lease can be given back.

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


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    key: str  # the platform scope, e.g. "discord:global"
    per_second: float
    burst: float
    want: int  # tokens wanted (1-100)
    horizon_s: float  # grant no token that may only be spent later than this (after the lead)
    lead_s: float = 0.0  # grant no token earlier than this after the store's now (the round trip)


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


class BudgetLeases(Protocol):
    async def lease(self, requests: Sequence[BudgetRequest]) -> Sequence[BudgetGrant]:
        """Lease tokens from every named bucket in one write; one grant per request, in order."""
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
