"""Stop and Regenerate on Slack, end to end: signed block_actions clicks through the real Bolt app."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeMessage, block_actions_body, signed_headers
from tests.slack.conftest import Harness
from tests.slack.test_conversations import answered, mention

FINISHED = ["chatbot_regenerate", "chatbot_up", "chatbot_down"]  # a finished reply's buttons
LONG = "This answer takes a long while to write, one small piece after another. " * 20


def buttons(message: FakeMessage) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b.get("type") == "actions" for e in b["elements"]]


async def click(h: Harness, action_id: str, message: FakeMessage, user: str, action_ts: str = "") -> None:
    value = next(b["value"] for b in buttons(message) if b["action_id"] == action_id)
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


async def test_stop_ends_a_streaming_reply_marked_stopped(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    h = harness
    fake_anthropic.script(LONG, chunk_chars=10, delay_s=0.1)  # ~15 s if left alone
    await h.event(mention("write me an essay", user="U1"))
    reply = await streaming_reply(h)

    await click(h, "chatbot_stop", reply, user="U2")  # not the asker, not a curator: refused
    await asyncio.sleep(0.3)
    assert any("Only the person who asked" in e["text"] for e in h.slack.ephemerals)
    assert h.bot.in_flight >= 1  # still streaming

    clicked = time.monotonic()
    await click(h, "chatbot_stop", reply, user="U1", action_ts="1.1")
    await click(h, "chatbot_stop", reply, user="U1", action_ts="1.1")  # delivered twice: one stop
    await h.settle()
    took = time.monotonic() - clicked
    shown = h.slack.shown_text(h.slack.replies_in("C1")[0])
    assert shown.endswith("_(stopped)_")
    assert len(shown) < len(LONG)
    assert took < 5, f"Stop took {took:.2f}s"  # generous for a shared machine; bench measures it
    assert [b["action_id"] for b in buttons(h.slack.replies_in("C1")[0])] == FINISHED
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
