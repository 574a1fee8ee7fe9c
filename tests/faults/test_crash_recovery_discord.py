"""SIGKILL mid-stream, then restart: the half-shown Discord reply is finished on Discord itself (its last
part edited to the text so far with the visible "interrupted" marker), marked failed in the store, once.

The real `chatbot discord` process and discord.py, the loopback Discord gateway + REST and the
loopback Anthropic server, the embedded store.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bots.discord.surface import MAX_CONTENT
from core.messages import Platform, ReplyStatus, WorkspaceRef
from core.recovery import INTERRUPTED_MARKER
from core.stores.sqlite import SqliteStore
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.faults.test_crash_recovery import start_chatbot, stop_all, stored_reply, until

ROOT = Path(__file__).parents[2]
MEMBER = "700000000000000001"
READY = b"Discord bot ready"
MARKER = "Interrupted: the bot restarted while answering"
# Longer than one Discord message: the reply continues in a second part before the crash.
ANSWER = "".join(f"Step {i}: keep the deploy notes next to the runbook, linked from the topic. " for i in range(60))


def bot_env(data_dir: Path, fake: FakeDiscord, anthropic: FakeAnthropic) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "ANTHROPIC_", "CONVEX_", "WEAVIATE_", "CHATBOT_"))
    }
    return base | {
        "CHATBOT_DATA_DIR": str(data_dir),
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "ANTHROPIC_API_KEY": "test",
        "ANTHROPIC_BASE_URL": anthropic.url,
        # An earlier run's reply is an orphan once silent 1 s (25 s by default); swept every 0.2 s.
        "CHATBOT_ORPHAN_AFTER_S": "1",
        "CHATBOT_RECOVERY_INTERVAL_S": "0.2",
    }


async def test_a_discord_reply_cut_by_sigkill_is_finished_on_discord_after_restart(
    data_dir: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(ANSWER, chunk_chars=20, delay_s=0.05)  # ~11 s of streaming
    async with FakeDiscord() as fake:
        env = bot_env(data_dir, fake, fake_anthropic)
        first = await start_chatbot(env, "discord", ready=READY)
        second = None
        try:
            question = await fake.send_message(MEMBER, "how do we deploy?")

            def parts() -> list[str]:
                return [str(m["content"]) for m in fake.bot_messages(CHANNEL_ID)]

            def edits_of_second() -> int:
                ids = [m["id"] for m in fake.bot_messages(CHANNEL_ID)]
                return sum(v[2] == ids[1] for v in fake.versions) if len(ids) >= 2 else 0

            # Posted, then edited once: the stream went on after the post (its place is stored by then).
            await until(lambda: edits_of_second() >= 2, 40, "a second part was shown and grew")
            first.send_signal(signal.SIGKILL)
            await first.wait()
            shown_before = parts()
            assert sum(map(len, shown_before)) < len(ANSWER) - 200  # cut mid-answer
            ids = [m["id"] for m in fake.bot_messages(CHANNEL_ID)]
            calls_before = len(fake.calls)

            second = await start_chatbot(env, "discord", ready=READY)
            await until(lambda: MARKER in parts()[-1], 30, "the reply was finished on Discord")
            shown = parts()
            assert len(shown) == len(shown_before) and shown[:-1] == shown_before[:-1]  # no part added, full ones kept
            assert shown[-1].endswith(INTERRUPTED_MARKER) and len(shown[-1]) <= MAX_CONTENT
            assert shown[-1].removesuffix(INTERRUPTED_MARKER).startswith(shown_before[-1])  # nothing shown is lost
            await asyncio.sleep(1.5)  # several more sweeps: nothing is finished twice
            edits = [c for c in fake.calls[calls_before:] if c.method == "PATCH" and "/messages/" in c.path]
            assert [c.path.rsplit("/", 1)[-1] for c in edits] == [ids[-1]], [c.path for c in edits]
        finally:
            await stop_all(first, second)

    store = await SqliteStore.open(data_dir / "chatbot.sqlite")
    try:
        stored = await stored_reply(store, WorkspaceRef(Platform.DISCORD, GUILD_ID), CHANNEL_ID, str(question["id"]))
        assert stored.status is ReplyStatus.FAILED
        assert stored.text.endswith(INTERRUPTED_MARKER)
        assert ANSWER.startswith(stored.text.removesuffix(INTERRUPTED_MARKER))
        assert stored.platform_message_id == ids[0]
    finally:
        await store.close()
