"""Slack thread context: the thread a question is asked in, read with conversations.replies.

Reads go through the platform budget (the EditScheduler's scope for conversations.replies):
Tier 3 for internal and Marketplace apps, 1 request a minute and 15 messages a page for apps
distributed outside the Marketplace (`limited`). A thread read once is cached and refreshed
incrementally: later reads ask only for what is newer than the latest message seen, and messages
Slack delivers as events into a cached thread are added as they arrive. When Slack refuses
(a missing scope, not in the channel, a 429, no budget within `max_wait_s`) the last cached copy
serves; with none, `HistoryUnavailable` makes the core use its stored history.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.surface import retry_after
from bots.slack.users import UserDirectory
from core.context import Attachment, HistoryUnavailable, ThreadMessage
from core.pacing import EditScheduler
from core.surface import RateLimited, RateScope

log = structlog.get_logger(__name__)

TIER3_PAGE = 200  # Slack recommends at most 200 a page
LIMITED_PAGE = 15  # ... and at most 15 messages a page


def replies_scope(team_id: str, *, limited: bool, method: str = "conversations.replies") -> RateScope:
    """A history read's budget (bots/slack/limits.py): Tier 3, or 1 a minute for unlisted apps."""
    budget = limits.METHODS[f"{method}:unlisted" if limited else method].budget
    return budget.scope(f"slack:{team_id}:{method}")


@dataclass
class _Cached:
    messages: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)  # ts -> raw message
    latest: str = ""  # the newest ts read from Slack: everything up to it has been read
    expires: float = 0.0


