"""ReplyPlaces in Convex (convex/functions/places.ts): any process on the deployment can find where a
reply is on its platform, so a live process can finish a dead one's reply there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.stores.convex import ConvexStore
from core.stores.places import ReplyPlace, StalePlace


def _place(row: dict[str, Any]) -> ReplyPlace:
    return ReplyPlace(row["reply"], row["workspace"], row["platform"], row["place"], float(row["updatedAt"]))


class ConvexPlaces:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store  # its client, secret, retries and errors

    async def put_place(self, reply_id: str, workspace: str, platform: str, place: str, *, answers: str = "") -> None:
        # Idempotent by its arguments: a retried put writes the same place again.
        extra = {"answers": answers} if answers else {}
        await self._store._mutation(
            "places:put", once=False, reply=reply_id, workspace=workspace, platform=platform, place=place, **extra
        )

    async def place(self, workspace: str, reply_id: str) -> ReplyPlace | None:
        row = await self._store._query("places:get", workspace=workspace, reply=reply_id)
        return _place(row) if row else None

    async def forget_place(self, workspace: str, reply_id: str) -> None:
        await self._store._mutation("places:forget", once=False, workspace=workspace, reply=reply_id)

    async def stale_places(
        self, older_than_s: float, platforms: Sequence[str], *, limit: int = 100
    ) -> Sequence[StalePlace]:
        rows = await self._store._query("places:stale", olderThanS=older_than_s, platforms=list(platforms), limit=limit)
        return [StalePlace(r["reply"], r["workspace"], float(r["updatedAt"])) for r in rows]

    async def close(self) -> None:
        """The store owns the client and closes it."""
