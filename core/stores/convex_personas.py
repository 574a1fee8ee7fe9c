"""Channel personas in Convex (convex/functions/personas.ts), through the `ConvexStore`'s client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.messages import Actor, WorkspaceRef
from core.stores.convex import ConvexStore, _actor
from core.stores.personas import ChannelPersona


def _persona(data: dict[str, Any]) -> ChannelPersona:
    return ChannelPersona(str(data["channel"]), str(data["systemPrompt"]), str(data["model"]))


class ConvexPersonas:
    def __init__(self, store: ConvexStore) -> None:
        self._store = store

    async def channel_persona(self, ws: WorkspaceRef, channel_id: str) -> ChannelPersona | None:
        data = await self._store._query("personas:get", workspace=ws.key, channel=channel_id)
        return _persona(data) if data else None

    async def channel_personas(self, ws: WorkspaceRef) -> Sequence[ChannelPersona]:
        return [_persona(d) for d in await self._store._query("personas:list", workspace=ws.key)]

    async def set_channel_persona(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        channel_id: str,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
    ) -> ChannelPersona:
        args: dict[str, Any] = {"workspace": ws.key, "actor": _actor(actor), "channel": channel_id}
        if system_prompt is not None:
            args["systemPrompt"] = system_prompt
        if model is not None:
            args["model"] = model
        return _persona(await self._store._mutation("personas:set", **args))
