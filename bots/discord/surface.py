"""Where one reply appears on Discord: a channel or thread, as a reply to the question."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import discord

from bots.discord.render import sources_text, tables_to_code
from core.messages import Source
from core.surface import Operation, RateLimited, RateScope

# Discord allows 5 message creates/edits per 5 s per channel, and 50 requests/s per bot.
# A bucket of rate r and burst b admits b + r*W in a window W: stay just inside both.
GLOBAL_SCOPE = RateScope("discord:global", per_second=44.0, burst=5.0)
MAX_CONTENT = 2000


class DiscordSurface:
    max_chars = MAX_CONTENT

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        channel_id: int,
        reply_to: discord.Message | None = None,
        on_posted: Callable[[discord.Message], None] | None = None,
        interaction: discord.Interaction | None = None,
    ) -> None:
        self.channel = channel
        self.reply_to = reply_to
        self.on_posted = on_posted
        self.interaction = interaction
        self._scopes = (RateScope(f"discord:channel:{channel_id}", per_second=0.75, burst=1.0), GLOBAL_SCOPE)
        self._messages: dict[str, discord.Message] = {}

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return self._scopes

    @staticmethod
    def _embed(sources: Sequence[Source]) -> discord.Embed | None:
        return discord.Embed(title="Sources", description=sources_text(sources)) if sources else None

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        try:
            message = await self.channel.send(
                content=tables_to_code(text)[:MAX_CONTENT],
                embed=self._embed(sources),  # type: ignore[arg-type]
                reference=self.reply_to if not self._messages else None,  # only the first part replies
                mention_author=False,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after, self._scopes[0].key) from exc
        self._messages[str(message.id)] = message
        if self.on_posted is not None:
            self.on_posted(message)
        return str(message.id)

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        message = self._messages[message_id]
        try:
            self._messages[message_id] = await message.edit(
                content=tables_to_code(text)[:MAX_CONTENT], embed=self._embed(sources)
            )
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after, self._scopes[0].key) from exc

    async def thinking(self) -> None:
        if isinstance(self.channel, discord.abc.Messageable) and self.interaction is None:
            await self.channel.typing()

    async def notice(self, text: str) -> None:
        if self.interaction is not None:
            await self.interaction.followup.send(text, ephemeral=True)
            return
        # Ordinary messages have no ephemeral replies on Discord: a short reply to the question instead.
        await self.channel.send(
            content=text, reference=self.reply_to, mention_author=False, allowed_mentions=discord.AllowedMentions.none()
        )
