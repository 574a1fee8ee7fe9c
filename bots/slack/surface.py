"""The Slack Surface: one reply in a channel, thread, DM or assistant thread.

Two ways to show a growing answer:

- native streaming (chat.startStream / appendStream / stopStream), only where the audience is one
  person: DMs and assistant threads. Outside a DM a stream names one `recipient_user_id`, and only
  that person sees it grow; everyone else in the channel sees the first chunk until it stops (see
  bots/slack/README.md). Slack renders the Markdown itself. Appends only add text, so an edit that
  is not an extension of what was streamed (a table to show as code) stops the stream and replaces
  the message with chat.update; a stream Slack refuses to start falls back for the reply, and one
  Slack expired after a pause (`message_not_in_streaming_state`) is finished with chat.update.
- everywhere else a placeholder, then chat.update: the answer in mrkdwn section blocks (a message
  with blocks shows the blocks and uses `text` only for notifications).

Either way the sources end up in a context block of links. Every call spends from its method's
budget in bots/slack/limits.py: the streaming engine's grants cover the post and edit it asks for,
and every other call (stream stops, the replacing chat.update, status, notices) waits for its own
grant through `within_budget`, which also retries it after a 429.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.mrkdwn import escape, has_table, link, to_mrkdwn
from core.markdown import split_markdown
from core.messages import Source
from core.pacing import EditScheduler, within_budget
from core.surface import PLACEHOLDER, Operation, RateLimited, RateScope

log = structlog.get_logger(__name__)

STOP_ACTION = "chatbot_stop"
REGENERATE_ACTION = "chatbot_regenerate"
UP_ACTION, DOWN_ACTION, REASON_ACTION = "chatbot_up", "chatbot_down", "chatbot_reason"
SECTION_LIMIT = 3000  # characters of text in one section block
NOTIFICATION_CHARS = 300  # `text` is only the notification preview once blocks are present
MAX_SOURCE_LINKS = 10  # a context block holds at most 10 elements
THINKING_STATUS = "is thinking…"
STREAM_EXPIRED = "message_not_in_streaming_state"


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


def render_markdown_block(markdown: str, sources: Sequence[Source] = ()) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, blocks) with the answer in one `markdown` block, which Slack renders itself
    (as it renders a native stream); a reply part is well under the block's 12,000 characters."""
    notification, _ = render_blocks(markdown[:NOTIFICATION_CHARS])
    blocks = [{"type": "markdown", "text": defuse_broadcasts(markdown) or "…"}, *source_blocks(sources)]
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
        scheduler: EditScheduler,
        team_id: str,
        channel_id: str,
        user_id: str,
        thread_ts: str | None,
        assistant_thread: bool = False,
        native_streaming: bool = False,
        refusals: StreamRefusals | None = None,
        controls: str = "",
        in_place: str = "",
    ) -> None:
        self.client = client
        self.controls = controls  # the question's key: Stop while streaming, Regenerate once finished
        self.in_place = in_place  # a finished reply to answer again in (Regenerate)
        self._finishing = False  # the final text comes next: it ends a native stream, and carries Regenerate
        self._finished = False
        self._controls_done = False  # the first message shows Regenerate already
        self.scheduler = scheduler
        self.team_id = team_id
        self.channel_id = channel_id
        self.user_id = user_id
        self.thread_ts = thread_ts
        self.assistant_thread = assistant_thread
        self.refusals = refusals
        self.native_streaming = (
            native_streaming
            and one_person_audience(channel_id, thread_ts, assistant_thread)
            and (refusals is None or (team_id, channel_id) not in refusals)
        )
        self._streams: dict[str, str] = {}  # ts -> Markdown streamed so far, for streams still open
        self._native: set[str] = set()  # messages started as native streams
        self._latest: dict[str, tuple[str, Sequence[Source]]] = {}  # ts -> the whole text last asked for
        self._posted: list[str] = []  # every message of this reply, in order

    def _scope(self, method: str) -> RateScope:
        return limits.scope(method, self.team_id, self.channel_id)

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        if self.native_streaming:
            # The final text ends the stream (chat.stopStream), never waiting behind the appends' budget.
            ending = "chat.stopStream" if self._finishing else "chat.appendStream"
            method = ending if operation == "edit" else "chat.startStream"
        else:
            method = "chat.update" if operation == "edit" else "chat.postMessage"
        return (self._scope(method),)

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        # A post with sources is a finished message: nothing left to stream.
        if self.native_streaming and not sources:
            ts = await self._start_stream(text)
            if ts is not None:
                self._latest[ts] = (text, sources)
                self._posted.append(ts)
                return ts
            # Refused: the grant was for chat.startStream, the post spends its own.
            return str(await self._granted("chat.postMessage", self._post_message, text, sources))
        return await self._post_message(text, sources)

    async def _post_message(self, text: str, sources: Sequence[Source]) -> str:
        if self.in_place and not self._posted:
            ts = self.in_place  # Regenerate: the first part replaces the earlier answer
            self._posted.append(ts)
            await self._update(ts, text, sources)
            self._latest[ts] = (text, sources)
            return ts
        notification, blocks = render_blocks(text, sources)
        controls = self._control_blocks() if not self._posted else []
        blocks.extend(controls)
        args: dict[str, Any] = {
            "channel": self.channel_id,
            "text": notification,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if self.thread_ts:
            args["thread_ts"] = self.thread_ts
        response = await self._call("chat_postMessage", "chat.postMessage", **args)
        self._controls_done = self._controls_done or self._shows_finished(controls)
        ts = str(response["ts"])
        self._latest[ts] = (text, sources)
        self._posted.append(ts)
        return ts

    def place(self) -> dict[str, Any]:
        """Where this reply is (core.surface.Placed): enough to reopen the surface or finish the reply."""
        return {
            "team": self.team_id,
            "channel": self.channel_id,
            "user": self.user_id,
            "thread_ts": self.thread_ts,
            "assistant": self.assistant_thread,
            "ids": list(self._posted),
            "streams": list(self._streams),
        }

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        self._latest[message_id] = (text, sources)
        streamed = self._streams.get(message_id)
        if streamed is None:
            if self.native_streaming:  # the grant was for a stream call; the update spends its own
                self.scheduler.release(self.scopes("edit"), reported=True)
                await self._granted("chat.update", self._update, message_id, text, sources)
            else:
                await self._update(message_id, text, sources)
            return
        markdown = defuse_broadcasts(text)
        if markdown.startswith(streamed) and not has_table(text):
            if self._finishing:  # the final text: its rest and the sources in the call that ends the stream
                await self._stop_stream(message_id, markdown[len(streamed) :], source_blocks(sources), granted=True)
                return
            if not sources:
                delta = markdown[len(streamed) :]
                if delta:
                    await self._append(message_id, delta, text, sources)
                return
            # A finished part (the reply goes on in another message): ends with its sources.
            self.scheduler.release(self.scopes("edit"), reported=True)
            await self._stop_stream(message_id, markdown[len(streamed) :], source_blocks(sources))
            return
        # Appends cannot rewrite: end the stream, then replace the message as a whole.
        self.scheduler.release(self.scopes("edit"), reported=True)
        await self._stop_stream(message_id)
        await self._granted("chat.update", self._update, message_id, text, sources)

    async def _update(self, ts: str, text: str, sources: Sequence[Source]) -> None:
        if ts in self._native and not has_table(text):
            # A message Slack streamed keeps Slack's own Markdown rendering once it is edited.
            notification, blocks = render_markdown_block(text, sources)
        else:
            notification, blocks = render_blocks(text, sources)
        controls = self._control_blocks() if self._posted and ts == self._posted[0] else []
        blocks.extend(controls)
        await self._call("chat_update", "chat.update", channel=self.channel_id, ts=ts, text=notification, blocks=blocks)
        self._controls_done = self._controls_done or self._shows_finished(controls)

    async def thinking(self) -> None:
        if self.assistant_thread and self.thread_ts:
            await within_budget(
                self.scheduler,
                (self._scope("assistant.threads.setStatus"),),
                lambda: self._call(
                    "assistant_threads_setStatus",
                    "assistant.threads.setStatus",
                    channel_id=self.channel_id,
                    thread_ts=self.thread_ts,
                    status=THINKING_STATUS,
                ),
                final=False,
            )

    async def notice(self, text: str) -> None:
        args: dict[str, Any] = {"channel": self.channel_id, "user": self.user_id, "text": to_mrkdwn(text)}
        if self.thread_ts:
            args["thread_ts"] = self.thread_ts
        await within_budget(
            self.scheduler,
            (self._scope("chat.postEphemeral"),),
            lambda: self._call("chat_postEphemeral", "chat.postEphemeral", **args),
        )

    def _control_blocks(self) -> list[dict[str, Any]]:
        """The reply's buttons, on its first message: Stop while it streams, Regenerate once done."""
        if not self.controls:
            return []
        shown = (
            [(REGENERATE_ACTION, "Regenerate"), (UP_ACTION, "👍"), (DOWN_ACTION, "👎")]
            if self._finished or self._finishing  # the final text's request swaps the buttons too
            else [(STOP_ACTION, "Stop")]
        )
        buttons = [
            {
                "type": "button",
                "action_id": action,
                "text": {"type": "plain_text", "text": label},
                "value": self.controls,
            }
            for action, label in shown
        ]
        return [{"type": "actions", "block_id": "chatbot_controls", "elements": buttons}]

    @staticmethod
    def _shows_finished(controls: list[dict[str, Any]]) -> bool:
        return any(e["action_id"] == REGENERATE_ACTION for block in controls for e in block["elements"])

    def finishing(self) -> None:
        """The final text comes next (core.surface.Finishing): it ends a native stream in the same call,
        and an edit of the first message carries Regenerate, 👍 and 👎 instead of Stop."""
        self._finishing = True

    async def finished(self) -> None:
        """The reply is done (answered, failed or stopped): its Stop button becomes Regenerate, with the
        final text's edit when that touched the first message, else with one edit of its own. A native
        stream's Stop is a block inside the stream, so the stream ends first and the message is replaced."""
        self._finished = True
        if not self.controls or not self._posted:
            return
        await self.close()
        if self._controls_done:
            return
        ts = self._posted[0]
        text, sources = self._latest.get(ts, ("", ()))
        if text:
            await within_budget(
                self.scheduler, (self._scope("chat.update"),), lambda: self._update(ts, text, sources), final=True
            )

    async def close(self) -> None:
        """Stop the streams still open, each within its budget and retried after 429s; a stream
        Slack already expired gets its whole text with chat.update."""
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
            # Outside a DM (an assistant thread) Slack needs to know whom the stream is for.
            args.update(recipient_team_id=self.team_id, recipient_user_id=self.user_id)
        stop = self._control_blocks() if not self._posted and not self._finishing else []
        if stop:
            # The Stop button streams first, as a blocks chunk; the text goes in chunks too, after it
            # (markdown_text is not combined with chunks).
            chunks: list[dict[str, Any]] = [{"type": "blocks", "blocks": stop}]
            if markdown:
                chunks.append({"type": "markdown_text", "text": markdown})
            args["chunks"] = chunks
        elif markdown:
            args["markdown_text"] = markdown
        try:
            response = await self._call("chat_startStream", "chat.startStream", **args)
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("slack.native_streaming_unavailable", error=error, channel=self.channel_id)
            if self.refusals is not None:
                self.refusals.refused(self.team_id, self.channel_id, error)
            self.native_streaming = False
            return None
        ts = str(response["ts"])
        self._streams[ts] = markdown
        self._native.add(ts)
        return ts

    async def _append(self, ts: str, delta: str, text: str, sources: Sequence[Source]) -> None:
        """Append within the engine's grant. A 429 leaves the stream as it was (the same text goes
        again); an expired stream is finished with chat.update; any other error means the stream
        cannot be trusted to be open, so the next edit replaces the message whole."""
        try:
            await self._call(
                "chat_appendStream", "chat.appendStream", channel=self.channel_id, ts=ts, markdown_text=delta
            )
        except RateLimited:
            raise
        except SlackApiError as exc:
            self._streams.pop(ts, None)
            if exc.response.get("error") == STREAM_EXPIRED:
                await self._granted("chat.update", self._update, ts, text, sources)
                return
            raise
        except Exception:
            self._streams.pop(ts, None)
            raise
        self._streams[ts] += delta

    async def _stop_stream(
        self, ts: str, delta: str = "", blocks: list[dict[str, Any]] | None = None, *, granted: bool = False
    ) -> None:
        """End the stream, appending `delta` and `blocks` (the sources) if given: within the engine's grant
        for chat.stopStream (`granted`: a 429 goes back to the engine, which retries its final edit), else
        within the method's own budget, 429s waited out. A stream Slack expired is finished with chat.update."""
        args: dict[str, Any] = {"channel": self.channel_id, "ts": ts}
        if delta:
            args["markdown_text"] = delta
        if blocks:
            args["blocks"] = blocks

        async def stop() -> Any:
            return await self._call("chat_stopStream", "chat.stopStream", **args)

        try:
            await (stop() if granted else within_budget(self.scheduler, (self._scope("chat.stopStream"),), stop))
        except SlackApiError as exc:
            self._streams.pop(ts, None)
            if exc.response.get("error") != STREAM_EXPIRED:
                raise
            text, sources = self._latest.get(ts, ("", ()))
            if text:
                await self._granted("chat.update", self._update, ts, text, sources)
            return
        self._streams.pop(ts, None)

    async def _granted(self, method: str, call: Any, *args: Any) -> Any:
        """A call the engine's grant did not cover: it waits for its own (and retries after 429s)."""
        return await within_budget(self.scheduler, (self._scope(method),), lambda: call(*args))

    async def _call(self, client_method: str, method: str, **args: Any) -> Any:
        return await call_slack(self.client, client_method, self._scope(method).key, **args)


async def call_slack(client: AsyncWebClient, client_method: str, scope_key: str, **args: Any) -> Any:
    """One Web API call; Slack's 429 becomes RateLimited for the scheduler (the SDK does not retry it)."""
    try:
        return await getattr(client, client_method)(**args)
    except SlackApiError as exc:
        wait = retry_after(exc)
        if wait is not None:
            raise RateLimited(wait, scope_key) from exc
        raise


def one_person_audience(channel_id: str, thread_ts: str | None, assistant_thread: bool) -> bool:
    """Where a native stream reaches everyone who reads the reply: a thread in a DM, or an assistant
    thread (Slack streams only in threads, and outside DMs to one named recipient)."""
    return thread_ts is not None and (channel_id.startswith("D") or assistant_thread)
