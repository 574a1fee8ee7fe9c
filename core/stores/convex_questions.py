"""Question holds in Convex (convex/functions/questions.ts), shared by every process on a deployment.

It speaks through the `ConvexStore`'s client (its secret, retries and errors). A retried hold that
did land is recognised as the owner's own (True again); take-overs and releases carry a request id,
so a retry gets the first answer back instead of losing what was won.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.stores.convex import ConvexStore
from core.stores.questions import HeldQuestion


class ConvexQuestions:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def hold(self, owner: str, claimant: str, question: HeldQuestion) -> bool:
        q = question
        return bool(
            await self._store._mutation(
                "questions:hold",
                once=False,
                owner=owner,
                claimant=claimant,
                key=q.key,
                workspace=q.workspace,
                message=q.message,
                place=q.place,
            )
        )

    async def heartbeat(self, owner: str, keys: Mapping[str, str]) -> Sequence[str]:
        if not keys:
            return []
        holds = [{"workspace": workspace, "key": key} for key, workspace in keys.items()]
        lost = await self._store._mutation("questions:heartbeat", once=False, owner=owner, holds=holds)
        return [str(k) for k in lost]

    async def take_over(
        self, owner: str, claimant: str, stale_s: float, limit: int = 50, platforms: Sequence[str] = ()
    ) -> Sequence[HeldQuestion]:
        rows = await self._store._mutation(
            "questions:takeOver",
            owner=owner,
            claimant=claimant,
            staleS=stale_s,
            limit=limit,
            platforms=list(platforms),
        )
        return [HeldQuestion(str(r["key"]), str(r["workspace"]), str(r["message"]), str(r["place"])) for r in rows]

    async def release(self, owner: str, workspace: str, key: str) -> bool:
        return bool(await self._store._mutation("questions:release", owner=owner, workspace=workspace, key=key))

    async def close(self) -> None:
        """The store owns the client and closes it."""
