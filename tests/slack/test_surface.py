"""SlackSurface against the loopback Slack Web API with the real AsyncWebClient, driven by the real streaming engine."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.surface import SECTION_LIMIT, SlackSurface, render_blocks
from core.messages import ReplyStatus, Source
from core.streaming import EditScheduler, ReplyStreamer
from core.surface import RateLimited
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.slack.conftest import FastClock


def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(
        token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1)]
    )


def surface(slack: FakeSlack, *, thread_ts: str | None = "1.0", assistant: bool = False) -> SlackSurface:
    return SlackSurface(
        client(slack), team_id="T1", channel_id="C1", user_id="U1", thread_ts=thread_ts, assistant_thread=assistant
    )


SOURCES = [
    Source(1, "Deploy guide", "https://wiki.test/deploy", "..."),
    Source(2, "Local notes", "notes/local.md", "..."),
]


async def test_post_and_edit_put_the_answer_in_section_blocks(slack: FakeSlack) -> None:
    s = surface(slack)
    ts = await s.post("…")
    await s.edit(ts, "**Roll back** with `deploy --undo` [1].", sources=SOURCES)
    [message] = slack.replies_in("C1", "1.0")
    assert slack.shown_text(message) == "*Roll back* with `deploy --undo` [1]."
    context = [b for b in message.blocks if b["type"] == "context"]
    assert [e["text"] for e in context[0]["elements"]] == [
        "<https://wiki.test/deploy|[1] Deploy guide>",
        "[2] Local notes",
    ]
    post = slack.calls_to("chat.postMessage")[0]
    assert post.args["thread_ts"] == "1.0" and post.args["unfurl_links"] is False


async def test_top_level_post_has_no_thread(slack: FakeSlack) -> None:
    await surface(slack, thread_ts=None).post("hi")
    assert "thread_ts" not in slack.calls_to("chat.postMessage")[0].args


async def test_long_text_is_split_into_sections_within_slacks_limit() -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 80 for i in range(12))
    _, blocks = render_blocks(text)
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(sections) >= 2 and all(len(t) <= SECTION_LIMIT for t in sections)
    assert " ".join(" ".join(sections).split()) == " ".join(text.split())


async def test_rate_limit_becomes_rate_limited_with_retry_after(slack: FakeSlack) -> None:
    s = surface(slack)
    ts = await s.post("first")
    slack.storm("chat.update", times=1, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        await s.edit(ts, "second")
    assert caught.value.retry_after == 2.0
    assert caught.value.scope_key == "slack:T1:chat.update"
    assert len(slack.calls_to("chat.update", ok_only=False)) == 1  # the SDK did not retry on its own


async def test_scopes_are_per_workspace_for_updates_and_per_channel_for_posts(slack: FakeSlack) -> None:
    s = surface(slack)
    other = SlackSurface(client(slack), team_id="T1", channel_id="C2", user_id="U1", thread_ts=None)
    assert s.scopes("edit") == other.scopes("edit")
    assert s.scopes("post") != other.scopes("post")
    assert s.scopes("edit")[0].per_second == pytest.approx(50 / 60)


async def test_notice_is_ephemeral_and_thinking_only_in_assistant_threads(slack: FakeSlack) -> None:
    await surface(slack).notice("Sorry, **no**.")
    await surface(slack).thinking()
    await surface(slack, assistant=True).thinking()
    [ephemeral] = slack.ephemerals
    assert ephemeral["user"] == "U1" and ephemeral["text"] == "Sorry, *no*." and ephemeral["thread_ts"] == "1.0"
    [status] = slack.calls_to("assistant.threads.setStatus")
    assert status.args["status"] == "is thinking…"


async def test_streamed_reply_survives_a_429_storm_and_lands_the_exact_final_text(slack: FakeSlack) -> None:
    """The engine drives the surface; chat.update answers 429 many times; the final text still lands."""
    s = surface(slack)
    scheduler = EditScheduler(FastClock())
    streamer = ReplyStreamer(s, scheduler)
    await streamer.start()
    slack.storm("chat.update", times=6, retry_after=1)
    words = [f"word{i} " for i in range(60)]
    for word in words:
        streamer.feed(word)
        await asyncio.sleep(0.005)
    final = await asyncio.wait_for(streamer.finish(ReplyStatus.COMPLETE, sources=SOURCES[:1]), 30)
    [message] = slack.replies_in("C1")
    assert slack.shown_text(message) == "".join(words).strip() == final.strip()
    assert scheduler.rate_limited >= 1
    assert len(slack.calls_to("chat.update", ok_only=False)) > len(slack.calls_to("chat.update"))
    assert message.blocks[-1]["type"] == "context"
