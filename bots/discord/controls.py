"""Stop and Regenerate buttons on Discord replies (message components, custom ids `chatbot:<verb>:<token>`).

A custom id holds at most 100 characters, so a reply's question key travels as a short token that
this process maps back (a restart forgets them: the button then says the reply can't be changed).
Clicks arrive over the gateway as component interactions; the core authorizes and deduplicates them.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace

import discord
import structlog

from core.controls import REFUSALS, ReplyControls
from core.messages import Actor, IncomingMessage, WorkspaceRef

log = structlog.get_logger(__name__)

PREFIX = "chatbot:"
STOP, REGENERATE = "stop", "regen"


class ControlTokens:
    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._next = itertools.count(1)

    def token(self, key: str) -> str:
        token = format(next(self._next), "x")
        self._keys[token] = key
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return token

    def key(self, token: str) -> str:
        return self._keys.get(token, "")


def control_view(token: str, *, finished: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if finished:
        button = discord.ui.Button(
            label="Regenerate", style=discord.ButtonStyle.secondary, custom_id=f"{PREFIX}{REGENERATE}:{token}"
        )
    else:
        button = discord.ui.Button(label="Stop", style=discord.ButtonStyle.danger, custom_id=f"{PREFIX}{STOP}:{token}")
    view.add_item(button)
    return view


def is_control(interaction: discord.Interaction) -> bool:
    data = interaction.data or {}
    return interaction.type is discord.InteractionType.component and str(data.get("custom_id", "")).startswith(PREFIX)


Answer = Callable[[IncomingMessage, discord.Interaction], Awaitable[None]]


async def handle_click(
    interaction: discord.Interaction,
    controls: ReplyControls,
    tokens: ControlTokens,
    ws: WorkspaceRef,
    actor: Actor,
    answer_again: Answer,
) -> None:
    """Acknowledge the click at once (Discord wants an answer within 3 s), then stop or answer again."""
    await interaction.response.defer()
    _, verb, token = str((interaction.data or {}).get("custom_id", "")).split(":", 2)
    key = tokens.key(token)
    click = str(interaction.id)
    if verb == STOP:
        result = await controls.stop(ws, actor, key, click) if key else "gone"
    else:
        result = await controls.may_regenerate(ws, actor, key, click) if key else "gone"
        question = controls.question(key)
        if result == "done" and question is not None:
            await answer_again(replace(question, message_id=f"{question.message_id}~{click}"), interaction)
    refusal = REFUSALS[result]
    if refusal:
        await interaction.followup.send(refusal, ephemeral=True)
