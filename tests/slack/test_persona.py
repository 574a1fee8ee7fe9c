"""A channel's own system prompt and model, set with /chatbot, reach the model request for questions in that
channel and its threads; other channels keep the workspace's."""

from __future__ import annotations

import asyncio
import json

from tests.fakes.anthropic import FakeAnthropic
from tests.slack.conftest import Harness
from tests.slack.test_conversations import answered, mention


async def command(h: Harness, text: str, user: str = "UADMIN") -> str:
    before = len(h.slack.responses)
    reply = await h.command(text, user_id=user)
    assert reply.status == 200
    for _ in range(200):
        if len(h.slack.responses) > before:
            return str(h.slack.responses[-1]["text"])
        await asyncio.sleep(0.05)
    raise AssertionError("no response to the command")


async def test_a_channel_prompt_and_model_reach_the_model_request(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = harness
    h.slack.add_user("UADMIN", name="admin", is_admin=True)
    assert "own prompt" in await command(h, "channel prompt <#C9|support> Answer as the support team, in French.")
    assert "own model" in await command(h, "channel model <#C9> claude-haiku-4-5")
    assert "<#C9>" in await command(h, "settings")
    assert "Not allowed" in await command(h, "channel prompt <#C9> Say anything.", user="UMEMBER")

    question = mention("how do refunds work?", channel="C9")
    await answered(h, question)
    request = fake_anthropic.last_request
    assert request["model"] == "claude-haiku-4-5"
    assert "Answer as the support team, in French." in json.dumps(request["system"])

    await answered(h, mention("and for annual plans?", channel="C9", thread_ts=question["ts"]))  # its thread
    request = fake_anthropic.last_request
    assert request["model"] == "claude-haiku-4-5"
    assert "Answer as the support team, in French." in json.dumps(request["system"])

    await answered(h, mention("how do refunds work?", channel="C1"))  # elsewhere: the workspace's
    request = fake_anthropic.last_request
    assert request["model"] != "claude-haiku-4-5"
    assert "support team" not in json.dumps(request["system"])
