"""With several processes on one store (scale-out), a claim is held until the answer is posted
(core.handover): deliveries of one message to the same process (Slack's retry, the app_mention +
message pair) still get exactly one reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import ChatCore, build_core
from core.config import Settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack, event_body, signed_headers
from tests.slack.conftest import Harness, make_bot, serve
from tests.slack.test_conversations import channel_message, mention


@pytest.fixture
async def scaled(data_dir: Path, fake_anthropic: FakeAnthropic, slack: FakeSlack) -> AsyncIterator[Harness]:
    settings = Settings(
        CHATBOT_DATA_DIR=data_dir,
        ANTHROPIC_API_KEY="test",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        CHATBOT_SCALE_OUT=True,
    )
    core: ChatCore = await build_core(settings)
    try:
        assert core.handover is not None  # claims are held in the store
        bot = make_bot(core, slack)
        bot.attach_recovery()  # as `chatbot slack` does: replies (and held questions) can be reopened here
        async for harness in serve(bot, slack):
            yield harness
    finally:
        await core.close()


async def test_every_delivery_of_one_message_to_one_process_gets_one_reply(
    scaled: Harness, fake_anthropic: FakeAnthropic
) -> None:
    event = mention("where are the design docs?")
    body = event_body(event)
    retry = signed_headers(body, content_type="application/json", timestamp=int(time.time()) - 2, retry_num=1)
    scaled.slack.storm("chat.postMessage", times=6, retry_after=0.3)  # the answer's first post waits
    await scaled.event(event)
    for _ in range(200):  # until the first delivery holds the claim and tries to post
        if scaled.slack.calls_to("chat.postMessage", ok_only=False):
            break
        await asyncio.sleep(0.02)
    handover = scaled.bot.core.handover
    key = f"slack:{scaled.slack.team_id}:C1:{event['ts']}"
    assert handover is not None and list(handover.held) == [key]
    # Delivered again while the first is held here: the pair's message event, then Slack's retry.
    await asyncio.gather(scaled.event(channel_message(event["text"], ts=event["ts"])), scaled.post(body, retry))
    await asyncio.sleep(0.5)  # both handled as duplicates: the first delivery still holds the question
    assert list(handover.held) == [key]
    await scaled.settle()
    assert len(scaled.slack.replies_in("C1")) == 1
    assert len(fake_anthropic.requests) == 1
    assert handover.held == {}  # the answer's first post ended the hold


async def test_a_guests_question_is_held_before_their_facts_are_known_and_still_gets_a_guests_answer(
    scaled: Harness, fake_anthropic: FakeAnthropic
) -> None:
    """The question is held at once (users.info waits in its budget), with facts that give no more than a
    guest's rights; once users.info says the author is a guest, the guest is refused as a guest."""
    scaled.slack.add_user("UG", is_restricted=True)
    scaled.slack.storm("users.info", times=10_000, retry_after=0.3)
    event = mention("what is the on-call rota?", user="UG")
    await scaled.event(event)
    handover = scaled.bot.core.handover
    key = f"slack:{scaled.slack.team_id}:C1:{event['ts']}"
    assert handover is not None
    for _ in range(200):  # held while the author's facts are still unknown
        if key in handover.held and scaled.slack.calls_to("users.info", ok_only=False):
            break
        await asyncio.sleep(0.02)
    assert key in handover.held and not scaled.slack.calls_to("users.info")
    assert not fake_anthropic.requests and not scaled.slack.ephemerals
    scaled.slack.faults["users.info"].clear()  # now Slack says who asked: a guest
    await scaled.settle()
    [notice] = scaled.slack.ephemerals
    assert notice["user"] == "UG" and "as a guest" in notice["text"]
    assert not scaled.slack.replies_in("C1") and not fake_anthropic.requests
    assert handover.held == {}  # the refusal settled the question: its hold was released
