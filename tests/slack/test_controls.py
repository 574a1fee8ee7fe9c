"""Stop and Regenerate on Slack, end to end: signed block_actions clicks through the real Bolt app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from core.app import build_core
from core.config import Settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeMessage, FakeSlack, block_actions_body, signed_headers
from tests.slack.conftest import Harness, make_bot, serve
from tests.slack.test_conversations import answered, mention

FINISHED = ["chatbot_regenerate", "chatbot_up", "chatbot_down"]  # a finished reply's buttons
LONG = "This answer takes a long while to write, one small piece after another. " * 20


def buttons(message: FakeMessage) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b.get("type") == "actions" for e in b["elements"]]


async def click(
    h: Harness, action_id: str, message: FakeMessage, user: str, action_ts: str = "", *, value: str = ""
) -> None:
    """Press a button the message shows (or, with `value`, one it showed: a delivery Slack repeats)."""
    value = value or next(b["value"] for b in buttons(message) if b["action_id"] == action_id)
    body = block_actions_body(action_id, value, user_id=user, message=message, action_ts=action_ts)
    reply = await h.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))
    assert reply.status == 200, reply.text


async def streaming_reply(h: Harness, channel: str = "C1") -> FakeMessage:
    for _ in range(400):
        replies = h.slack.replies_in(channel)
        if replies and any(b["action_id"] == "chatbot_stop" for b in buttons(replies[0])):
            return replies[0]
        await asyncio.sleep(0.025)
    raise AssertionError("no reply with a Stop button")


async def stopped_within(h: Harness, reply: FakeMessage, clicked: float, how: str) -> float:
    """Seconds from the click until the reply shows the stopped marker and streams no more (printed: the
    figure to read; the assertion is generous for a shared machine)."""
    loop = asyncio.get_running_loop()
    while reply.streaming or not h.slack.shown_text(reply).endswith("_(stopped)_"):
        assert loop.time() - clicked < 10, "the reply was not stopped"
        await asyncio.sleep(0.005)
    took = time.monotonic() - clicked
    print(f"Stop to a reply marked stopped ({how}): {took:.3f}s")
    assert took < 5, f"Stop took {took:.2f}s"
    return took


async def test_stop_ends_a_streaming_reply_marked_stopped(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    h = harness
    fake_anthropic.script(LONG, chunk_chars=10, delay_s=0.1)  # ~15 s if left alone
    await h.event(mention("write me an essay", user="U1"))
    reply = await streaming_reply(h)

    await click(h, "chatbot_stop", reply, user="U2")  # not the asker, not a curator: refused
    await asyncio.sleep(0.3)
    assert any("Only the person who asked" in e["text"] for e in h.slack.ephemerals)
    assert h.bot.in_flight >= 1  # still streaming

    stop = next(b["value"] for b in buttons(reply) if b["action_id"] == "chatbot_stop")
    clicked = time.monotonic()
    await click(h, "chatbot_stop", reply, user="U1", action_ts="1.1")
    await click(h, "chatbot_stop", reply, user="U1", action_ts="1.1", value=stop)  # delivered twice: one stop
    await stopped_within(h, reply, clicked, "chat.update")
    await h.settle()
    shown = h.slack.shown_text(h.slack.replies_in("C1")[0])
    assert shown.endswith("_(stopped)_")
    assert len(shown) < len(LONG)
    assert [b["action_id"] for b in buttons(h.slack.replies_in("C1")[0])] == FINISHED
    # The stopped text and the button swap land in ONE chat.update, not a second one behind it in the budget.
    last = h.slack.calls_to("chat.update")[-1].args
    assert last["ts"] == reply.ts and "_(stopped)_" in json.dumps(last["blocks"])
    assert "chatbot_regenerate" in json.dumps(last["blocks"])
    assert not h.bot.errors, list(h.bot.errors)


async def test_regenerate_replaces_the_answer_in_place(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    h = harness
    fake_anthropic.script("The first answer.")
    question = mention("what is our deploy day?", user="U1")
    await answered(h, question)
    [reply] = h.slack.replies_in("C1")
    assert [b["action_id"] for b in buttons(reply)] == FINISHED

    fake_anthropic.script("A better second answer.")
    await click(h, "chatbot_regenerate", reply, user="U1", action_ts="2.1")
    await click(h, "chatbot_regenerate", reply, user="U1", action_ts="2.1")  # a retried delivery
    await h.settle()
    [again] = h.slack.replies_in("C1")  # still one reply: the same message, answered again
    assert again.ts == reply.ts
    assert h.slack.shown_text(again) == "A better second answer."
    assert len(fake_anthropic.requests) == 2
    assert fake_anthropic.last_request["messages"][-1]["content"] == "what is our deploy day?"
    assert [b["action_id"] for b in buttons(again)] == FINISHED
    assert not h.bot.errors, list(h.bot.errors)


async def test_thumbs_down_with_a_reason_is_stored_and_listed_for_curators(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    from tests.slack.test_persona import command

    h = harness
    fake_anthropic.script("Deploys happen on Fridays [1].")
    await answered(h, mention("when do we deploy?", user="U1"))
    [reply] = h.slack.replies_in("C1")
    assert [b["action_id"] for b in buttons(reply)] == FINISHED

    await click(h, "chatbot_down", reply, user="U1", action_ts="3.1")
    await h.settle()
    ask = h.slack.ephemerals[-1]
    assert "What was wrong?" in ask["text"]
    blocks = json.loads(ask["blocks"]) if isinstance(ask["blocks"], str) else ask["blocks"]
    value = next(b for b in blocks if b["type"] == "actions")["elements"][0]["value"]
    state = {"chatbot_reason": {"reason": {"type": "plain_text_input", "value": "We deploy on Tuesdays."}}}
    body = block_actions_body("chatbot_reason", value, user_id="U1", message=reply, state=state)
    assert (await h.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))).status == 200
    await h.settle()

    assert "Not allowed" in await command(h, "feedback", user="U1")  # a member
    h.slack.add_user("UADMIN", name="admin", is_admin=True)
    listed = await command(h, "feedback", user="UADMIN")
    assert "when do we deploy?" in listed and "Deploys happen on Fridays" in listed
    assert "We deploy on Tuesdays." in listed and "<@U1>" in listed


@asynccontextmanager
async def bot_process(data_dir: Path, fake_anthropic: FakeAnthropic, slack: FakeSlack) -> AsyncIterator[Harness]:
    """One run of the bot process: its own core over the data folder, its own Bolt app."""
    settings = Settings(CHATBOT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=fake_anthropic.url)
    chat_core = await build_core(settings)
    try:
        async for h in serve(make_bot(chat_core, slack), slack):
            yield h
    finally:
        await chat_core.close()


async def test_buttons_work_after_a_restart(data_dir: Path, fake_anthropic: FakeAnthropic, slack: FakeSlack) -> None:
    from tests.slack.test_persona import command

    fake_anthropic.script("The first answer.")
    async with bot_process(data_dir, fake_anthropic, slack) as first:
        await answered(first, mention("what is our deploy day?", user="U1"))
    [reply] = slack.replies_in("C1")
    assert [b["action_id"] for b in buttons(reply)] == FINISHED

    async with bot_process(data_dir, fake_anthropic, slack) as h:  # a new process: nothing in memory
        await click(h, "chatbot_down", reply, user="U1", action_ts="5.1")
        await h.settle()
        assert "What was wrong?" in slack.ephemerals[-1]["text"]
        slack.add_user("UADMIN", name="admin", is_admin=True)
        listed = await command(h, "feedback", user="UADMIN")
        assert "what is our deploy day?" in listed and "The first answer." in listed

        # A Stop button left from before the restart (the reply no longer streams) says so.
        ref = next(b["value"] for b in buttons(reply) if b["action_id"] == "chatbot_regenerate")
        body = block_actions_body("chatbot_stop", ref, user_id="U1", message=reply, action_ts="5.2")
        form = "application/x-www-form-urlencoded"
        assert (await h.post(body, signed_headers(body, content_type=form))).status == 200
        await h.settle()
        assert "no longer streaming" in slack.ephemerals[-1]["text"]

        fake_anthropic.script("A better second answer.")
        await click(h, "chatbot_regenerate", reply, user="U1", action_ts="5.3")
        await h.settle()
        [again] = slack.replies_in("C1")
        assert again.ts == reply.ts and slack.shown_text(again) == "A better second answer."
        assert fake_anthropic.last_request["messages"][-1]["content"] == "what is our deploy day?"
        assert not h.bot.errors, list(h.bot.errors)


async def test_stop_ends_a_native_stream_marked_stopped(native_harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    """A DM thread streams natively (chat.startStream): its Stop button is a blocks chunk of the stream."""
    from tests.slack.test_conversations import DM_THREAD, dm

    h = native_harness
    fake_anthropic.script(LONG, chunk_chars=10, delay_s=0.1)
    await h.event(dm("write me an essay", user="U1", thread_ts=DM_THREAD))
    reply = await streaming_reply(h, "D1")
    assert reply.streaming  # the stream itself carries the button
    [start] = h.slack.calls_to("chat.startStream")
    assert [c["type"] for c in start.args["chunks"]] == ["blocks"] and "markdown_text" not in start.args
    await asyncio.sleep(2.5)  # well into the answer: the appends have spent their budget's burst

    clicked = time.monotonic()
    await click(h, "chatbot_stop", reply, user="U1", action_ts="7.1")
    await stopped_within(h, reply, clicked, "native stream")
    await h.settle()
    [stopped] = h.slack.replies_in("D1")
    shown = h.slack.shown_text(stopped)
    assert shown.endswith("_(stopped)_") and len(shown) < len(LONG)
    assert [b["action_id"] for b in buttons(stopped)] == FINISHED  # Stop became Regenerate, 👍, 👎
    [stop] = h.slack.calls_to("chat.stopStream")
    assert stop.args["markdown_text"].endswith("_(stopped)_")  # the marker ends the stream in one call
    assert not h.bot.errors, list(h.bot.errors)


async def test_stop_goes_out_at_once_while_other_replies_stream_in_the_workspace(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    """chat.update's Tier 3 budget is the workspace's, shared by every reply: the final edit of a Stop
    takes the write kept for finals instead of waiting for the bucket's next token behind the others."""
    h = harness
    for _ in range(3):
        fake_anthropic.script(LONG, chunk_chars=10, delay_s=0.06)
    for channel in ("C2", "C3"):
        await h.event(mention("write me an essay", user="U9", channel=channel))
    await h.event(mention("write me an essay", user="U1"))
    reply = await streaming_reply(h)
    await asyncio.sleep(2.5)  # three replies editing about once a second each have drained the burst
    clicked = time.monotonic()
    await click(h, "chatbot_stop", reply, user="U1", action_ts="9.1")
    await stopped_within(h, reply, clicked, "chat.update, 3 replies streaming in the workspace")
    for i, channel in enumerate(("C2", "C3")):  # the others need not run to their end
        await click(h, "chatbot_stop", await streaming_reply(h, channel), user="U9", action_ts=f"9.{i + 2}")
    await h.settle()
    assert not h.bot.errors, list(h.bot.errors)
