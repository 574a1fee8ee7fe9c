"""Stop and Regenerate buttons on Discord replies (message components, custom ids `chatbot:<verb>:<token>`).

A custom id holds at most 100 characters, so a reply's question key travels as a short token that
this process maps back (a restart forgets them: the button then says the reply can't be changed).
Clicks arrive over the gateway as component interactions; the core authorizes and deduplicates them.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import discord
import structlog

from core.controls import REFUSALS, ReplyControls
from core.messages import Actor, IncomingMessage, WorkspaceRef

log = structlog.get_logger(__name__)

PREFIX = "chatbot:"
STOP, REGENERATE, UP, DOWN = "stop", "regen", "up", "down"


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
    """Stop while the reply streams; Regenerate, 👍 and 👎 once it is done."""
    view = discord.ui.View(timeout=None)
    secondary = discord.ButtonStyle.secondary
    shown = (
        [("Regenerate", REGENERATE, secondary), ("👍", UP, secondary), ("👎", DOWN, secondary)]
        if finished
        else [("Stop", STOP, discord.ButtonStyle.danger)]
    )
    for label, verb, style in shown:
        view.add_item(discord.ui.Button(label=label, style=style, custom_id=f"{PREFIX}{verb}:{token}"))
    return view


class ReasonModal(discord.ui.Modal, title="What was wrong?"):
    """After a 👎: an optional reason (the rating is already kept; the reason updates it)."""

    reason: discord.ui.TextInput[ReasonModal] = discord.ui.TextInput(
        label="Reason (optional)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=2000,
        custom_id="reason",
    )

    def __init__(self, save: Callable[[str], Awaitable[object]]) -> None:
        super().__init__(timeout=600)
        self.save = save

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        if self.reason.value:
            await self.save(self.reason.value)


def is_control(interaction: discord.Interaction) -> bool:
    data: Mapping[str, object] = interaction.data or {}
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
    """Acknowledge the click at once (Discord wants an answer within 3 s), then act on it."""
    data: Mapping[str, object] = interaction.data or {}
    _, verb, token = str(data.get("custom_id", "")).split(":", 2)
    key = tokens.key(token)
    click = str(interaction.id)
    if verb in (UP, DOWN):
        result = await controls.rate(ws, actor, key, "up" if verb == UP else "down") if key else "gone"
        if result == "done" and verb == DOWN:  # the modal is the answer to this click
            modal = ReasonModal(lambda reason: controls.rate(ws, actor, key, "down", reason))
            await interaction.response.send_modal(modal)
            return
        await interaction.response.defer()
    elif verb == STOP:
        await interaction.response.defer()
        result = await controls.stop(ws, actor, key, click) if key else "gone"
    else:
        await interaction.response.defer()
        result = await controls.may_regenerate(ws, actor, key, click) if key else "gone"
        question = controls.question(key)
        if result == "done" and question is not None:
            await answer_again(replace(question, message_id=f"{question.message_id}~{click}"), interaction)
    refusal = REFUSALS[result]
    if refusal:
        await interaction.followup.send(refusal, ephemeral=True)
