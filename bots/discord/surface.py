"""Where one reply appears on Discord: a channel or thread, every part replying to the one before.

A reply longer than one message continues in messages that each reply to the previous part (the
first replies to the question), so in a busy channel every part shows which question it answers,
at no extra request. After each post the surface can say where the reply is (`place()`,
core.surface.Placed), so a later run finds the parts again (bots/discord/replies.py). Every request
spends from its budget (bots/discord/limits.py): the parts and edits through the streaming engine's
grants, typing and notices through `within_budget`. A reply planned into a thread of its own
(bots/discord/threads.py) waits for its first post in that thread's budget, before the thread exists;
should the first post go elsewhere after all, it waits for its turn there too, so every request is
paid in the budget of the channel it goes to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
import structlog

from bots.discord import limits
from bots.discord.controls import control_view
from bots.discord.render import sources_text, tables_to_code
from bots.discord.threads import ThreadPlan
from core.messages import Source
from core.pacing import EditScheduler, within_budget
from core.streaming import FIRST_TEXT_BOOST_S
from core.surface import Operation, RateLimited, RateScope

log = structlog.get_logger(__name__)

MAX_CONTENT = 2000


class DiscordSurface:
    max_chars = MAX_CONTENT

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        channel_id: int,
        scheduler: EditScheduler,
        reply_to: discord.Message | discord.PartialMessage | None = None,
        on_posted: Callable[[discord.Message], None] | None = None,
        interaction: discord.Interaction | None = None,
        controls: str = "",
        in_place: discord.Message | None = None,
        posted: Sequence[discord.PartialMessage] = (),
        thread_plan: ThreadPlan | None = None,
        open_thread: Callable[[ThreadPlan], Awaitable[discord.abc.Messageable | None]] | None = None,
    ) -> None:
        self.controls = controls  # the token of the reply's buttons (Stop, then Regenerate)
        self.in_place = in_place  # a finished reply to answer again in (Regenerate)
        self.channel = channel
        self.channel_id = channel_id
        self.scheduler = scheduler
        self.reply_to = reply_to
        self.on_posted = on_posted
        self.interaction = interaction
        self._scopes = limits.message_scopes(channel_id)
        # Every part of the reply, in order (`posted`: the parts an earlier run left, when reopened to finish them).
        self._messages: dict[str, discord.Message | discord.PartialMessage] = {str(m.id): m for m in posted}
        self._last = posted[-1] if posted else None  # the latest part: the next one replies to it
        self._finishing = False  # the final text is being landed: it carries the finished buttons
        self._controls_done = False  # the first message already shows Regenerate
        # A thread of its own, opened (or not, bots/discord/threads.py) just before the first post.
        self._plan = thread_plan if open_thread is not None and not posted else None
        self._open_thread = open_thread
        self._parent: int | None = None  # the channel of the thread opened here
        # Until then the first post waits where it is expected to go: a thread started from the
        # question has the question's id, so its budget is known before it exists.
        plan = self._plan if in_place is None else None  # Regenerate answers in place
        self._planned = limits.message_scopes(plan.message) if plan is not None and plan.expected else self._scopes
        self._created_at = scheduler.clock.now()  # about when the question came: its first post's priority

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return self._planned if self._plan is not None else self._scopes

    @staticmethod
    def _embed(sources: Sequence[Source]) -> discord.Embed | None:
        return discord.Embed(title="Sources", description=sources_text(sources)) if sources else None

    async def _move(self, plan: ThreadPlan) -> None:
        """Into the question's thread, if it gets one; a failure to open it answers in the channel."""
        assert self._open_thread is not None
        try:
            thread = await self._open_thread(plan)
        except Exception as exc:
            log.warning("discord.thread_open_failed", error=repr(exc))
            thread = None
        self._plan = None
        if thread is None:
            return
        self.channel, self.reply_to, self._parent = thread, None, plan.channel
        self.channel_id = thread.id  # type: ignore[attr-defined]  # a thread or a partial one: both have ids
        self._scopes = limits.message_scopes(self.channel_id)

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        """Post the next part, within the grant the caller holds for `scopes("post")`."""
        if not self._messages and self._plan is not None and self.in_place is None:
            paid = self.scopes("post")
            await self._move(self._plan)
            if paid != self._scopes:
                return await self._post_elsewhere(paid, text, sources)
        return await self._send(text, sources)

    async def _post_elsewhere(self, paid: Sequence[RateScope], text: str, sources: Sequence[Source]) -> str:
        """The first post goes to another channel than the one it was paid in (the setting changed since
        it was last read, or the thread could not be opened): it waits for its turn there as well. The
        unused grant gives its token back; it stays counted in its window until the caller reports it
        answered (a window errs only on the safe side). Scopes both share (the global one) are paid once."""
        self.scheduler.release([s for s in paid if s not in self._scopes], reported=True)
        owed = [s for s in self._scopes if s not in paid]
        return await within_budget(
            self.scheduler,
            owed,
            lambda: self._send(text, sources),
            final=self._finishing,  # the reply's last text may spend the channel's reserve
            urgent=False,
            since=self._created_at - FIRST_TEXT_BOOST_S,  # first words, as the streamer ranks them
        )

    async def _send(self, text: str, sources: Sequence[Source]) -> str:
        first = not self._messages
        extra = self._view() if first else {}
        try:
            if first and self.in_place is not None:  # Regenerate: the first part replaces the earlier answer
                message = await self.in_place.edit(
                    content=tables_to_code(text)[:MAX_CONTENT], embed=self._embed(sources), **extra
                )
            else:
                message = await self.channel.send(
                    content=tables_to_code(text)[:MAX_CONTENT],
                    embed=self._embed(sources),  # type: ignore[arg-type]
                    reference=self._last or self.reply_to,  # type: ignore[arg-type]
                    mention_author=False,
                    allowed_mentions=discord.AllowedMentions.none(),
                    **extra,
                )
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after, self._scopes[0].key) from exc
        self._messages[str(message.id)] = message
        if extra and self._finishing:
            self._controls_done = True
        self._last = message
        if self.on_posted is not None:
            self.on_posted(message)
        return str(message.id)

    def place(self) -> dict[str, Any]:
        """Where this reply is (core.surface.Placed): the channel, the thread it is in (if any), the
        question it answers, and every part posted so far, in order."""
        thread = self.channel if isinstance(self.channel, discord.Thread) else None
        parent = self._parent or (thread.parent_id if thread is not None else None)
        place: dict[str, Any] = {
            "channel": str(parent or self.channel_id),
            "thread": str(self.channel_id) if parent else None,
            "reply_to": str(self.reply_to.id) if self.reply_to is not None else None,
            "ids": list(self._messages),
        }
        if self._plan is not None:  # not posted yet: whoever posts first opens the thread
            place["open"] = self._plan.place()
        return place

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        await self.replace(message_id, tables_to_code(text)[:MAX_CONTENT], self._embed(sources))

    async def replace(self, message_id: str, content: str, embed: discord.Embed | None = None) -> None:
        """Replace a part's whole content with Discord text as it is (at most MAX_CONTENT characters)."""
        message = self._messages[message_id]
        # Interim edits leave the buttons alone; the final edit of the first message swaps them.
        extra = self._view() if self._finishing and message_id == next(iter(self._messages)) else {}
        try:
            self._messages[message_id] = await message.edit(
                content=content,
                embed=embed,
                **extra,
            )
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after, self._scopes[0].key) from exc
        if extra and self._finishing:
            self._controls_done = True

    def _view(self) -> dict[str, Any]:  # keyword arguments of send/edit
        """The buttons the first message shows with this request: Stop, or Regenerate once finishing."""
        return {"view": control_view(self.controls, finished=self._finishing)} if self.controls else {}

    def finishing(self) -> None:
        """The final text comes next: the request that lands it on the first message swaps the buttons."""
        self._finishing = True

    async def finished(self) -> None:
        """The reply is done (answered, failed or stopped): its Stop button becomes Regenerate, with
        the final text's edit when that touched the first message, else with one edit of its own."""
        first = next(iter(self._messages.values()), None)
        if not self.controls or first is None or self._controls_done:
            return
        view = control_view(self.controls, finished=True)
        # Not urgent: the text is all shown; replies still streaming need the budget more.
        await within_budget(self.scheduler, self._scopes, lambda: first.edit(view=view), urgent=False)
        self._controls_done = True

    async def thinking(self) -> None:
        """Typing, only when the budget has slack: it is the least useful request, so it is dropped
        rather than queued ahead of, or behind, any reply's text."""
        scopes = limits.typing_scopes(self.channel_id)
        if self.interaction is not None or not self.scheduler.try_acquire(scopes):
            return
        try:
            await self.channel.typing()
        except discord.RateLimited as exc:
            self.scheduler.rate_limited_by(scopes, RateLimited(exc.retry_after, scopes[0].key))
        finally:
            self.scheduler.responded(scopes)

    async def notice(self, text: str) -> None:
        if self.interaction is not None:
            await self.interaction.followup.send(text, ephemeral=True)
            return
        # Ordinary messages have no ephemeral replies on Discord: a short reply to the question instead.
        await within_budget(self.scheduler, self._scopes, lambda: self._send_line(text, self.reply_to))

    async def _send_line(
        self, text: str, reference: discord.Message | discord.PartialMessage | None
    ) -> discord.Message:
        try:
            return await self.channel.send(
                content=text,
                reference=reference,  # type: ignore[arg-type]
                mention_author=False,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after, self._scopes[0].key) from exc
