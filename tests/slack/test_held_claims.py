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
