"""Thread context on Slack, end to end: a mention inside a thread of people's messages reaches the model
with the thread (read with conversations.replies through its budget), newest first within the budget."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bots.slack.history import LIMITED_PAGE, TIER3_PAGE
from core.prompt import estimate_tokens
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_USER_ID, FakeSlack
from tests.slack.conftest import Harness, make_bot, serve
from tests.slack.test_conversations import answered, mention


def human_thread(slack: FakeSlack, *, replies: int, channel: str = "C1") -> str:
    """A thread started by Ana, with `replies` messages alternating between Ana and Ben; returns its ts."""
    slack.add_user("UANA", name="Ana")
    slack.add_user("UBEN", name="Ben")
    parent = slack.add_message(channel, "Shall we move the release to Thursday?", user="UANA")
    for i in range(replies):
        user = "UBEN" if i % 2 == 0 else "UANA"
        slack.add_message(channel, f"message {i}: " + "some discussion " * 6, user=user, thread_ts=parent.ts)
    return parent.ts


def request_text(fake: FakeAnthropic) -> str:
    return json.dumps(fake.last_request["messages"])


async def test_a_mention_in_a_human_thread_reaches_the_model_with_who_said_what(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    slack = harness.slack
    slack.add_user("UANA", name="Ana")
    slack.add_user("UBEN", name="Ben")
    parent = slack.add_message("C1", "Shall we move the release to Thursday?", user="UANA")
    slack.add_message("C1", "Thursday works, but QA needs the build by Tuesday.", user="UBEN", thread_ts=parent.ts)
    fake_anthropic.script("You agreed on Thursday, with the build to QA by Tuesday.")
    await answered(harness, mention("what did we agree above?", user="UANA", thread_ts=parent.ts))

    turns = fake_anthropic.last_request["messages"]
    assert [t["role"] for t in turns] == ["user"]  # people's messages and the question: one user turn
    content = turns[0]["content"]
    assert "[Ana, " in content and "Shall we move the release to Thursday?" in content
    assert "[Ben, " in content and "QA needs the build by Tuesday" in content
    assert content.rstrip().endswith("what did we agree above?")
    assert "chat thread you were called into" in json.dumps(fake_anthropic.last_request["system"])
    [read] = slack.calls_to("conversations.replies")
    assert read.args["ts"] == parent.ts and int(read.args["limit"]) == TIER3_PAGE

    # The bot's answer is an assistant turn on the next question; the read is incremental.
    slack.add_message("C1", "And who tells the customers?", user="UBEN", thread_ts=parent.ts)
    fake_anthropic.script("Ana does.")
    await answered(harness, mention("who was it again?", user="UBEN", thread_ts=parent.ts))
    turns = fake_anthropic.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == "You agreed on Thursday, with the build to QA by Tuesday."
    assert "And who tells the customers?" in turns[2]["content"]
    second = slack.calls_to("conversations.replies")[-1]
    assert float(second.args["oldest"]) > float(parent.ts)  # only what is newer than the last read


async def test_a_600_message_thread_fits_the_budget_newest_first(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    thread_ts = human_thread(harness.slack, replies=600)
    await answered(harness, mention("summarize the latest points", user="UANA", thread_ts=thread_ts))

    reads = harness.slack.calls_to("conversations.replies")
    assert len(reads) == -(-601 // TIER3_PAGE)  # paged: every message read, a page per request
    text = request_text(fake_anthropic)
    assert "message 599:" in text and "message 598:" in text  # the newest are kept
    assert "message 0:" not in text  # the oldest dropped ...
    assert "earlier messages of this thread were left out to fit" in text  # ... and said so
    body = fake_anthropic.last_request
    used = estimate_tokens(json.dumps(body["system"])) + sum(estimate_tokens(t["content"]) for t in body["messages"])
    assert used <= harness.bot.core.settings.context_token_budget * 1.1  # JSON quoting adds a little


async def test_a_refused_history_read_still_answers_from_the_stored_history(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    first = mention("what is the staging cluster called?")
    fake_anthropic.script("It is called blue.")
    await answered(harness, first)
    harness.slack.fail("conversations.replies", times=5, error="missing_scope")
    fake_anthropic.script("It runs in Frankfurt.")
    await answered(harness, mention("and where does it run?", thread_ts=first["ts"]))
    turns = fake_anthropic.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]  # the bot's own stored history
    assert turns[1]["content"] == "It is called blue."
    assert harness.slack.shown_text(harness.slack.replies_in("C1", first["ts"])[-1]) == "It runs in Frankfurt."


@pytest.fixture
async def limited_harness(core: Any, slack: FakeSlack) -> AsyncIterator[Harness]:
    """An app distributed outside the Marketplace: conversations.replies once a minute, 15 a page."""
    slack.rate_limit("conversations.replies", per_minute=1, burst=1)
    slack.replies_page_cap = LIMITED_PAGE
    bot = make_bot(core, slack)
    from bots.slack.history import SlackThreadReader

    bot.history = SlackThreadReader(bot.client, bot.users, bot.scheduler, limited=True, max_wait_s=0.2)
    async for h in serve(bot, slack):
        yield h


async def test_an_unlisted_app_reads_within_one_request_a_minute_and_answers_anyway(
    limited_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = limited_harness
    thread_ts = human_thread(h.slack, replies=4)
    await answered(h, mention("what is this about?", user="UANA", thread_ts=thread_ts))
    assert "Shall we move the release to Thursday?" in request_text(fake_anthropic)
    [read] = h.slack.calls_to("conversations.replies")
    assert int(read.args["limit"]) == LIMITED_PAGE

    # Within the minute: no request (the budget says no), the cached thread and the new message Slack
    # delivered as an event serve instead, and nothing was refused with a 429.
    h.slack.add_user("UBEN", name="Ben")
    said = {"type": "message", "channel_type": "channel", "user": "UBEN", "channel": "C1"}
    # (A follow-up in a thread the bot answered in: answered too.)
    await answered(h, {**said, "text": "I vote Friday instead", "ts": h.slack._next_ts(), "thread_ts": thread_ts})
    await answered(h, mention("and now?", user="UANA", thread_ts=thread_ts))
    assert len(h.slack.calls_to("conversations.replies", ok_only=False)) == 1
    text = request_text(fake_anthropic)
    assert "Shall we move the release to Thursday?" in text and "I vote Friday instead" in text
    assert len(fake_anthropic.requests) == 3
    assert BOT_USER_ID not in text  # the bot's mention is not passed on as text


async def test_summarize_this_thread_cites_the_messages_with_permalinks(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    thread_ts = human_thread(harness.slack, replies=3)
    await answered(harness, mention("summarize this thread please", user="UANA", thread_ts=thread_ts))
    request = fake_anthropic.last_request
    text = json.dumps(request["messages"])
    link = f"https://fake.slack.test/archives/C1/p{thread_ts.replace('.', '')}"
    assert link in text  # the parent's permalink, from auth.test's workspace URL
    assert "?thread_ts=" in text  # the replies' permalinks
    assert "cite the messages you draw on with their links" in json.dumps(request["system"])

    # An ordinary question in the thread carries no links (they cost tokens).
    await answered(harness, mention("who proposed Thursday?", user="UBEN", thread_ts=thread_ts))
    people = [t["content"] for t in fake_anthropic.last_request["messages"] if t["role"] == "user"]
    assert people and not any("archives/C1" in c for c in people)


async def test_regenerate_reads_the_thread_again_as_a_new_question_would(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    from tests.slack.test_controls import click

    slack = harness.slack
    parent_ts = human_thread(slack, replies=2)
    fake_anthropic.script("You agreed on Thursday.")
    await answered(harness, mention("what did we agree above?", user="UANA", thread_ts=parent_ts))
    [reply] = slack.replies_in("C1", parent_ts)
    reads = len(slack.calls_to("conversations.replies"))

    fake_anthropic.script("Thursday, as Ana proposed.")
    await click(harness, "chatbot_regenerate", reply, user="UANA", action_ts="8.1")
    await harness.settle()
    assert slack.shown_text(slack.replies_in("C1", parent_ts)[0]) == "Thursday, as Ana proposed."
    assert len(slack.calls_to("conversations.replies")) > reads  # the thread, read from Slack again
    turns = fake_anthropic.last_request["messages"]
    assert [t["role"] for t in turns] == ["user"]  # the thread as people wrote it, not the stored history
    content = turns[0]["content"]
    assert "[Ana, " in content and "Shall we move the release to Thursday?" in content and "message 1:" in content
    assert "You agreed on Thursday." not in content  # the answer being replaced is not context
    assert content.rstrip().endswith("what did we agree above?")
