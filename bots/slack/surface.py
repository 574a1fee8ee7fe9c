"""The Slack Surface: one reply in a channel, thread, DM or assistant thread.

Two ways to show a growing answer:

- native streaming (chat.startStream / appendStream / stopStream), used in threads (Slack streams
  only replies in a thread) unless it is turned off: Slack renders the Markdown itself and the
  message shows as being written. Appends only add text, so an edit that is not an extension of
  what was streamed (a continuation split moved, a table to show as code) stops the stream and
  replaces the message with chat.update; a stream Slack refuses to start falls back for the reply.
- a placeholder, then chat.update: the answer in mrkdwn section blocks (a message with blocks
  shows the blocks and uses `text` only for notifications).

Either way the sources end up in a context block of links. Rate-limit scopes follow Slack's own:
chat.update is Tier 3 per workspace (about 50 a minute, shared by every reply in the team),
chat.postMessage about one a second per channel. The streaming methods' tiers are not published
per method; they get budgets of their own of the same size, and 429s tune them from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.mrkdwn import escape, has_table, link, to_mrkdwn
from core.markdown import split_markdown
from core.messages import Source
from core.surface import PLACEHOLDER, Operation, RateLimited, RateScope

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


def start_stream_scope(team_id: str, channel_id: str) -> RateScope:
    return RateScope(f"slack:{team_id}:{channel_id}:chat.startStream", per_second=POST_PER_SECOND, burst=2)


def append_stream_scope(team_id: str) -> RateScope:
    return RateScope(f"slack:{team_id}:chat.appendStream", per_second=UPDATE_PER_SECOND, burst=3)


def defuse_broadcasts(markdown: str) -> str:
    """Markdown for Slack to render, unable to ping a crowd (<!here>, <!channel>, <!subteam^…>).

    Only inserts after a '<', so defusing a longer text extends the defused shorter one: streamed
    appends stay consistent with what was already sent."""
    return markdown.replace("<!", "<\u200b!")


def render_blocks(markdown: str, sources: Sequence[Source] = ()) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, blocks) for one message; code fences split across sections are closed and reopened."""
    mrkdwn = to_mrkdwn(markdown) or "…"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}} for part in split_markdown(mrkdwn, SECTION_LIMIT)
    ]
    blocks.extend(source_blocks(sources))
    notification = mrkdwn if len(mrkdwn) <= NOTIFICATION_CHARS else mrkdwn[: NOTIFICATION_CHARS - 1] + "…"
    return notification, blocks


def source_blocks(sources: Sequence[Source]) -> list[dict[str, Any]]:
    """The sources as one context block of links (none without sources)."""
    if not sources:
        return []
    return [
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _source_link(s)} for s in sources[:MAX_SOURCE_LINKS]],
        }
    ]


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


class StreamRefusals:
    """Where Slack refused to start a stream (team, channel): later replies there go straight to
    chat.postMessage instead of spending a request and a round trip on a refusal each time."""

    TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})

    def __init__(self) -> None:
        self._where: set[tuple[str, str]] = set()

    def refused(self, team_id: str, channel_id: str, error: str) -> None:
        if error not in self.TRANSIENT:
            self._where.add((team_id, channel_id))

    def __contains__(self, where: tuple[str, str]) -> bool:
        return where in self._where


