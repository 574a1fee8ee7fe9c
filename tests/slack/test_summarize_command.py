"""`/chatbot summarize` on Slack, end to end with the real Bolt app: a thread named by its message link is
summarized in that thread, citing its messages with permalinks (the plain "summarize this thread"
path); without a link, the channel's recent messages (conversations.history, through its budget)."""

from __future__ import annotations

import json

from tests.fakes.anthropic import FakeAnthropic
from tests.slack.conftest import Harness
from tests.slack.test_thread_context import human_thread

LINK = "https://fake.slack.test/archives/{channel}/p{digits}"


async def test_summarize_a_thread_by_its_message_link(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    slack = harness.slack
    thread_ts = human_thread(slack, replies=3)
    reply_ts = max((m for m in slack.messages.values() if m.thread_ts == thread_ts), key=lambda m: float(m.ts)).ts
    fake_anthropic.script("Ana proposed Thursday [1]; Ben agreed.")
    # "Copy link" on a reply: the reply's ts in the path, the thread in the query.
    link = LINK.format(channel="C1", digits=reply_ts.replace(".", "")) + f"?thread_ts={thread_ts}&cid=C1"
    reply = await harness.command(f"summarize <{link}>", user_id="UANA")
    assert reply.status == 200, reply.text
    await harness.settle()
    assert not harness.bot.errors, list(harness.bot.errors)

    request = fake_anthropic.last_request
    text = json.dumps(request["messages"])
    assert "Shall we move the release to Thursday?" in text and "message 2:" in text  # the whole thread
    assert LINK.format(channel="C1", digits=thread_ts.replace(".", "")) in text  # cited with permalinks
    assert "cite the messages you draw on with their links" in json.dumps(request["system"])
    [read] = slack.calls_to("conversations.replies")
    assert read.args["ts"] == thread_ts and read.args["channel"] == "C1"
    answers = slack.replies_in("C1", thread_ts)
    assert answers and "Ana proposed Thursday" in answers[-1].text  # answered in the thread


async def test_summarize_without_a_link_reads_the_channel(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    slack = harness.slack
    slack.add_user("UANA", name="Ana")
    slack.add_message("C0GENERAL", "The office is closed on Friday.", user="UANA")
    slack.add_message("C0GENERAL", "Standup moves to 10:00 next week.", user="UANA")
    fake_anthropic.script("The office closes Friday and standup moves to 10:00.")
    reply = await harness.command("summarize", user_id="UANA")
    assert reply.status == 200, reply.text
    await harness.settle()
    assert not harness.bot.errors, list(harness.bot.errors)

    text = json.dumps(fake_anthropic.last_request["messages"])
    assert text.index("office is closed") < text.index("Standup moves")  # oldest first
    assert "archives/C0GENERAL/p" in text
    assert len(slack.calls_to("conversations.history")) == 1
    assert not slack.calls_to("conversations.replies")
    answers = slack.replies_in("C0GENERAL")
    assert answers and "standup moves to 10:00" in answers[-1].text and answers[-1].thread_ts is None


async def test_summarize_with_something_else_says_what_it_takes(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    reply = await harness.command("summarize yesterday please", user_id="UANA")
    assert reply.status == 200, reply.text
    await harness.settle()
    assert "message link" in json.dumps(harness.slack.responses[-1])
    assert not fake_anthropic.requests
