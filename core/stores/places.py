"""The ReplyPlaces port: where each reply is on its platform, stored when it is first posted.

A reply's place (the adapter's JSON: channel, message ids, open native streams) is written at its
first post and again when another part is posted, and dropped when the reply ends normally. A place
still present for a reply that no live process is streaming is how a later run (or, with stream
leases, another process) finds the message to finish on the platform (core.recovery).

Every call names the workspace (its key): a place is kept only for a reply of that workspace, and
another workspace's place reads as absent and cannot be forgotten through this one. The one call
across workspaces, the recovery sweep's `stale_places`, says only which reply of which workspace has
a place kept for long; the place itself is then read within that workspace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ReplyPlace:
    reply_id: str
    workspace: str  # the workspace key (WorkspaceRef.key) of the reply
    platform: str  # core.messages.Platform value
    place: str  # the adapter's JSON, opaque to the core
    updated_at: float


@dataclass(frozen=True, slots=True)
class StalePlace:
    """A reply whose place was kept for long: which reply of which workspace, not where it is."""

    reply_id: str
    workspace: str
    updated_at: float


class ReplyPlaces(Protocol):
    async def put_place(self, reply_id: str, workspace: str, platform: str, place: str, *, answers: str = "") -> None:
        """Create or replace the place of a reply of `workspace` (StoreError "not_found" if it is none).
        `answers`: the event key of the question this is the first post of; the same write ends that
        question's hold (core.stores.questions): from now on the reply is what a takeover finishes."""
        ...

    async def place(self, workspace: str, reply_id: str) -> ReplyPlace | None: ...

    async def forget_place(self, workspace: str, reply_id: str) -> None:
        """The reply ended on the platform (normally or finished by recovery): nothing left to find."""
        ...

    async def stale_places(
        self, older_than_s: float, platforms: Sequence[str], *, limit: int = 100
    ) -> Sequence[StalePlace]:
        """Replies of these platforms (in any workspace) whose place was kept for `older_than_s`, oldest
        first: the recovery sweep's candidates, each then read and finished within its own workspace."""
        ...
