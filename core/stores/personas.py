"""The channel-persona port: a system prompt and a model per channel, set by admins.

A question in a channel (or in a thread of it) uses the channel's; the workspace settings apply
where a channel has none. Writes check manage_settings inside the store's own write, are audited,
and are bounded exactly as the workspace's own system_prompt and model settings are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.messages import Actor, WorkspaceRef


@dataclass(frozen=True, slots=True)
class ChannelPersona:
    channel_id: str
    system_prompt: str = ""  # empty: the workspace's
    model: str = ""  # empty: the workspace's (or the configured default)


class ChannelPersonas(Protocol):
    async def channel_persona(self, ws: WorkspaceRef, channel_id: str) -> ChannelPersona | None: ...

    async def channel_personas(self, ws: WorkspaceRef) -> Sequence[ChannelPersona]: ...

    async def set_channel_persona(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        channel_id: str,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
    ) -> ChannelPersona:
        """Change the given fields (an empty string clears one); needs manage_settings; audited."""
        ...
