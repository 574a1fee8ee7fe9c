"""Stop and Regenerate buttons on Discord replies (message components, custom ids `chatbot:<verb>:<ref>`).

A custom id holds at most 100 characters: a reply's buttons carry its short ref (core.controls.reply_ref),
which the store maps to what a click needs, so the buttons keep working after a restart. Clicks arrive
over the gateway as component interactions; the core authorizes and deduplicates them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import discord
import structlog

from core.controls import REFUSALS, ReplyControls
from core.messages import Actor, IncomingMessage, WorkspaceRef

log = structlog.get_logger(__name__)

PREFIX = "chatbot:"
STOP, REGENERATE, UP, DOWN = "stop", "regen", "up", "down"


def control_view(ref: str, *, finished: bool) -> discord.ui.View:
    """Stop while the reply streams; Regenerate, 👍 and 👎 once it is done."""
    view = discord.ui.View(timeout=None)
    secondary = discord.ButtonStyle.secondary
    shown = (
        [("Regenerate", REGENERATE, secondary), ("👍", UP, secondary), ("👎", DOWN, secondary)]
        if finished
        else [("Stop", STOP, discord.ButtonStyle.danger)]
    )
    for label, verb, style in shown:
        view.add_item(discord.ui.Button(label=label, style=style, custom_id=f"{PREFIX}{verb}:{ref}"))
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
    ws: WorkspaceRef,
    actor: Actor,
    answer_again: Answer,
) -> None:
    """Acknowledge the click at once (Discord wants an answer within 3 s), then act on it."""
    data: Mapping[str, object] = interaction.data or {}
    _, verb, ref = str(data.get("custom_id", "")).split(":", 2)
    click = str(interaction.id)
    if verb in (UP, DOWN):
        result = await controls.rate(ws, actor, ref, "up" if verb == UP else "down")
        if result == "done" and verb == DOWN:  # the modal is the answer to this click
            modal = ReasonModal(lambda reason: controls.rate(ws, actor, ref, "down", reason))
            await interaction.response.send_modal(modal)
            return
        await interaction.response.defer()
    elif verb == STOP:
        await interaction.response.defer()
        result = await controls.stop(ws, actor, ref, click)
    else:
        await interaction.response.defer()
        again = await controls.regenerate(ws, actor, ref, click)
        result = again.result
        if again.question is not None:
            await answer_again(again.question, interaction)
    refusal = REFUSALS[result]
    if refusal:
        await interaction.followup.send(refusal, ephemeral=True)
