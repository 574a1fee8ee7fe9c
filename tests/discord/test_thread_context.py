"""Thread context on Discord, end to end with the real discord.py client: a question in a thread or at the
end of a reply chain reaches the model with the messages before it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.prompt import estimate_tokens
from tests.discord.test_discord import MEMBER, Harness, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import GUILD_ID

ANA = "700000000000000011"
BEN = "700000000000000012"
PEOPLE = [(MEMBER, "member", ()), (ANA, "Ana", ()), (BEN, "Ben", ())]


@pytest.fixture
async def harness(tmp_path: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[Harness]:
    """The bot with the Message Content intent granted (thread context needs people's message text)."""
    async with running_bot(tmp_path, fake_anthropic, PEOPLE, message_content=True) as h:
        yield h


async def settle_in(h: Harness, channel_id: str, replies: int, limit_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while len(h.fake.bot_messages(channel_id)) < replies or h.client._tasks:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)


async def test_a_mention_in_a_human_thread_reaches_the_model_with_the_thread(harness: Harness) -> None:
    h = harness
    thread_id = await h.fake.open_thread(ANA, "release day")
    h.fake.add_message(ANA, "Shall we move the release to Thursday?", channel_id=thread_id, mention_bot=False)
    h.fake.add_message(BEN, "Thursday works if QA gets the build Tuesday.", channel_id=thread_id, mention_bot=False)
    h.llm.script("You agreed on Thursday.")
    await h.fake.send_message(ANA, "what did we agree above?", channel_id=thread_id)
    await settle_in(h, thread_id, 1)
    [turn] = h.llm.last_request["messages"]
    assert "[Ana, " in turn["content"] and "Shall we move the release to Thursday?" in turn["content"]
    assert "[Ben, " in turn["content"] and "QA gets the build Tuesday" in turn["content"]
    assert turn["content"].endswith("what did we agree above?")
    assert h.fake.calls_to("GET", f"/channels/{thread_id}/messages")

    # The bot's answer comes back as an assistant turn.
    h.llm.script("Ben does.")
    await h.fake.send_message(BEN, "who tells QA?", channel_id=thread_id)
    await settle_in(h, thread_id, 2)
    turns = h.llm.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == "You agreed on Thursday."


async def test_a_reply_to_someones_message_brings_the_chain(harness: Harness) -> None:
    h = harness
    first = h.fake.add_message(ANA, "The deploy failed with exit code 137.", mention_bot=False)
    second = h.fake.add_message(BEN, "Probably the memory limit again.", mention_bot=False, reply_to=first["id"])
    h.llm.script("Exit code 137 means the process was killed, usually for memory.")
    await h.fake.send_message(MEMBER, "is Ben right?", reply_to=second["id"])
    await h.settle()
    [turn] = h.llm.last_request["messages"]
    assert turn["content"].index("exit code 137") < turn["content"].index("memory limit again")
    assert turn["content"].endswith("is Ben right?")


async def test_a_long_thread_is_read_within_budget_newest_first(harness: Harness) -> None:
    h = harness
    thread_id = await h.fake.open_thread(ANA)
    for i in range(600):
        h.fake.add_message(
            ANA if i % 2 else BEN, f"message {i}: " + "some discussion " * 6, channel_id=thread_id, mention_bot=False
        )
    await h.fake.send_message(ANA, "summarize the latest points", channel_id=thread_id)
    await settle_in(h, thread_id, 1)
    text = json.dumps(h.llm.last_request["messages"])
    assert "message 599:" in text and "message 0:" not in text
    assert "left out to fit" in text
    assert len(h.fake.calls_to("GET", f"/channels/{thread_id}/messages")) == 2  # at most 200 read, 100 a page
    body = h.llm.last_request
    used = estimate_tokens(json.dumps(body["system"])) + sum(estimate_tokens(t["content"]) for t in body["messages"])
    assert used <= h.core.settings.context_token_budget * 1.1


async def test_a_refused_history_read_still_answers(harness: Harness) -> None:
    h = harness
    h.llm.script("Paris is the capital of France.")
    await h.fake.send_message(MEMBER, "what is the capital of France?")
    await h.settle()
    [answer] = h.fake.bot_messages()
    h.client._connection._messages.clear()  # type: ignore[union-attr]  # force a read from Discord
    h.fake.history_refused = True
    h.llm.script("About two million people.")
    payload = h.fake.message_payload(MEMBER, "how many live there?", mention_bot=False, reply_to=answer["id"])
    payload.pop("referenced_message")  # Discord left the referenced message out: it must be fetched
    h.fake.messages[payload["id"]] = payload
    await h.fake.dispatch("MESSAGE_CREATE", payload)
    await h.settle(replies=2)
    assert any(c.status == 403 for c in h.fake.calls if "/messages/" in c.path and c.method == "GET")
    turns = h.llm.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]  # the stored history
    assert turns[1]["content"] == "Paris is the capital of France."
    assert h.fake.bot_messages()[-1]["content"] == "About two million people."


