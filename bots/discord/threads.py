"""Busy channels move into threads.

One channel's message bucket serves one write a second (bots/discord/limits.py). With more replies
in flight in a channel than that serves smoothly, every reply there goes stale for longer; a thread
has buckets of its own. So, as the server's `threads` setting says, every question gets a thread
(always), none does (never: the replies wait their turn in the channel), or a question gets one
only while its channel is busy (auto, the default). The channel hears
about it in one short line, at most once per busy spell, and follow-ups in the bot's thread need no
mention (the client treats a thread the bot owns as addressed to it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import discord
import structlog

from bots.discord import limits
from core.pacing import EditScheduler, within_budget
from core.surface import RateLimited

log = structlog.get_logger(__name__)

BUSY_NOTICE = "It's busy in here, so I'm answering new questions in threads."
NOTICE_EVERY_S = 600.0  # one line per busy spell, not one per question


class BusyChannels:
    """Replies in flight per channel, and the thread a new question gets when its channel is busy."""

    def __init__(
        self,
        scheduler: EditScheduler,
        *,
        smooth: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        # More replies in flight than this, and the next question moves into a thread.
        self.smooth = limits.replies_served_smoothly() if smooth is None else smooth
        self.clock = clock
        self._live: Counter[int] = Counter()
        self._noticed: dict[int, float] = {}
        self.moved = 0

    def busy(self, channel_id: int) -> bool:
        return self._live[channel_id] >= self.smooth

    def done(self, channel_id: int) -> None:
        """A reply counted by `place` (answered in its channel) has finished."""
        self._live[channel_id] -= 1
        if self._live[channel_id] <= 0:
            del self._live[channel_id]

    async def place(self, message: discord.Message, name: str, *, mode: str) -> tuple[discord.Thread | None, bool]:
        """(a thread from the question, or None to answer in place; whether the reply was counted as
        in flight in its channel, in which case the caller calls `done` when it ends).

        The decision and the count happen together, before any await, so a burst of questions in one
        channel sees the replies ahead of it."""
        if message.guild is None or isinstance(message.channel, discord.Thread):
            return None, False
        channel_id = message.channel.id
        always = mode == "always"
        moved_for_load = mode == "auto" and self.busy(channel_id)
        if not always and not moved_for_load:
            self._live[channel_id] += 1
            return None, True

        async def create() -> discord.Thread:
            try:
                return await message.create_thread(name=(name or "Question")[:90], auto_archive_duration=1440)
            except discord.RateLimited as exc:
                raise RateLimited(exc.retry_after, limits.thread_scopes(channel_id)[0].key) from exc

        try:
            thread = await within_budget(self.scheduler, limits.thread_scopes(channel_id), create)
        except discord.HTTPException as exc:  # no permission to create threads: answer in the channel
            log.warning("discord.thread_failed", error=str(exc))
            self._live[channel_id] += 1
            return None, True
        if moved_for_load:
            self.moved += 1
            await self._say_once(message.channel, channel_id)
        return thread, False

    async def _say_once(self, channel: discord.abc.Messageable, channel_id: int) -> None:
        now = self.clock()
        if now - self._noticed.get(channel_id, float("-inf")) < NOTICE_EVERY_S:
            return
        self._noticed[channel_id] = now

        async def send() -> None:
            try:
                await channel.send(BUSY_NOTICE, allowed_mentions=discord.AllowedMentions.none())
            except discord.RateLimited as exc:
                raise RateLimited(exc.retry_after, limits.message_scopes(channel_id)[0].key) from exc

        try:
            await within_budget(self.scheduler, limits.message_scopes(channel_id), send, final=False)
        except discord.HTTPException as exc:
            log.warning("discord.busy_notice_failed", error=str(exc))
