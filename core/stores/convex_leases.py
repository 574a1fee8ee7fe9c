"""Budget and reply leases in Convex (convex/functions/leases.ts), shared by every process on a deployment.

It speaks through the `ConvexStore`'s client, so it shares its service secret, retries and errors.
A retried lease that did land only wastes its tokens (never over-spends); take-overs and releases
carry a request id so a retry gets the first answer back instead of losing what was won.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.stores.convex import ConvexStore
from core.stores.leases import Beat, BudgetGrant, BudgetRequest, TakenReply


class ConvexLeases:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def lease(self, requests: Sequence[BudgetRequest], *, owner: str = "") -> Sequence[BudgetGrant]:
        if not requests:
            return []
        items = [
            {"key": r.key, "perSecond": r.per_second, "burst": r.burst, "want": r.want, "horizonS": r.horizon_s}
            | ({"leadS": r.lead_s} if r.lead_s else {})
            | ({"waiting": list(r.waiting)} if r.waiting else {})
            for r in requests
        ]
        named = {"owner": owner} if owner else {}
        rows = await self._store._mutation("leases:take", once=False, items=items, **named)
        return [
            BudgetGrant(
                row["key"],
                tuple(float(s) for s in row["slots"]),
                tuple(float(u) for u in row["undo"]),
                int(row["seq"]),
                float(row["retryAfterS"]),
                float(row["at"]),
            )
            for row in rows
        ]

    async def give_back(self, key: str, seq: int, undo: float) -> bool:
        return bool(await self._store._mutation("leases:giveBack", once=False, key=key, seq=seq, tat=undo))

    async def heartbeat(self, owner: str, replies: Mapping[str, str]) -> Beat:
        if not replies:
            return Beat()
        items = [{"workspace": workspace, "reply": reply} for reply, workspace in replies.items()]
        beat = await self._store._mutation("leases:heartbeat", once=False, owner=owner, replies=items)
        return Beat(tuple(str(r) for r in beat["lost"]), tuple(str(r) for r in beat["stop"]))

    async def take_over(
        self, owner: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[TakenReply]:
        taken = await self._store._mutation(
            "leases:takeOver", owner=owner, staleS=stale_s, limit=limit, platforms=list(platforms)
        )
        return [TakenReply(str(r["reply"]), str(r["workspace"])) for r in taken]

    async def release(self, owner: str, workspace: str, reply_id: str) -> bool:
        return bool(await self._store._mutation("leases:release", owner=owner, workspace=workspace, reply=reply_id))

    async def close(self) -> None:
        """The store owns the client and closes it."""
