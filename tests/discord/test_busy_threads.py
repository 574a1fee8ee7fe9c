"""Busy Discord channels move into threads: the real client against the loopback Discord."""

from __future__ import annotations

import asyncio

from bots.discord.threads import BUSY_NOTICE
from tests.discord.test_discord import MEMBER, Harness, _ws_and_owner, harness  # noqa: F401  (the fixture)
from tests.fakes.discord import CHANNEL_ID


async def wait_for(condition: object, limit_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_questions_arriving_while_the_channel_is_busy_get_threads_and_one_line_says_so(
    harness: Harness,  # noqa: F811
) -> None:
    fake = harness.fake
    harness.llm.default_delay_s = 0.05  # slow enough that the first reply is still streaming
    harness.llm.default_chunk_chars = 4
    questions = [await fake.send_message(MEMBER, f"question number {i}?") for i in range(3)]
    await wait_for(lambda: len(fake.threads) == 2 and not harness.client._tasks)
    in_channel = fake.bot_messages()
    # The first question is answered in the channel, as a reply to it; the line about threads is there once.
    answers = [m for m in in_channel if m["content"] != BUSY_NOTICE]
    assert [m["content"] for m in in_channel].count(BUSY_NOTICE) == 1
    assert [a["message_reference"]["message_id"] for a in answers] == [questions[0]["id"]]
    # The others each got a thread started from the question, answered there.
    assert sorted(t["id"] for t in fake.threads) == sorted(q["id"] for q in questions[1:])
    for thread in fake.threads:
        [reply] = fake.bot_messages(thread["id"])
        assert "question number" in reply["content"]
    assert harness.client.busy.moved == 2
    # A follow-up in a moved thread needs no mention.
    thread_id = fake.threads[0]["id"]
    await fake.send_message(MEMBER, "and one more thing?", channel_id=thread_id, mention_bot=False)
    await wait_for(lambda: len(fake.bot_messages(thread_id)) == 2 and not harness.client._tasks)
    assert "one more thing" in fake.bot_messages(thread_id)[-1]["content"]


async def test_a_quiet_channel_is_answered_in_place(harness: Harness) -> None:  # noqa: F811
    harness.llm.script("One at a time is fine.")
    await harness.fake.send_message(MEMBER, "a single question?")
    await wait_for(lambda: harness.fake.bot_messages() and not harness.client._tasks)
    harness.llm.script("Still fine.")
    await harness.fake.send_message(MEMBER, "another, after the first was answered?")
    await wait_for(lambda: len(harness.fake.bot_messages()) == 2 and not harness.client._tasks)
    assert harness.fake.threads == [] and harness.client.busy.moved == 0
    assert all(m["channel_id"] == CHANNEL_ID for m in harness.fake.bot_messages())


async def test_with_threads_never_a_busy_channel_keeps_every_answer_in_place(harness: Harness) -> None:  # noqa: F811
    await harness.core.admin.run(*_ws_and_owner(), "settings set threads never")  # type: ignore[arg-type]
    fake = harness.fake
    harness.llm.default_delay_s = 0.05  # the first reply is still streaming when the others arrive
    harness.llm.default_chunk_chars = 4
    questions = [await fake.send_message(MEMBER, f"question number {i}?") for i in range(3)]
    await wait_for(lambda: len(fake.bot_messages()) == 3 and not harness.client._tasks)
    assert fake.threads == [] and harness.client.busy.moved == 0
    answered = sorted(m["message_reference"]["message_id"] for m in fake.bot_messages())
    assert answered == sorted(q["id"] for q in questions)


async def test_the_threads_setting_takes_only_its_choices(harness: Harness) -> None:  # noqa: F811
    reply = await harness.core.admin.run(*_ws_and_owner(), "settings set threads sometimes")  # type: ignore[arg-type]
    assert "threads is one of: auto, always, never" in str(reply)
