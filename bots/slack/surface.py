"""The Slack Surface: one reply in a channel, thread, DM or assistant thread, by chat.postMessage + chat.update.

The answer lives in mrkdwn section blocks (a message with blocks shows the blocks and uses
`text` only for notifications), the sources in a context block of links. Rate-limit scopes
follow Slack's own: chat.update is Tier 3 per workspace (about 50 a minute, shared by every
reply in the team), chat.postMessage about one a second per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.mrkdwn import escape, link, to_mrkdwn
from core.messages import Source
from core.streaming import split_markdown
from core.surface import Operation, RateLimited, RateScope

log = structlog.get_logger(__name__)

SECTION_LIMIT = 3000  # characters of text in one section block
NOTIFICATION_CHARS = 300  # `text` is only the notification preview once blocks are present
MAX_SOURCE_LINKS = 10  # a context block holds at most 10 elements
UPDATE_PER_SECOND = 50 / 60  # Tier 3
POST_PER_SECOND = 1.0
THINKING_STATUS = "is thinking…"


def update_scope(team_id: str) -> RateScope:
    return RateScope(f"slack:{team_id}:chat.update", per_second=UPDATE_PER_SECOND, burst=3)


def post_scope(team_id: str, channel_id: str) -> RateScope:
    return RateScope(f"slack:{team_id}:{channel_id}:chat.postMessage", per_second=POST_PER_SECOND, burst=2)


def render_blocks(markdown: str, sources: Sequence[Source] = ()) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, blocks) for one message; code fences split across sections are closed and reopened."""
    mrkdwn = to_mrkdwn(markdown) or "…"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}} for part in split_markdown(mrkdwn, SECTION_LIMIT)
    ]
    if sources:
        elements = [{"type": "mrkdwn", "text": _source_link(s)} for s in sources[:MAX_SOURCE_LINKS]]
        blocks.append({"type": "context", "elements": elements})
    notification = mrkdwn if len(mrkdwn) <= NOTIFICATION_CHARS else mrkdwn[: NOTIFICATION_CHARS - 1] + "…"
    return notification, blocks


def _source_link(source: Source) -> str:
    title = (source.title or source.uri or "source")[:200]
    label = f"[{source.index}] {title}"
    if source.uri.startswith(("http://", "https://")):
        return link(source.uri, label)
    return escape(label)


def retry_after(error: SlackApiError) -> float | None:
    """Seconds to wait if Slack said 429 (HTTP status or `ratelimited`), else None."""
    response = error.response
    if response.status_code != 429 and response.get("error") != "ratelimited":
        return None
    headers = {k.lower(): v for k, v in (response.headers or {}).items()}
    raw = headers.get("retry-after")
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    try:
        return max(0.0, float(raw)) if raw is not None else 1.0
    except ValueError:
        return 1.0


class SlackSurface:
    """Where one answer appears. `thread_ts=None` posts at the top level (a plain DM)."""

    # A section holds 3,000 characters; several sections make one message. Markdown -> mrkdwn
    # barely changes the length (tables grow a little), so ~2 sections of answer per message.
    max_chars = 5000

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        team_id: str,
        channel_id: str,
        user_id: str,
        thread_ts: str | None,
        assistant_thread: bool = False,
    ) -> None:
        self.client = client
        self.team_id = team_id
        self.channel_id = channel_id
        self.user_id = user_id
        self.thread_ts = thread_ts
        self.assistant_thread = assistant_thread
        self._update = update_scope(team_id)
        self._post = post_scope(team_id, channel_id)

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return (self._update,) if operation == "edit" else (self._post,)

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        notification, blocks = render_blocks(text, sources)
        args: dict[str, Any] = {
            "channel": self.channel_id,
            "text": notification,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if self.thread_ts:
            args["thread_ts"] = self.thread_ts
        response = await self._call("chat_postMessage", self._post, **args)
        return str(response["ts"])

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        notification, blocks = render_blocks(text, sources)
        await self._call(
            "chat_update", self._update, channel=self.channel_id, ts=message_id, text=notification, blocks=blocks
        )

    async def thinking(self) -> None:
        if self.assistant_thread and self.thread_ts:
            await self._call(
                "assistant_threads_setStatus",
                None,
                channel_id=self.channel_id,
                thread_ts=self.thread_ts,
                status=THINKING_STATUS,
            )

    async def notice(self, text: str) -> None:
        args: dict[str, Any] = {"channel": self.channel_id, "user": self.user_id, "text": to_mrkdwn(text)}
        if self.thread_ts:
            args["thread_ts"] = self.thread_ts
        await self._call("chat_postEphemeral", None, **args)

    async def _call(self, method: str, scope: RateScope | None, **args: Any) -> Any:
        try:
            return await getattr(self.client, method)(**args)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                raise RateLimited(wait, scope.key if scope else None) from exc
            raise
