"""ReplyStops in Convex (convex/functions/stops.ts), through the `ConvexStore`'s client."""

from __future__ import annotations

from typing import cast

from core.messages import Actor, WorkspaceRef
from core.stores.convex import ConvexStore, _actor
from core.stores.stops import StopAnswer


class ConvexStops:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def streaming(self, ws: WorkspaceRef, ref: str, reply_id: str, asker: str) -> None:
        # Idempotent by its arguments: a retried note writes the same row again.
        await self._store._mutation(
            "stops:streaming", once=False, workspace=ws.key, ref=ref, reply=reply_id, asker=asker
        )

    async def request_stop(self, ws: WorkspaceRef, actor: Actor, ref: str) -> StopAnswer:
        # A retry of a request that landed gets its first answer back (the call's request id).
        answer = await self._store._mutation("stops:request", workspace=ws.key, actor=_actor(actor), ref=ref)
        return cast(StopAnswer, str(answer))