class SlackSurface:
    """Where one answer appears. `thread_ts=None` posts at the top level (a plain DM), never streamed.

    The adapter calls `close()` once the reply is done: it stops any stream still open (the engine's
    final edit stops it when it carries sources; an answer without sources ends here).
    """

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
        native_streaming: bool = False,
        refusals: StreamRefusals | None = None,
    ) -> None:
        self.client = client
        self.team_id = team_id
        self.channel_id = channel_id
        self.user_id = user_id
        self.thread_ts = thread_ts
        self.assistant_thread = assistant_thread
        self.refusals = refusals
        self.native_streaming = (
            native_streaming and thread_ts is not None and (refusals is None or (team_id, channel_id) not in refusals)
        )
        self._update = update_scope(team_id)
        self._post = post_scope(team_id, channel_id)
        self._start = start_stream_scope(team_id, channel_id)
        self._append = append_stream_scope(team_id)
        self._streams: dict[str, str] = {}  # ts -> Markdown streamed so far, for streams still open

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        if self.native_streaming:
            return (self._append,) if operation == "edit" else (self._start,)
        return (self._update,) if operation == "edit" else (self._post,)

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        # A post with sources is a finished message: nothing left to stream.
        if self.native_streaming and not sources:
            ts = await self._start_stream(text)
            if ts is not None:
                return ts
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
        streamed = self._streams.get(message_id)
        if streamed is not None:
            markdown = defuse_broadcasts(text)
            if markdown.startswith(streamed) and not has_table(text):
                await self._extend_stream(message_id, markdown[len(streamed) :], sources)
                return
            # Appends cannot rewrite: end the stream, then replace the message as a whole.
            await self._stop_stream(message_id)
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

    async def close(self) -> None:
        """Stop the streams still open (best effort: Slack ends abandoned streams by itself)."""
        for ts in list(self._streams):
            try:
                await self._stop_stream(ts)
            except Exception as exc:
                log.warning("slack.stop_stream_failed", ts=ts, error=repr(exc))

    # -- native streaming --------------------------------------------------------------------------
    async def _start_stream(self, text: str) -> str | None:
        """The new stream's ts, or None if Slack will not stream here (the reply then uses chat.update)."""
        markdown = "" if text == PLACEHOLDER else defuse_broadcasts(text)
        args: dict[str, Any] = {"channel": self.channel_id, "thread_ts": self.thread_ts}
        if not self.channel_id.startswith("D"):
            # Outside a DM Slack needs to know whom the stream is for.
            args.update(recipient_team_id=self.team_id, recipient_user_id=self.user_id)
        if markdown:
            args["markdown_text"] = markdown
        try:
            response = await self._call("chat_startStream", self._start, **args)
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("slack.native_streaming_unavailable", error=error, channel=self.channel_id)
            if self.refusals is not None:
                self.refusals.refused(self.team_id, self.channel_id, error)
            self.native_streaming = False
            return None
        ts = str(response["ts"])
        self._streams[ts] = markdown
        return ts

    async def _extend_stream(self, ts: str, delta: str, sources: Sequence[Source]) -> None:
        if sources:
            # The final text: the rest of it and the sources in one call that ends the stream.
            await self._stop_stream(ts, delta, source_blocks(sources))
        elif delta:
            await self._stream_call("chat_appendStream", channel=self.channel_id, ts=ts, markdown_text=delta)
            self._streams[ts] += delta

    async def _stop_stream(self, ts: str, delta: str = "", blocks: list[dict[str, Any]] | None = None) -> None:
        """End the stream, appending `delta` and `blocks` (the sources) if given."""
        args: dict[str, Any] = {"channel": self.channel_id, "ts": ts}
        if delta:
            args["markdown_text"] = delta
        if blocks:
            args["blocks"] = blocks
        await self._stream_call("chat_stopStream", **args)
        self._streams.pop(ts, None)

    async def _stream_call(self, method: str, **args: Any) -> None:
        """A call on an open stream. A 429 leaves the stream as it was (the same text goes again);
        any other error means the stream cannot be trusted to be open, so the message is treated as
        an ordinary one from then on and the next edit replaces it whole."""
        try:
            await self._call(method, self._append, **args)
        except RateLimited:
            raise
        except Exception:
            self._streams.pop(args["ts"], None)
            raise

    async def _call(self, method: str, scope: RateScope | None, **args: Any) -> Any:
        try:
            return await getattr(self.client, method)(**args)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                raise RateLimited(wait, scope.key if scope else None) from exc
            raise
