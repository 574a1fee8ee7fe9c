"""Feedback in Convex (convex/functions/feedback.ts), through the `ConvexStore`'s client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.messages import Actor, WorkspaceRef
from core.stores.convex import ConvexStore, _actor
from core.stores.feedback import Feedback, Rating


class ConvexFeedback:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def add_feedback(self, ws: WorkspaceRef, feedback: Feedback) -> None:
        f = feedback
        await self._store._mutation(
            "feedback:add",
            workspace=ws.key,
            replyKey=f.reply_key,
            user=f.user_id,
            rating=f.rating,
            reason=f.reason,
            question=f.question,
            answer=f.answer,
            sources=list(f.sources),
            model=f.model,
        )

    async def recent_feedback(
        self, ws: WorkspaceRef, actor: Actor, *, rating: Rating = "down", limit: int = 10, before: float | None = None
    ) -> Sequence[Feedback]:
        args: dict[str, Any] = {"workspace": ws.key, "actor": _actor(actor), "rating": rating, "limit": limit}
        if before is not None:
            args["before"] = before
        rows = await self._store._mutation("feedback:recent", **args)
        return [
            Feedback(
                r["replyKey"],
                r["user"],
                r["rating"],
                r["question"],
                r["answer"],
                tuple(r["sources"]),
                r["model"],
                r["reason"],
                float(r["at"]),
            )
            for r in rows
        ]
