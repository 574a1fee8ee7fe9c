"""Discord: a question whose thread cannot be opened yet is held before the thread is asked for, so when
its process dies waiting, a live process takes the question over, opens the thread itself and answers
there, once.

Two real `chatbot discord` shard processes on one store (the embedded SQLite file, or the real Convex
functions behind the loopback Convex server), the loopback Discord (which answers thread creation with
429 until the first process is killed) and the loopback Anthropic.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import CHANNEL_ID, GUILD_ID, OWNER_ID, FakeDiscord
from tests.faults.test_crash_recovery import start_chatbot, stop_all, until
from tests.faults.test_crash_recovery_discord import MEMBER, READY, bot_env
from tests.faults.test_takeover import shared_store

ANSWER = "Deploys go out from the release branch after the staging checks pass, every weekday morning."
OWNER = Actor(OWNER_ID, PlatformFacts(is_owner=True))  # what the adapter says; Convex asks Discord itself


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
async def test_a_question_whose_thread_waits_is_held_and_a_live_process_opens_the_thread_and_answers(
    request: pytest.FixtureRequest, data_dir: Path, fake_anthropic: FakeAnthropic, kind: str
) -> None:
    for _ in range(2):  # the killed process's call and the live one's
        fake_anthropic.script(ANSWER, chunk_chars=20, delay_s=0.02)
    shared = {
        "CHATBOT_SCALE_OUT": "true",
        "CHATBOT_OWNER_STALE_S": "2",
        "CHATBOT_RECOVERY_INTERVAL_S": "0.5",
        "CHATBOT_ORPHAN_AFTER_S": "25",  # the one-process sweep plays no part here
    }
    if kind == "convex":
        server = request.getfixturevalue("convex_server")
        server.reset()
        shared |= {"CONVEX_URL": server.url, "CONVEX_SERVICE_SECRET": server.secret}
    async with FakeDiscord() as fake:
        await threads_always(request, data_dir, fake, kind)
        env = bot_env(data_dir, fake, fake_anthropic) | shared
        # The guild's events reach shard 0 only; the process running shard 1 is the live one. Started side by
        # side: most of the test's time is the two processes starting.
        owner, other = await asyncio.gather(
            start_chatbot(env, "discord", "--shard-ids", "0", "--shard-count", "2", ready=READY),
            start_chatbot(env, "discord", "--shard-ids", "1", "--shard-count", "2", ready=READY),
        )
        try:
            fake.thread_storm = 10_000  # the thread is never opened for the first process

            def thread_asks(status: int) -> int:
                return sum(1 for c in fake.calls if c.path.endswith("/threads") and c.status == status)

            question = await fake.send_message(MEMBER, "how do we deploy?")
            await until(lambda: thread_asks(429) > 0, 20, "the first process asked for the question's thread")
            owner.send_signal(signal.SIGKILL)
            await owner.wait()
            fake.thread_storm = 0
            assert fake.threads == [] and fake.bot_messages(CHANNEL_ID) == []

            def answered() -> bool:
                return any(ANSWER in m["content"] for m in fake.bot_messages(str(question["id"])))

            await until(answered, 30, "the live process answered in the question's thread")
            await asyncio.sleep(2.5)  # more heartbeats and sweeps: it is not answered twice
            assert [t["id"] for t in fake.threads] == [question["id"]]  # the thread started from the question
            [reply] = fake.bot_messages(str(question["id"]))
            assert ANSWER in reply["content"] and "Interrupted" not in reply["content"]
            assert fake.bot_messages(CHANNEL_ID) == []  # nothing in the channel itself
            assert thread_asks(201) == 1
        finally:
            await stop_all(owner, other)


async def threads_always(request: pytest.FixtureRequest, data_dir: Path, fake: FakeDiscord, kind: str) -> None:
    """Every question gets a thread of its own: the guild owner says so. Convex confirms the owner with
    the loopback Discord (the deployment's bot token for the guild-member endpoint), as it does live."""
    server = request.getfixturevalue("convex_server") if kind == "convex" else None
    if server is not None:
        await asyncio.to_thread(server.set_env, DISCORD_BOT_TOKEN=fake.token, DISCORD_API_URL=fake.api_url)
    store = await shared_store(request, data_dir, kind)
    try:
        await store.update_settings(WorkspaceRef(Platform.DISCORD, GUILD_ID), OWNER, {"threads": "always"})
    finally:
        await store.close()
        if server is not None:
            await asyncio.to_thread(server.set_env, DISCORD_BOT_TOKEN=None, DISCORD_API_URL=None)
