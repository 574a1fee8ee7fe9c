"""Busy channels move into threads.

One channel's message bucket serves one write a second (bots/discord/limits.py). With more replies
in flight in a channel than that serves smoothly, every reply there goes stale for longer; a thread
has buckets of its own. So, as the server's `threads` setting says, every question gets a thread
(always), none does (never: the replies wait their turn in the channel), or a question gets one
only while its channel is busy (auto, the default). The thread is opened when the reply is first
posted, not when the question comes: the question is held first (core.handover), so a process taking
it over opens the thread (or finds it) itself. Until then the reply waits for its first post in
the budget of the thread it is expected to go in (a thread started from a message has its id), not
in the busy channel's queue it is moved out of. The channel hears about it in one short line, at
most once per busy spell, sent on the side: the reply does not wait for it. Follow-ups in the bot's
thread need no mention (the client treats a thread the bot owns as addressed to it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import structlog

from bots.discord import limits
from core.pacing import EditScheduler, within_budget
from core.stores.base import WorkspaceSettings
from core.surface import RateLimited

log = structlog.get_logger(__name__)

BUSY_NOTICE = "It's busy in here, so I'm answering new questions in threads."
NOTICE_EVERY_S = 600.0  # one line per busy spell, not one per question
THREAD_EXISTS = 160004  # Discord's error code: a thread has already been created for this message
DEFAULT_MODE = WorkspaceSettings().threads  # a server's `threads` setting before this process has read it


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    """A question that may get a thread of its own, opened when its reply is first posted."""

    guild: int
    channel: int  # the channel the question was asked in
    message: int  # the question (the thread's starter message: the thread gets its id)
    name: str
    moved: bool  # its channel was busy when it came (the `auto` setting moves it)
    # The server's `threads` setting as last read here: where the first post is expected to go, so it
    # waits in that channel's budget. The setting read when the thread is opened decides.
    mode: str = DEFAULT_MODE

    def opens(self, mode: str) -> bool:
        """Whether the question gets its thread under the `threads` setting `mode`."""
        return mode != "never" and (mode == "always" or self.moved)

    @property
    def expected(self) -> bool:
        """A thread is expected (the setting as last read gives it one)."""
        return self.opens(self.mode)

    def place(self) -> dict[str, Any]:
        """Kept in the reply's place, so a process taking the question over opens the same thread."""
        return {
            "guild": str(self.guild),
            "message": str(self.message),
            "name": self.name,
            "moved": self.moved,
            "mode": self.mode,
        }

    @classmethod
    def from_place(cls, channel: int, data: dict[str, Any]) -> ThreadPlan:
        mode = str(data.get("mode") or DEFAULT_MODE)  # places kept before the mode was stored: the default
        return cls(int(data["guild"]), channel, int(data["message"]), str(data["name"]), bool(data["moved"]), mode)


class BusyChannels:
    """Replies in flight per channel, and the thread a new question gets when its channel is busy."""

    def __init__(
        self,
        scheduler: EditScheduler,
        spawn: Callable[[Awaitable[None]], None],
        *,
        smooth: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.spawn = spawn  # runs the busy notice on the side, tracked (the client drains it at shutdown)
        # More replies in flight than this, and the next question moves into a thread.
        self.smooth = limits.replies_served_smoothly() if smooth is None else smooth
        self.clock = clock
        self._live: Counter[int] = Counter()
        self._noticed: dict[int, float] = {}
        self._modes: dict[int, str] = {}  # guild -> its `threads` setting, as last read when opening
        self.moved = 0

    def busy(self, channel_id: int) -> bool:
        return self._live[channel_id] >= self.smooth

    def done(self, channel_id: int) -> None:
        """A reply counted by `place` (answered in its channel) has finished."""
        self._live[channel_id] -= 1
        if self._live[channel_id] <= 0:
            del self._live[channel_id]

    def plan(self, message: discord.Message, name: str) -> tuple[ThreadPlan | None, bool]:
        """(the question's thread plan, or None: it is answered in place; whether the reply was counted
        as in flight in its channel, in which case the caller calls `done` when it ends).

        Nothing is awaited here: the question is claimed and held first (core.handover), and its thread
        is opened only when its reply is first posted (`open`). The busy decision and the count happen
        together, so a burst of questions in one channel sees the replies ahead of it."""
        if message.guild is None or isinstance(message.channel, discord.Thread):
            return None, False
        channel_id = message.channel.id
        moved = self.busy(channel_id)
        if not moved:
            self._live[channel_id] += 1
        guild_id = message.guild.id
        mode = self._modes.get(guild_id, DEFAULT_MODE)
        plan = ThreadPlan(guild_id, channel_id, message.id, (name or "Question")[:90], moved, mode)
        return plan, not moved

    async def open(self, plan: ThreadPlan, mode: str, client: discord.Client) -> discord.abc.Messageable | None:
        """The thread the question's reply goes in, as the `threads` setting (`mode`) says: always, never,
        or if its channel was busy when it came (auto); None to answer in the channel. A thread started
        from a message has that message's id, and Discord starts one per message only: when another
        process (or this question's earlier owner) started it already, the reply goes there too.
        By ids alone (REST): a process taking the question over may not have the guild in its cache.
        The channel's busy notice goes on the side: the reply's first post does not wait for it."""
        self._modes[plan.guild] = mode
        if not plan.opens(mode):
            return None
        scopes = limits.thread_scopes(plan.channel)

        async def create() -> object:
            try:
                return await client.http.start_thread_with_message(
                    plan.channel, plan.message, name=plan.name, auto_archive_duration=1440
                )
            except discord.RateLimited as exc:
                raise RateLimited(exc.retry_after, scopes[0].key) from exc

        try:
            await within_budget(self.scheduler, scopes, create)
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:
                log.warning("discord.thread_failed", error=str(exc))  # no permission: answer in the channel
                return None
        if plan.moved and mode != "always":
            self.moved += 1
            self._say_once(client.get_partial_messageable(plan.channel, guild_id=plan.guild), plan.channel)
        return client.get_partial_messageable(plan.message, guild_id=plan.guild)  # the thread has its id

    def _say_once(self, channel: discord.abc.Messageable, channel_id: int) -> None:
        """The busy notice, once per busy spell (decided here, at once), sent on the side: it waits for
        its turn in the busy channel's budget behind the replies there, and no reply waits for it."""
        now = self.clock()
        if now - self._noticed.get(channel_id, float("-inf")) < NOTICE_EVERY_S:
            return
        self._noticed[channel_id] = now
        self.spawn(self._say(channel, channel_id))

    async def _say(self, channel: discord.abc.Messageable, channel_id: int) -> None:
        async def send() -> None:
            try:
                await channel.send(BUSY_NOTICE, allowed_mentions=discord.AllowedMentions.none())
            except discord.RateLimited as exc:
                raise RateLimited(exc.retry_after, limits.message_scopes(channel_id)[0].key) from exc

        try:
            await within_budget(self.scheduler, limits.message_scopes(channel_id), send, final=False)
        except Exception as exc:  # nobody awaits it: a notice that fails is logged, the replies go on
            log.warning("discord.busy_notice_failed", error=repr(exc))
