"""Discord's side of recovery (core.recovery.ReplyPlatform): finish a reply another run left half-shown,
and reopen a reply's place for a kept question.

The place is what DiscordSurface.place() stored at each post: the channel, the thread it is in, the
question it answers and every part posted so far. An interrupted reply is finished with one edit of
its last part: that part's share of the text so far, then the visible "interrupted" marker. The parts
before it are already full, and no part is added: when the text so far is longer than the parts
hold, the last part is cut so the marker still fits at its end (Discord's 2,000 characters a
message). The last part is read first: the text goes on from where that part begins (the stream's
own cut), and where the stored text trails what it shows (by up to one delta write), it keeps what it
shows (visible text only grows).
Each call waits for its grant in the channel's budgets (bots/discord/limits.py), as any reply does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord
import structlog

from bots.discord import limits
from bots.discord.render import tables_to_code
from bots.discord.surface import MAX_CONTENT, DiscordSurface
from bots.discord.threads import ThreadPlan
from core.markdown import split_markdown
from core.pacing import STALEST, EditScheduler, within_budget
from core.recovery import INTERRUPTED_MARKER, Reopened

log = structlog.get_logger(__name__)


def last_part(text: str, parts: int, shown: str = "") -> str:
    """The content of the last of `parts` messages once `text` (the reply so far, then the marker)
    ends there, cut to leave room for the marker, then the marker.

    With `shown` (what that part shows now), it goes on from where `shown` begins in the text: the
    stream cut its parts as it went, which need not be where a split of the whole text would; and
    where the stored text trails what is shown, it keeps what is shown. Without, it is the part's
    share of a split of the whole text."""
    body = text.removesuffix(INTERRUPTED_MARKER)
    marker = text[len(body) :]  # the marker, if `text` ends with it
    rendered = tables_to_code(body)
    shown = shown.removesuffix(marker) if marker else shown  # finished before: the same edit again
    at = rendered.rfind(shown[:200]) if shown else -1
    if at >= 0:
        content = rendered[at:] if len(rendered) - at > len(shown) else shown
    else:
        shares = split_markdown(body, MAX_CONTENT) or [""]
        content = tables_to_code(shares[min(parts, len(shares)) - 1])
    room = MAX_CONTENT - len(marker)
    if len(content) > room:
        cut = max(content.rfind(" ", 0, room), content.rfind("\n", 0, room))
        content = content[: cut if cut > room // 2 else room].rstrip()
    return content + marker


class DiscordReplies:
    def __init__(
        self,
        client: discord.Client,
        scheduler: EditScheduler,
        open_thread: Callable[[ThreadPlan], Awaitable[discord.abc.Messageable | None]] | None = None,
    ) -> None:
        self.client = client  # logged in: its HTTP session makes the calls
        self.scheduler = scheduler
        self.open_thread = open_thread  # a held question's thread, opened by whoever answers it

    def surface_at(self, place: dict[str, Any], *, parts: bool = False) -> DiscordSurface:
        """A surface in the reply's channel or thread, answering its question (with its parts, if `parts`)."""
        channel = self._channel(place)
        question = place.get("reply_to")
        plan = place.get("open")
        return DiscordSurface(
            channel,
            channel_id=channel.id,
            scheduler=self.scheduler,
            reply_to=channel.get_partial_message(int(question)) if question else None,
            posted=[channel.get_partial_message(int(i)) for i in place.get("ids") or []] if parts else (),
            thread_plan=ThreadPlan.from_place(channel.id, plan) if plan and not place.get("thread") else None,
            open_thread=self.open_thread,
        )

    def _channel(self, place: dict[str, Any]) -> discord.PartialMessageable:
        """Where the reply's messages are: its thread, else its channel (REST needs no cached channel)."""
        return self.client.get_partial_messageable(int(place.get("thread") or place["channel"]))

    def reopen(self, place: dict[str, Any]) -> Reopened:
        """A new surface where a kept question is answered (it ends with its reply: nothing to close)."""
        surface = self.surface_at(place)
        return Reopened(surface, self.scheduler, _nothing)

    async def finish_interrupted(self, place: dict[str, Any], text: str) -> None:
        ids = [str(i) for i in place.get("ids") or []]
        surface = self.surface_at(place, parts=True)
        if not ids:  # nothing was posted yet: the reply appears now, already finished
            content = last_part(text, 1)
            await within_budget(self.scheduler, surface.scopes("post"), lambda: surface.post(content), since=STALEST)
            return
        last = self._channel(place).get_partial_message(int(ids[-1]))
        try:
            scopes = limits.history_scopes(surface.channel_id)
            shown = await within_budget(self.scheduler, scopes, last.fetch, since=STALEST)
            content = last_part(text, len(ids), shown.content)
            edit = surface.scopes("edit")
            await within_budget(self.scheduler, edit, lambda: surface.replace(ids[-1], content), since=STALEST)
        except discord.NotFound:
            log.info("discord.recovery_part_gone", message=ids[-1])  # deleted: nothing left to finish there


async def _nothing() -> None:
    return None
