"""Discord thread context: the reply chain a question answers, or the thread it is asked in.

In a thread, the thread's recent messages (GET /channels/{id}/messages, up to `max_messages`,
newest first, in pages of 100); elsewhere, the chain of replies the question continues
(`message.reference`, followed up to `max_hops`, from discord.py's own cache where it has the
message and by GET otherwise). Every request spends from its channel's history budget and the
bot's global one; with no budget within `max_wait_s`, or when Discord refuses (no Read Message
History permission, an unknown message), `HistoryUnavailable` makes the core use its stored
history. Chain messages do not change once followed, so they are cached by id.

Other people's message text needs the Message Content intent: without it Discord sends their
messages empty (those are skipped) except where they mention the bot.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import discord
import structlog

from bots.discord import limits
from core.context import Attachment, HistoryUnavailable, ThreadMessage
from core.pacing import EditScheduler

log = structlog.get_logger(__name__)

PAGE = 100  # Discord's most messages per history request


class DiscordHistory:
    """One per client: the chain cache and the reads."""

    def __init__(
        self,
        client: discord.Client,
        scheduler: EditScheduler,
        *,
        max_messages: int = 200,
        max_hops: int = 20,
        max_wait_s: float = 2.0,
        cache_size: int = 10_000,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.max_messages = max_messages
        self.max_hops = max_hops
        self.max_wait_s = max_wait_s
        self.cache_size = cache_size
        self._chain: OrderedDict[int, discord.Message] = OrderedDict()  # messages followed, by id
        self._no_starter: set[int] = set()  # threads not started from a message
        self.requests = 0

    def for_question(self, message: discord.Message) -> DiscordThread | None:
        """The history of the conversation `message` continues, if it continues one."""
        if isinstance(message.channel, discord.Thread) or message.reference is not None:
            return DiscordThread(self, message)
        return None

    async def read(self, question: discord.Message) -> list[ThreadMessage]:
        try:
            if isinstance(question.channel, discord.Thread):
                found = await self._thread(question)
            else:
                found = await self._reply_chain(question)
        except discord.HTTPException as exc:
            raise HistoryUnavailable(f"Discord refused the history read: {exc.status} {exc.text}") from exc
        return [normalize(m, self.client.user) for m in found]

    @asynccontextmanager
    async def _spending(self, channel_id: int) -> AsyncIterator[None]:
        """One history read inside its budget: granted before, its answer reported after."""
        scopes = list(limits.history_scopes(channel_id))
        try:
            await asyncio.wait_for(self.scheduler.acquire(scopes), self.max_wait_s)
        except TimeoutError:
            raise HistoryUnavailable("no history budget right now") from None
        self.requests += 1
        try:
            yield
        finally:
            self.scheduler.responded(scopes)

    async def _thread(self, question: discord.Message) -> list[discord.Message]:
        channel = question.channel
        assert isinstance(channel, discord.Thread)
        newest_first: list[discord.Message] = []
        before: discord.Message | discord.Object = question
        while len(newest_first) < self.max_messages:
            async with self._spending(channel.id):
                page = [
                    m
                    async for m in channel.history(
                        limit=min(PAGE, self.max_messages - len(newest_first)), before=before
                    )
                ]
            newest_first.extend(page)
            if len(page) < PAGE:
                break
            before = page[-1]
        else:
            return newest_first[::-1]
        starter = await self._starter(channel)
        return ([starter] if starter is not None else []) + newest_first[::-1]

    async def _starter(self, thread: discord.Thread) -> discord.Message | None:
        """The message a thread was started from (in the parent channel, with the thread's id), if any."""
        if thread.id in self._no_starter or thread.parent is None:
            return None
        found = thread.starter_message or self._chain.get(thread.id)
        if found is not None:
            return found
        try:
            async with self._spending(thread.parent.id):
                found = await thread.parent.fetch_message(thread.id)  # type: ignore[union-attr]
        except discord.NotFound:
            if len(self._no_starter) >= self.cache_size:
                self._no_starter.clear()
            self._no_starter.add(thread.id)
            return None
        self._remember(found)
        return found

    async def message(self, channel_id: int, message_id: int) -> discord.Message | None:
        """One message by id (from the cache, else a GET within the channel's history budget), or None."""
        cached = self._chain.get(message_id) or discord.utils.get(self.client.cached_messages, id=message_id)
        if cached is not None:
            return cached
        channel = self.client.get_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return None
        try:
            async with self._spending(channel_id):
                fetched = await channel.fetch_message(message_id)
        except (discord.HTTPException, HistoryUnavailable) as exc:
            log.info("discord.message_unavailable", message=message_id, error=repr(exc))
            return None
        self._remember(fetched)
        return fetched

    def _remember(self, message: discord.Message) -> None:
        self._chain[message.id] = message
        while len(self._chain) > self.cache_size:
            self._chain.popitem(last=False)

    async def _reply_chain(self, question: discord.Message) -> list[discord.Message]:
        chain: list[discord.Message] = []
        current = question
        for _ in range(self.max_hops):
            reference = current.reference
            if reference is None or reference.message_id is None:
                break
            parent = await self._referenced(current, reference)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain[::-1]

    async def _referenced(
        self, message: discord.Message, reference: discord.MessageReference
    ) -> discord.Message | None:
        assert reference.message_id is not None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        cached = self._chain.get(reference.message_id) or discord.utils.get(
            self.client.cached_messages, id=reference.message_id
        )
        if cached is not None:
            return cached
        if isinstance(reference.resolved, discord.DeletedReferencedMessage):
            return None
        channel = message.channel
        if reference.channel_id != channel.id:
            resolved = self.client.get_channel(reference.channel_id)
            if not isinstance(resolved, discord.abc.Messageable):
                return None
            channel = resolved
        try:
            async with self._spending(reference.channel_id):
                fetched = await channel.fetch_message(reference.message_id)
        except discord.NotFound:
            return None
        self._remember(fetched)
        return fetched


class DiscordThread:
    """The `ThreadHistory` of one question."""

    def __init__(self, history: DiscordHistory, question: discord.Message, *, including: bool = False) -> None:
        self.history = history
        self.question = question
        self.including = including  # the message itself belongs to the history (a message menu's target)

    async def read(self) -> Sequence[ThreadMessage]:
        found = await self.history.read(self.question)
        return [*found, normalize(self.question, self.history.client.user)] if self.including else found


def normalize(message: discord.Message, bot: discord.ClientUser | None) -> ThreadMessage:
    from_bot = bot is not None and message.author.id == bot.id
    text = message.content
    if bot is not None and not from_bot:
        text = text.replace(f"<@{bot.id}>", "").replace(f"<@!{bot.id}>", "").strip()
    return ThreadMessage(
        message_id=str(message.id),
        author="you" if from_bot else message.author.display_name,
        at=message.created_at.timestamp(),
        text=text,
        from_bot=from_bot,
        permalink=message.jump_url,
        attachments=attachments_of(message),
    )


def attachments_of(message: discord.Message) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(name=a.filename, media_type=a.content_type or "", size=a.size, url=a.url)
        for a in message.attachments
    )
