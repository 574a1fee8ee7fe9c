"""The QuestionHolds port: a claimed question is held by its process until its answer is on the platform.

An event's claim (one reply per event, across processes) comes with a hold: the claiming process
(`owner`), a heartbeat, the question itself and where to answer it. The hold ends when the answer's
first post is stored as the reply's place (core.stores.places: the same write ends it), or when the
question is settled without an answer (refused, ignored). A process that dies in between has shown
nothing yet: once its holds go stale, one live process takes each over (the store decides) and
answers the question itself. From the first post on, a dead owner's reply is a stream lease's
business instead (core.stores.leases): it is finished with an "interrupted" marker, not re-answered.

SQLite (one machine, one file) and Convex (any number of machines) implement it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HeldQuestion:
    key: str  # the event key (IncomingMessage.event_key)
    workspace: str  # the workspace key
    message: str  # the question, encoded (core.messages.encode_message)
    place: str  # where to answer it: the adapter's JSON (core.surface.Placed)


class QuestionHolds(Protocol):
    async def hold(self, owner: str, claimant: str, question: HeldQuestion) -> bool:
        """Claim the question's event and hold it for `owner` (the process). True for the first
        claimant, and again for the hold's claimant (the attempt's own retry, or the process that took
        it over); False for anyone else (a duplicate delivery, even to the same process)."""
        ...

    async def heartbeat(self, owner: str, keys: Mapping[str, str]) -> Sequence[str]:
        """Keep holding these questions (event key -> its workspace key); returns the keys this owner no
        longer holds (or that are no hold of the workspace named with them)."""
        ...

    async def take_over(
        self, owner: str, claimant: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[HeldQuestion]:
        """Hold the questions whose owner stopped heartbeating `stale_s` ago, of these platforms'
        workspaces (all if none are named), for `claimant` now; each is won by one caller only."""
        ...

    async def release(self, owner: str, workspace: str, key: str) -> bool:
        """The question was settled without a posted answer; True if this owner still held it."""
        ...
