"""The "Summarize thread" message menu: summarize the chosen message's thread or reply chain.

Discord delivers it as an APPLICATION_COMMAND interaction of type 3 (a message target). The summary
is the plain "summarize this thread" question, with the chosen message and what it continues (its
thread's recent messages, or its reply chain) as the history, answered as a reply to that message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bots.discord.client import ChatbotClient

NAME = "Summarize thread"


def summarize_menu(client: ChatbotClient) -> app_commands.ContextMenu:
    async def summarize(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message("Summarizing…", ephemeral=True)
        client.spawn(client.summarize(interaction, message))

    return app_commands.guild_only(app_commands.ContextMenu(name=NAME, callback=summarize))
