"""The ReplyStops port: a Stop clicked on one process for a reply another process streams.

A reply's buttons carry its `ref` (core.controls.reply_ref). The process streaming a reply notes in
the store which reply answers that ref and who asked (`streaming`). A Stop that lands on another
process asks the store (`request_stop`): the store, not the clicking process, judges it, in one
transaction: the reply must still be streaming in this workspace, and the clicker must be the asker
or hold `control_others_replies` (core/policy/rules.json, the rule the same-process Stop applies).
The streaming process learns of the request through its next reply heartbeat
(core.stores.leases.Beat.stop) and stops the reply exactly as a local Stop does.

Rows only need to outlive their reply: each `streaming` call prunes a few older than the rule book's
`retention.reply_stops_s` (a day: far longer than any reply streams).
"""

from __future__ import annotations

from typing import Literal, Protocol

from core.messages import Actor, WorkspaceRef

# stopping: recorded, the streaming process stops it at its next heartbeat; duplicate: a Stop was
# recorded already; not_allowed: not the asker, and below the rule's role; ended: not streaming (any more).
StopAnswer = Literal["stopping", "duplicate", "not_allowed", "ended"]


class ReplyStops(Protocol):
    async def streaming(self, ws: WorkspaceRef, ref: str, reply_id: str, asker: str) -> None:
        """Reply `reply_id` of `ws` (streaming) answers the question whose buttons carry `ref`, asked by
        `asker` (a user id). StoreError "not_found" if it is no reply of that workspace."""
        ...

    async def request_stop(self, ws: WorkspaceRef, actor: Actor, ref: str) -> StopAnswer:
        """Ask the process streaming reply `ref` of `ws` to stop it, if `actor` may."""
        ...