class SlackThreadReader:
    """One per bot: the thread cache and the reads, shared by every question."""

    def __init__(
        self,
        client: AsyncWebClient,
        users: UserDirectory,
        scheduler: EditScheduler,
        *,
        limited: bool = False,
        max_messages: int = 1000,
        max_wait_s: float = 2.0,
        ttl_s: float = 3600.0,
        max_threads: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.users = users
        self.scheduler = scheduler
        self.limited = limited
        self.page = LIMITED_PAGE if limited else TIER3_PAGE
        self.max_messages = max_messages
        self.max_wait_s = max_wait_s
        self.ttl_s = ttl_s
        self.max_threads = max_threads
        self.clock = clock
        self._threads: OrderedDict[tuple[str, str, str], _Cached] = OrderedDict()
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._workspace_urls: dict[str, str] = {}
        self.requests = 0  # conversations.replies calls, for tests and logs

    def for_question(
        self, team_id: str, channel: str, thread_ts: str, question_ts: str, bot_user_id: str | None
    ) -> SlackThread:
        return SlackThread(self, team_id, channel, thread_ts, question_ts, bot_user_id)

    def observe(self, team_id: str, event: dict[str, Any]) -> None:
        """A message event in a thread already cached: keep the copy current without a request."""
        thread_ts, ts = event.get("thread_ts"), event.get("ts")
        cached = self._threads.get((team_id, str(event.get("channel")), str(thread_ts))) if thread_ts else None
        if cached is not None and ts and str(ts) not in cached.messages:
            # `latest` stays: the next read still asks Slack, so a missed event leaves no gap.
            cached.messages[str(ts)] = event

    async def read(
        self, team_id: str, channel: str, thread_ts: str, question_ts: str, bot_user_id: str | None
    ) -> list[ThreadMessage]:
        key = (team_id, channel, thread_ts)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one read per thread at a time; the second reuses the first's pages
            cached = await self._refresh(key)
        before = _seconds(question_ts)
        raw = [m for ts, m in sorted(cached.messages.items(), key=lambda kv: _seconds(kv[0])) if _seconds(ts) < before]
        return await self._normalize(team_id, channel, thread_ts, raw[-self.max_messages :], bot_user_id)

    async def _refresh(self, key: tuple[str, str, str]) -> _Cached:
        team_id, channel, thread_ts = key
        now = self.clock()
        cached = self._threads.get(key)
        if cached is None or cached.expires <= now:
            cached = _Cached(expires=now + self.ttl_s)
        scope = replies_scope(team_id, limited=self.limited)
        cursor: str | None = None
        read_any = False
        oldest = cached.latest  # one query, paged by its cursor; the next read starts after what this one saw
        try:
            for _ in range(-(-self.max_messages // self.page) + 1):
                args: dict[str, Any] = {"channel": channel, "ts": thread_ts, "limit": self.page}
                if oldest:
                    args["oldest"] = oldest
                if cursor:
                    args["cursor"] = cursor
                response = await self._call(scope, "conversations.replies", args)
                read_any = True
                page = [m for m in response.get("messages") or [] if m.get("ts")]
                for message in page:
                    cached.messages[str(message["ts"])] = message
                if page:
                    cached.latest = max([cached.latest, *(str(m["ts"]) for m in page)], key=_seconds)
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not response.get("has_more") or not cursor:
                    break
        except HistoryUnavailable as exc:
            if key in self._threads or read_any:
                # Degrade to what was read before (or so far): stale beats nothing.
                log.warning("slack.history_partial", channel=channel, thread=thread_ts, error=str(exc))
            else:
                raise
        except Exception as exc:  # transport trouble: as a refusal
            if key not in self._threads and not read_any:
                raise HistoryUnavailable(f"could not read the thread: {exc!r}") from exc
            log.warning("slack.history_partial", channel=channel, thread=thread_ts, error=repr(exc))
        self._keep(key, cached)
        return cached

    async def _call(self, scope: RateScope, method: str, args: dict[str, Any]) -> Any:
        """One history request within its budget; a refusal (or no budget soon) is HistoryUnavailable."""
        try:
            await asyncio.wait_for(self.scheduler.acquire([scope]), self.max_wait_s)
        except TimeoutError:
            raise HistoryUnavailable(f"no {method} budget right now") from None
        self.requests += 1
        try:
            return await getattr(self.client, method.replace(".", "_"))(**args)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                self.scheduler.rate_limited_by([scope], RateLimited(wait, scope.key))
            raise HistoryUnavailable(f"Slack refused {method}: {exc.response.get('error')}") from exc
        finally:
            self.scheduler.responded([scope])

    async def recent(
        self, team_id: str, channel: str, bot_user_id: str | None, *, count: int = 100
    ) -> list[ThreadMessage]:
        """The channel's latest top-level messages, oldest first (conversations.history, one page)."""
        scope = replies_scope(team_id, limited=self.limited, method="conversations.history")
        args = {"channel": channel, "limit": min(count, self.page)}
        try:
            response = await self._call(scope, "conversations.history", args)
        except HistoryUnavailable:
            raise
        except Exception as exc:  # transport trouble: as a refusal, like a thread read
            raise HistoryUnavailable(f"could not read the channel: {exc!r}") from exc
        raw = [m for m in response.get("messages") or [] if m.get("ts")]  # Slack sends newest first
        raw.sort(key=lambda m: _seconds(str(m["ts"])))
        return await self._normalize(team_id, channel, "", raw, bot_user_id)

    def _keep(self, key: tuple[str, str, str], cached: _Cached) -> None:
        self._threads[key] = cached
        self._threads.move_to_end(key)
        while len(self._threads) > self.max_threads:
            old, _ = self._threads.popitem(last=False)
            self._locks.pop(old, None)

    async def _normalize(
        self, team_id: str, channel: str, thread_ts: str, raw: Sequence[dict[str, Any]], bot: str | None
    ) -> list[ThreadMessage]:
        people = {str(m["user"]) for m in raw if m.get("user") and m.get("user") != bot}
        names = dict(zip(people, await asyncio.gather(*(self.users.get(team_id, u) for u in people)), strict=True))
        base = await self._workspace_url(team_id)
        out: list[ThreadMessage] = []
        for m in raw:
            ts = str(m.get("ts") or "")
            user = str(m.get("user") or "")
            from_bot = bool(bot) and user == bot
            if from_bot:
                author = "you"
            elif user in names:
                author = names[user].display_name or user
            else:
                author = str((m.get("bot_profile") or {}).get("name") or m.get("username") or "a bot")
            permalink = ""
            if base and ts:
                permalink = f"{base}archives/{channel}/p{ts.replace('.', '')}"
                if thread_ts and ts != thread_ts:
                    permalink += f"?thread_ts={thread_ts}&cid={channel}"
            out.append(
                ThreadMessage(
                    message_id=ts,
                    author=author,
                    at=_seconds(ts),
                    text=_without_mention(message_text(m), bot),
                    from_bot=from_bot,
                    permalink=permalink,
                    attachments=slack_files(m),
                )
            )
        return out

    async def _workspace_url(self, team: str) -> str:
        """The workspace's URL (from auth.test, once) for permalinks without a request per message."""
        if team not in self._workspace_urls:
            try:
                self._workspace_urls[team] = str((await self.client.auth_test()).get("url") or "")
            except Exception as exc:
                log.warning("slack.auth_test_failed", error=repr(exc))
                return ""
        return self._workspace_urls[team]


class SlackThread:
    """The `ThreadHistory` of one question."""

    def __init__(
        self,
        reader: SlackThreadReader,
        team_id: str,
        channel: str,
        thread_ts: str,
        question_ts: str,
        bot_user_id: str | None,
    ) -> None:
        self.reader = reader
        self.where = (team_id, channel, thread_ts, question_ts)
        self.bot_user_id = bot_user_id

    async def read(self) -> Sequence[ThreadMessage]:
        return await self.reader.read(*self.where, self.bot_user_id)


class SlackChannelRecent:
    """The `ThreadHistory` of `/chatbot summarize` without a thread: the channel's latest messages."""

    def __init__(self, reader: SlackThreadReader, team_id: str, channel: str, bot_user_id: str | None) -> None:
        self.reader = reader
        self.where = (team_id, channel, bot_user_id)

    async def read(self) -> Sequence[ThreadMessage]:
        return await self.reader.recent(*self.where)


def message_text(message: dict[str, Any]) -> str:
    """The message as people see it: the section blocks' text when there are any (`text` is then only
    the notification, cut short), else `text`."""
    sections = [
        str(b["text"].get("text") or "")
        for b in message.get("blocks") or []
        if b.get("type") == "section" and isinstance(b.get("text"), dict)
    ]
    return "\n".join(s for s in sections if s) or str(message.get("text") or "")


def slack_files(message: dict[str, Any]) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(
            name=str(f.get("name") or f.get("title") or f.get("id") or "file"),
            media_type=str(f.get("mimetype") or ""),
            size=int(f.get("size") or 0),
            url=str(f.get("url_private_download") or f.get("url_private") or ""),
        )
        for f in message.get("files") or []
        if isinstance(f, dict)
    )


def _without_mention(text: str, bot_user_id: str | None) -> str:
    if not bot_user_id:
        return text
    return re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>\s*", "", text).strip()


def _seconds(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0
