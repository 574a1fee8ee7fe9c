"""Reply controls in Convex (convex/functions/controls.ts), through the `ConvexStore`'s client."""

from __future__ import annotations

from core.messages import WorkspaceRef
from core.stores.controls import ReplyControl
from core.stores.convex import ConvexStore


class ConvexControls:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def put_control(self, ws: WorkspaceRef, control: ReplyControl) -> None:
        c = control
        # Idempotent by its arguments: a retried put writes the same record again.
        await self._store._mutation(
            "controls:put",
            once=False,
            workspace=ws.key,
            ref=c.ref,
            asker=c.asker,
            question=c.question,
            context=c.context,
            state=c.state,
            answer=c.answer,
            sources=list(c.sources),
            model=c.model,
        )

    async def control(self, ws: WorkspaceRef, ref: str) -> ReplyControl | None:
        row = await self._store._query("controls:get", workspace=ws.key, ref=ref)
        if not row:
            return None
        return ReplyControl(
            row["ref"],
            row["asker"],
            row["question"],
            row["context"],
            row["state"],
            row["answer"],
            tuple(row["sources"]),
            row["model"],
            float(row["updatedAt"]),
        )
