"""Slack's side of recovery (core.recovery.ReplyPlatform): finish a reply another run left half-shown.

The place is what SlackSurface.place() stored at each post: the channel, the thread, every message of
the reply and the native streams still open. Open streams are stopped first (Slack refuses to edit a
message while it streams; a stream Slack already ended answers an error that changes nothing), then
the messages are replaced with the text so far, split as the surface splits it, the marker at the
end. Every call waits for its grant in the method's budget (bots/slack/limits.py), as any reply does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.oauth import team_token
from bots.slack.surface import STREAM_EXPIRED, SlackSurface, StreamRefusals, call_slack
from core.markdown import split_markdown
from core.pacing import STALEST, EditScheduler, within_budget
from core.recovery import Reopened

log = structlog.get_logger(__name__)


class SlackReplies:
    def __init__(
        self,
        client: AsyncWebClient,
        scheduler: EditScheduler,
        *,
        token_for: Callable[[str], Awaitable[str | None]] | None = None,
        native_streaming: bool = False,
        refusals: StreamRefusals | None = None,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.token_for = token_for  # distribution: the bot token of a workspace (its installation)
        self.native_streaming = native_streaming
        self.refusals = refusals

    def surface_at(self, place: dict[str, Any], *, native_streaming: bool = False) -> SlackSurface:
        """A surface for the reply's place (its channel, thread and author)."""
        return SlackSurface(
            self.client,
            scheduler=self.scheduler,
            team_id=str(place["team"]),
            channel_id=str(place["channel"]),
            user_id=str(place.get("user") or ""),
            thread_ts=place.get("thread_ts"),
            assistant_thread=bool(place.get("assistant")),
            native_streaming=native_streaming,
            refusals=self.refusals,
        )

    def reopen(self, place: dict[str, Any]) -> Reopened:
        """A new surface where a kept question is answered (streaming natively where it would have)."""
        surface = self.surface_at(place, native_streaming=self.native_streaming)
        return Reopened(surface, self.scheduler, surface.close)

    async def finish_interrupted(self, place: dict[str, Any], text: str) -> None:
        if self.token_for is None:
            return await self._finish(place, text)
        token = team_token.set(await self.token_for(str(place["team"])))  # the calls below use that token
        try:
            await self._finish(place, text)
        finally:
            team_token.reset(token)

    async def _finish(self, place: dict[str, Any], text: str) -> None:
        surface = self.surface_at(place)
        for ts in place.get("streams") or []:
            await self._stop_stream(surface, str(ts))
        ids = [str(ts) for ts in place.get("ids") or []]
        for index, part in enumerate(split_markdown(text, surface.max_chars)):
            if index < len(ids):
                ts = ids[index]
                await within_budget(
                    self.scheduler, surface.scopes("edit"), partial(surface.edit, ts, part), since=STALEST
                )
            else:
                await within_budget(self.scheduler, surface.scopes("post"), partial(surface.post, part), since=STALEST)

    async def _stop_stream(self, surface: SlackSurface, ts: str) -> None:
        scope = limits.scope("chat.stopStream", surface.team_id, surface.channel_id)
        try:
            await within_budget(
                self.scheduler,
                (scope,),
                lambda: call_slack(self.client, "chat_stopStream", scope.key, channel=surface.channel_id, ts=ts),
                since=STALEST,
            )
        except SlackApiError as exc:
            # Most often Slack ended the abandoned stream itself; the edit below shows the text either way.
            log.info("slack.recovery_stop_stream_refused", ts=ts, error=exc.response.get("error"))
            if exc.response.get("error") != STREAM_EXPIRED:
                log.warning("slack.recovery_stream_left", ts=ts)
