"""The Discord adapter: discord.py client, Surface, rendering; `run_discord` is the CLI's entry point."""

from bots.discord.server import run_discord

__all__ = ["run_discord"]
