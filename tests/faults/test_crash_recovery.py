"""SIGKILL mid-stream, then restart: the half-shown reply is finished on Slack itself (the stream
stopped, the text so far with a visible "interrupted" marker), marked failed in the store, once.

The real `chatbot slack --http` process, the real Bolt app and slack-sdk, the loopback Slack and
Anthropic servers, the embedded store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from core.messages import MessageRole, Platform, ReplyStatus, StoredMessage, WorkspaceRef
from core.recovery import INTERRUPTED_MARKER
from core.stores.base import ThreadStore
from core.stores.sqlite import SqliteStore
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeMessage,
    FakeSlack,
    event_body,
    signed_headers,
)

ROOT = Path(__file__).parents[2]
ANSWER = "".join(
    f"Step {i}: keep the deploy notes next to the runbook and link them from the channel topic. " for i in range(12)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(data_dir: Path, slack: FakeSlack, anthropic: FakeAnthropic, **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "CONVEX_", "WEAVIATE_", "CHATBOT_"))
    }
    return (
        base
        | {
            "CHATBOT_DATA_DIR": str(data_dir),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "ANTHROPIC_API_KEY": "test",
            "ANTHROPIC_BASE_URL": anthropic.url,
            # An earlier run's reply is an orphan once silent 1 s (25 s by default); swept every 0.2 s.
            "CHATBOT_ORPHAN_AFTER_S": "1",
            "CHATBOT_RECOVERY_INTERVAL_S": "0.2",
        }
        | extra
    )


async def start_bot(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    return await start_chatbot(env, "slack", "--http", "--port", str(port), ready=b"Slack app ready")


async def start_chatbot(env: dict[str, str], *args: str, ready: bytes) -> asyncio.subprocess.Process:
    """`chatbot <args>` as its own process, once it printed its `ready` line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while ready not in (line := await proc.stderr.readline()):
            assert line, "the bot ended before it was ready"
    asyncio.get_running_loop().create_task(_drain(proc.stderr))  # keep the pipe from filling up
    return proc


async def stop_all(*procs: asyncio.subprocess.Process | None) -> None:
    """SIGTERM the processes still running and wait for each to end."""
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def until(condition: object, limit_s: float, what: str) -> None:
    assert callable(condition)
    for _ in range(int(limit_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {limit_s}s")


async def stored_reply(store: ThreadStore, ws: WorkspaceRef, channel: str, thread_key: str) -> StoredMessage:
    """The one reply of the bot in a thread, as the store has it."""
    thread = await store.find_thread(ws, channel, thread_key)
    assert thread is not None
    [stored] = [m for m in (await store.messages(ws, thread)).items if m.role is MessageRole.ASSISTANT]
    return stored


def the_reply(slack: FakeSlack, channel: str) -> FakeMessage | None:
    replies = slack.replies_in(channel)
    return replies[0] if replies else None


# Native streams are used where one person reads the reply (a thread in a DM); elsewhere chat.update.
EVENTS = {
    True: {"type": "message", "channel_type": "im", "user": "U1", "text": "how do we deploy?",
           "ts": "1700000901.000100", "thread_ts": "1700000900.000100", "channel": "D1"},
    False: {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> how do we deploy?",
            "ts": "1700000900.000100", "channel": "C1"},
}  # fmt: skip


async def ask_until_half_shown(slack: FakeSlack, port: int, native: bool) -> str:
    """Send the question (a DM thread for a native stream, else a channel mention) to the bot on `port`
    and wait until part of the answer shows; returns the reply's channel."""
    event = EVENTS[native]
    channel = str(event["channel"])
    body = event_body(event)
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/slack/events"
        async with http.post(url, data=body, headers=signed_headers(body, content_type="application/json")) as r:
            assert r.status == 200

    def half_shown() -> bool:
        reply = the_reply(slack, channel)
        return reply is not None and len(slack.shown_text(reply)) > 150

    await until(half_shown, 30, "part of the answer was shown")
    return channel


@pytest.mark.parametrize("native", [True, False], ids=["native stream", "chat.update"])
async def test_a_reply_cut_by_sigkill_is_finished_on_slack_after_restart(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, native: bool
) -> None:
    fake_anthropic.script(ANSWER, chunk_chars=8, delay_s=0.05)  # ~6 s of streaming
    env = bot_env(data_dir, slack, fake_anthropic, SLACK_NATIVE_STREAMING="true" if native else "false")
    port = free_port()
    first = await start_bot(env, port)
    second = None
    try:
        channel = await ask_until_half_shown(slack, port, native)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        reply = the_reply(slack, channel)
        assert reply is not None
        shown_before = slack.shown_text(reply)
        assert reply.streaming is native and not shown_before.endswith("channel topic. ")
        calls_before = len(slack.calls)

        second = await start_bot(env, port)
        marker = "Interrupted: the bot restarted while answering"
        await until(lambda: marker in slack.shown_text(reply), 30, "the reply was finished on Slack")
        assert not reply.streaming  # the native stream was stopped
        shown = slack.shown_text(reply)
        assert shown.startswith(shown_before[:100])
        if native:
            assert [c.args.get("ts") for c in slack.calls_to("chat.stopStream")] == [reply.ts]
        await asyncio.sleep(1.5)  # several more sweeps: nothing is finished twice
        later = [c for c in slack.calls[calls_before:] if c.args.get("ts") == reply.ts]
        assert len(later) == (2 if native else 1), [c.method for c in later]  # (stopStream +) one chat.update
        assert len(slack.replies_in(channel)) == 1
    finally:
        await stop_all(first, second)

    store = await SqliteStore.open(data_dir / "chatbot.sqlite")
    try:
        stored = await stored_reply(store, WorkspaceRef(Platform.SLACK, TEAM_ID), channel, "1700000900.000100")
        assert stored.status is ReplyStatus.FAILED
        assert stored.text.endswith(INTERRUPTED_MARKER) and ANSWER.startswith(
            stored.text.removesuffix(INTERRUPTED_MARKER)
        )
        assert stored.platform_message_id == reply.ts
    finally:
        await store.close()