async def test_without_message_content_other_peoples_messages_are_not_invented(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    async with running_bot(tmp_path, fake_anthropic, PEOPLE, message_content=False) as h:
        thread_id = await h.fake.open_thread(ANA)
        h.fake.add_message(ANA, "a secret plan", channel_id=thread_id, mention_bot=False)
        await h.fake.send_message(ANA, "what is this thread about?", channel_id=thread_id)
        await settle_in(h, thread_id, 1)
        text = json.dumps(fake_anthropic.last_request["messages"])
        assert "a secret plan" not in text and "what is this thread about?" in text


async def test_a_channel_prompt_and_model_reach_the_model_in_its_threads(harness: Harness) -> None:
    from tests.discord.test_discord import _ws_and_owner
    from tests.fakes.discord import CHANNEL_ID

    h = harness
    ws, owner = _ws_and_owner()
    said = await h.core.admin.run(ws, owner, f"channel prompt <#{CHANNEL_ID}> Answer as the release team.")  # type: ignore[arg-type]
    assert "own prompt" in said
    await h.core.admin.run(ws, owner, f"channel model <#{CHANNEL_ID}> claude-haiku-4-5")  # type: ignore[arg-type]
    await h.fake.send_message(ANA, "when do we ship?")
    await h.settle()
    assert h.llm.last_request["model"] == "claude-haiku-4-5"
    assert "Answer as the release team." in json.dumps(h.llm.last_request["system"])
    thread_id = await h.fake.open_thread(ANA)
    await h.fake.send_message(ANA, "and the hotfix?", channel_id=thread_id)
    await settle_in(h, thread_id, 1)
    assert h.llm.last_request["model"] == "claude-haiku-4-5"  # the thread inherits its channel's
    assert "Answer as the release team." in json.dumps(h.llm.last_request["system"])


async def test_summarize_this_thread_cites_the_messages_with_links(harness: Harness) -> None:
    h = harness
    thread_id = await h.fake.open_thread(ANA, "release day")
    first = h.fake.add_message(ANA, "Shall we move the release to Thursday?", channel_id=thread_id, mention_bot=False)
    await h.fake.send_message(BEN, "what's still open here?", channel_id=thread_id)
    await settle_in(h, thread_id, 1)
    text = json.dumps(h.llm.last_request["messages"])
    assert f"/channels/{GUILD_ID}/{thread_id}/{first['id']}" in text  # the message's jump URL


async def test_regenerate_reads_the_thread_again_as_a_new_question_would(harness: Harness) -> None:
    from tests.discord.test_controls import custom_id

    h = harness
    thread_id = await h.fake.open_thread(ANA, "release day")
    h.fake.add_message(ANA, "Shall we move the release to Thursday?", channel_id=thread_id, mention_bot=False)
    h.llm.script("You agreed on Thursday.")
    await h.fake.send_message(BEN, "what did we agree above?", channel_id=thread_id)
    await settle_in(h, thread_id, 1)
    first = h.llm.last_request["messages"]
    [reply] = h.fake.bot_messages(thread_id)
    reads = len(h.fake.calls_to("GET", f"/channels/{thread_id}/messages"))

    h.llm.script("Thursday, as Ana proposed.")
    await h.fake.click(custom_id(h, reply, "Regenerate"), str(reply["id"]), BEN)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while h.fake.bot_messages(thread_id)[0]["content"] != "Thursday, as Ana proposed.":
        assert loop.time() < deadline
        await asyncio.sleep(0.025)
    await settle_in(h, thread_id, 1)
    again = h.llm.last_request["messages"]
    assert len(h.fake.calls_to("GET", f"/channels/{thread_id}/messages")) > reads  # read from Discord again
    assert [t["role"] for t in again] == [t["role"] for t in first] == ["user"]  # not the stored history
    assert "[Ana, " in again[0]["content"] and "Shall we move the release to Thursday?" in again[0]["content"]
    assert "You agreed on Thursday." not in again[0]["content"]  # the answer being replaced is not context
    assert again[0]["content"].endswith("what did we agree above?")
