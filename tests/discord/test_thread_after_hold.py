"""A question's thread is opened only once the question is claimed: a slow thread creation cannot lose it,
and Discord's one thread per message keeps two openers (a process taking the question over) in one
thread. The real client against the loopback Discord."""

from __future__ import annotations

import asyncio

from bots.discord.threads import ThreadPlan
from tests.discord.test_busy_threads import wait_for
from tests.discord.test_discord import MEMBER, Harness, _ws_and_owner, harness  # noqa: F401  (the fixture)
from tests.fakes.discord import CHANNEL_ID, GUILD_ID


async def test_a_question_is_claimed_and_asked_before_its_slow_thread_is_opened(harness: Harness) -> None:  # noqa: F811
    await harness.core.admin.run(*_ws_and_owner(), "settings set threads always")  # type: ignore[arg-type]
    fake = harness.fake
    fake.thread_delay_s = 1.5  # Discord takes its time to start the thread
    harness.llm.script("Threads take a moment.")
    question = await fake.send_message(MEMBER, "is this held first?")
    await wait_for(lambda: harness.llm.requests, 10)
    assert fake.threads == []  # the model is asked while the thread is still being opened
    key = f"discord:{GUILD_ID}:{CHANNEL_ID}:{question['id']}"
    assert not await harness.core.store.claim_event(key)  # the question's claim is taken already
    await wait_for(lambda: fake.bot_messages(str(question["id"])) and not harness.client._tasks)
    assert [t["id"] for t in fake.threads] == [question["id"]]
    [reply] = fake.bot_messages(str(question["id"]))
    assert reply["content"] == "Threads take a moment." and fake.bot_messages(CHANNEL_ID) == []


async def test_a_second_opener_of_a_questions_thread_finds_the_thread_already_there(harness: Harness) -> None:  # noqa: F811
    fake = harness.fake
    question = fake.add_message(MEMBER, "one thread per message?")
    plan = ThreadPlan(int(GUILD_ID), int(CHANNEL_ID), int(question["id"]), "one thread", moved=False)
    first, second = await asyncio.gather(
        harness.client.busy.open(plan, "always", harness.client),
        harness.client.busy.open(plan, "always", harness.client),
    )
    assert first is not None and second is not None
    assert first.id == second.id == int(question["id"])  # type: ignore[attr-defined]
    assert len(fake.threads) == 1
    assert sorted(c.status for c in fake.calls if c.path.endswith("/threads")) == [201, 400]
