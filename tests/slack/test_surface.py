"""SlackSurface against the loopback Slack Web API with the real AsyncWebClient, driven by the real streaming engine."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.mrkdwn import to_mrkdwn
from bots.slack.surface import SECTION_LIMIT, SlackSurface, StreamRefusals, render_blocks
from core.messages import ReplyStatus, Source
from core.pacing import EditScheduler
from core.streaming import ReplyStreamer
from core.surface import RateLimited
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.slack.conftest import FastClock


def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(
        token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1)]
    )


def surface(
    slack: FakeSlack,
    *,
    thread_ts: str | None = "1.0",
    assistant: bool = False,
    native: bool = False,
    channel: str = "C1",
) -> SlackSurface:
    # Native streams only reach everyone in DMs and assistant threads: native tests stream in an assistant thread.
    return SlackSurface(
        client(slack),
        scheduler=EditScheduler(FastClock()),
        team_id="T1",
        channel_id=channel,
        user_id="U1",
        thread_ts=thread_ts,
        assistant_thread=assistant or native,
        native_streaming=native,
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
    other = SlackSurface(
        client(slack), scheduler=EditScheduler(), team_id="T1", channel_id="C2", user_id="U1", thread_ts=None
    )
    assert s.scopes("edit") == other.scopes("edit")
    assert s.scopes("post") != other.scopes("post")
    assert s.scopes("edit")[0].per_second == limits.METHODS["chat.update"].budget.per_second


async def test_native_streaming_only_where_the_audience_is_one_person(slack: FakeSlack) -> None:
    def where(channel: str, *, assistant: bool = False) -> bool:
        return SlackSurface(
            client(slack), scheduler=EditScheduler(), team_id="T1", channel_id=channel, user_id="U1",
            thread_ts="1.0", assistant_thread=assistant, native_streaming=True,
        ).native_streaming  # fmt: skip

    assert where("D1") and where("C1", assistant=True)
    assert not where("C1")  # a channel thread: others would watch a frozen reply
    s = SlackSurface(
        client(slack), scheduler=EditScheduler(), team_id="T1", channel_id="C1", user_id="U1", thread_ts="1.0",
        native_streaming=True,
    )  # fmt: skip
    ts = await s.post("hello")
    await s.edit(ts, "hello there")
    assert not slack.calls_to("chat.startStream", ok_only=False)
    assert slack.shown_text(slack.replies_in("C1")[0]) == "hello there"


async def test_notice_is_ephemeral_and_thinking_only_in_assistant_threads(slack: FakeSlack) -> None:
    await surface(slack).notice("Sorry, **no**.")
    await surface(slack).thinking()
    await surface(slack, assistant=True).thinking()
    [ephemeral] = slack.ephemerals
    assert ephemeral["user"] == "U1" and ephemeral["text"] == "Sorry, *no*." and ephemeral["thread_ts"] == "1.0"
    [status] = slack.calls_to("assistant.threads.setStatus")
    assert status.args["status"] == "is thinking…"


async def stream_words_through_a_429_storm(slack: FakeSlack, s: SlackSurface, method: str) -> tuple[str, str]:
    """The engine drives the surface while `method` answers 429 six times: (text fed, final text)."""
    scheduler = EditScheduler(FastClock())
    streamer = ReplyStreamer(s, scheduler)
    await streamer.start()
    slack.storm(method, times=6, retry_after=1)
    words = [f"word{i} " for i in range(60)]
    for word in words:
        streamer.feed(word)
        await asyncio.sleep(0.005)
    final = await asyncio.wait_for(streamer.finish(ReplyStatus.COMPLETE, sources=SOURCES[:1]), 30)
    await s.close()
    assert scheduler.rate_limited >= 1
    return "".join(words).strip(), final.strip()


async def test_streamed_reply_survives_a_429_storm_and_lands_the_exact_final_text(slack: FakeSlack) -> None:
    fed, final = await stream_words_through_a_429_storm(slack, surface(slack), "chat.update")
    [message] = slack.replies_in("C1")
    assert slack.shown_text(message) == fed == final
    assert len(slack.calls_to("chat.update", ok_only=False)) > len(slack.calls_to("chat.update"))
    assert message.blocks[-1]["type"] == "context"


# -- native streaming -------------------------------------------------------------------------------


async def test_native_stream_appends_what_is_new_and_stops_with_the_sources(slack: FakeSlack) -> None:
    s = surface(slack, native=True)
    ts = await s.post("…")  # the placeholder is not streamed: Slack shows the stream as being written
    await s.edit(ts, "**Roll back** with")
    await s.edit(ts, "**Roll back** with `deploy --undo` [1].", sources=SOURCES)
    [message] = slack.replies_in("C1", "1.0")
    assert message.text == "**Roll back** with `deploy --undo` [1]." and not message.streaming
    [start] = slack.calls_to("chat.startStream")
    assert "markdown_text" not in start.args
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == ("T1", "U1")
    assert [c.args["markdown_text"] for c in slack.calls_to("chat.appendStream")] == ["**Roll back** with"]
    [stop] = slack.calls_to("chat.stopStream")
    assert stop.args["markdown_text"] == " `deploy --undo` [1]."
    assert message.blocks[-1]["elements"][0]["text"] == "<https://wiki.test/deploy|[1] Deploy guide>"
    assert not slack.calls_to("chat.postMessage", ok_only=False) and not slack.calls_to("chat.update", ok_only=False)
    await s.close()  # nothing left open: no second stop
    assert len(slack.calls_to("chat.stopStream", ok_only=False)) == 1


async def test_native_stream_without_sources_is_stopped_by_close(slack: FakeSlack) -> None:
    s = surface(slack, native=True, channel="D1")
    ts = await s.post("Hello")
    await s.edit(ts, "Hello there.")
    [message] = slack.replies_in("D1")
    assert message.streaming
    await s.close()
    assert not message.streaming and message.text == "Hello there."
    [start] = slack.calls_to("chat.startStream")
    assert "recipient_user_id" not in start.args  # a DM names no recipient


async def test_native_stream_rewrite_stops_the_stream_and_replaces_the_message(slack: FakeSlack) -> None:
    """A table (shown as code) or a moved split cannot be appended: stop, then chat.update."""
    s = surface(slack, native=True)
    ts = await s.post("Sizes:")
    table = "Sizes:\n\n| name | size |\n|---|---|\n| a | 1 |"
    await s.edit(ts, table)
    [message] = slack.replies_in("C1")
    assert not message.streaming
    assert slack.shown_text(message) == to_mrkdwn(table) and "```" in to_mrkdwn(table)
    assert [c.method for c in slack.calls if c.method.startswith("chat.")] == [
        "chat.startStream",
        "chat.stopStream",
        "chat.update",
    ]
    await s.edit(ts, "Other text")  # from now on an ordinary message
    assert slack.shown_text(message) == "Other text"


async def test_native_stream_cannot_ping_a_crowd(slack: FakeSlack) -> None:
    s = surface(slack, native=True)
    ts = await s.post("Tell <")
    await s.edit(ts, "Tell <!channel> and <!here> about <@U123>")
    await s.close()
    [message] = slack.replies_in("C1")
    assert "<!" not in message.text and "<@U123>" in message.text
    assert not slack.calls_to("chat.update", ok_only=False)  # defusing kept the stream append-only


async def test_no_native_stream_at_the_top_level_or_where_slack_refuses_it(slack: FakeSlack) -> None:
    top = surface(slack, native=True, thread_ts=None, channel="D1")
    await top.post("hi")
    assert not slack.calls_to("chat.startStream", ok_only=False)  # Slack streams only in threads

    slack.fail("chat.startStream", error="not_allowed_token_type")
    refused = surface(slack, native=True)
    ts = await refused.post("first")
    await refused.edit(ts, "first, then more")
    assert refused.scopes("edit")[0].key == "slack:T1:chat.update"
    [message] = slack.replies_in("C1")
    assert slack.shown_text(message) == "first, then more"
    assert len(slack.calls_to("chat.startStream", ok_only=False)) == 1  # not tried again for this reply


@pytest.mark.parametrize(("error", "remembered"), [("not_allowed_token_type", True), ("internal_error", False)])
async def test_a_refused_stream_is_remembered_for_the_channel_unless_the_error_was_transient(
    slack: FakeSlack, error: str, remembered: bool
) -> None:
    refusals = StreamRefusals()

    def reply() -> SlackSurface:
        return SlackSurface(
            client(slack), scheduler=EditScheduler(), team_id="T1", channel_id="C1", user_id="U1", thread_ts="1.0",
            assistant_thread=True, native_streaming=True, refusals=refusals,
        )  # fmt: skip

    slack.fail("chat.startStream", error=error)
    await reply().post("first answer")
    await reply().post("second answer")
    assert len(slack.calls_to("chat.startStream", ok_only=False)) == (1 if remembered else 2)
    assert len(slack.calls_to("chat.postMessage")) == (2 if remembered else 1)
    other_channel = SlackSurface(
        client(slack), scheduler=EditScheduler(), team_id="T1", channel_id="C2", user_id="U1", thread_ts="1.0",
        assistant_thread=True, native_streaming=True, refusals=refusals,
    )  # fmt: skip
    assert other_channel.native_streaming


async def test_native_stream_429_keeps_the_stream_and_sends_the_same_text_again(slack: FakeSlack) -> None:
    s = surface(slack, native=True)
    ts = await s.post("one")
    slack.storm("chat.appendStream", times=1, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        await s.edit(ts, "one two")
    assert caught.value.scope_key == "slack:T1:chat.appendStream"
    await s.edit(ts, "one two three")
    [message] = slack.replies_in("C1")
    assert message.text == "one two three" and message.streaming


async def test_native_stream_error_turns_the_message_into_an_ordinary_one(slack: FakeSlack) -> None:
    s = surface(slack, native=True)
    ts = await s.post("one")
    slack.fail("chat.appendStream", error="invalid_arguments")
    with pytest.raises(SlackApiError):
        await s.edit(ts, "one two")
    slack.messages[("C1", ts)].streaming = False  # as Slack would have ended it
    await s.edit(ts, "one two three")
    assert slack.shown_text(slack.replies_in("C1")[0]) == "one two three"


async def test_a_stream_slack_expired_is_finished_with_chat_update_on_its_ts(slack: FakeSlack) -> None:
    s = surface(slack, native=True)
    ts = await s.post("one")
    slack.messages[("C1", ts)].streaming = False  # Slack ended the stream after a pause
    await s.edit(ts, "one two")  # the append answers message_not_in_streaming_state
    [update] = slack.calls_to("chat.update")
    assert update.args["ts"] == ts and slack.shown_text(slack.replies_in("C1")[0]) == "one two"
    expired = surface(slack, native=True)
    ts2 = await expired.post("alpha")
    slack.messages[("C1", ts2)].streaming = False
    await expired.close()  # the stop answers message_not_in_streaming_state: the whole text goes by update
    assert slack.shown_text(slack.messages[("C1", ts2)]) == "alpha"
    assert slack.calls_to("chat.update")[-1].args["ts"] == ts2


async def test_native_streamed_reply_survives_a_429_storm_and_lands_the_exact_final_text(slack: FakeSlack) -> None:
    fed, final = await stream_words_through_a_429_storm(slack, surface(slack, native=True), "chat.appendStream")
    [message] = slack.replies_in("C1")
    assert message.text == fed == final and not message.streaming
    assert len(slack.calls_to("chat.appendStream", ok_only=False)) > len(slack.calls_to("chat.appendStream"))
    assert message.blocks[-1]["type"] == "context"
    assert not slack.calls_to("chat.update", ok_only=False)
