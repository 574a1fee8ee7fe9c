"""GET /metrics after a few answered questions: the figures match what happened on the loopback Slack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.messages import Platform, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_USER_ID, TEAM_ID
from tests.slack.conftest import Harness
from tests.support.metrics import Samples, value
from tests.support.metrics import scrape as scrape_url

if TYPE_CHECKING:
    from core.app import ChatCore

QUESTIONS = {"C1": "1700000800.000100", "C2": "1700000801.000100", "C3": "1700000802.000100"}


async def scrape(harness: Harness) -> Samples:
    return await scrape_url(harness.http, harness.url.replace("/slack/events", "/metrics"))


async def test_metrics_after_three_answered_questions(
    fast_harness: Harness, core: ChatCore, fake_anthropic: FakeAnthropic
) -> None:
    harness = fast_harness  # the budgets on a 20x clock: the 429s' waits and the pacing shrink alike
    harness.slack.storm("chat.update", times=2, retry_after=0.2)  # two 429s along the way
    for channel, ts in QUESTIONS.items():
        fake_anthropic.script("An answer in a few words, streamed in small pieces.", chunk_chars=5, delay_s=0.05)
        reply = await harness.event(
            {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> question?", "ts": ts, "channel": channel}
        )
        assert reply.status == 200
    await harness.settle()
    samples = await scrape(harness)

    assert value(samples, "chatbot_replies_total", platform="slack", outcome="answered") == 3
    assert value(samples, "chatbot_replies_in_flight", platform="slack") == 0
    assert value(samples, "chatbot_first_text_seconds_count", platform="slack") == 3
    assert value(samples, "chatbot_first_text_seconds_bucket", platform="slack", le="+Inf") == 3
    staleness = value(samples, "chatbot_staleness_seconds_count", platform="slack")
    assert staleness >= 3  # at least one edit with new text per reply

    calls = {m: len(harness.slack.calls_to(m, ok_only=False)) for m in ("chat.postMessage", "chat.update")}
    assert (
        value(samples, "chatbot_platform_requests_total", platform="slack", scope="chat.postMessage")
        == calls["chat.postMessage"]
    )
    assert (
        value(samples, "chatbot_platform_requests_total", platform="slack", scope="chat.update") == calls["chat.update"]
    )
    assert value(samples, "chatbot_platform_rate_limited_total", platform="slack", scope="chat.update") == 2

    # Tokens: what the store recorded with each reply, summed, under the workspace's key.
    ws = WorkspaceRef(Platform.SLACK, TEAM_ID)
    used_in = used_out = 0
    for channel, ts in QUESTIONS.items():
        thread = await core.store.find_thread(ws, channel, ts)
        assert thread is not None
        for message in (await core.store.messages(ws, thread)).items:
            used_in += message.usage.input_tokens
            used_out += message.usage.output_tokens
    assert used_in > 0 and used_out > 0
    assert value(samples, "chatbot_tokens_total", workspace=ws.key, kind="input") == used_in
    assert value(samples, "chatbot_tokens_total", workspace=ws.key, kind="output") == used_out

    # Prompt caching: the instructions are the same for every question, so the first writes them to the
    # cache and the later ones read them (the loopback API counts as the Messages API documents).
    system = fake_anthropic.requests[-1]["system"]
    assert isinstance(system, list) and all(b["cache_control"] == {"type": "ephemeral"} for b in system)
    assert value(samples, "chatbot_tokens_total", workspace=ws.key, kind="cache_write") > 0
    assert value(samples, "chatbot_tokens_total", workspace=ws.key, kind="cache_read") > 0

    assert value(samples, "chatbot_part_seconds_count", part="llm", operation="first_token") == 3
    assert value(samples, "chatbot_part_seconds_count", part="llm", operation="stream") == 3
    assert value(samples, "chatbot_part_seconds_count", part="retriever", operation="search") == 3
    assert value(samples, "chatbot_part_seconds_count", part="store", operation="claim_event") == 3
    assert value(samples, "chatbot_part_seconds_count", part="store", operation="complete_message") == 3
