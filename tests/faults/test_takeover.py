"""Two live processes on one store: SIGKILL the one streaming a reply, and the other takes the reply over
(its owner stopped heartbeating), finishes it on Slack with the text so far and the "interrupted"
marker, and marks it failed, once. On the embedded SQLite store and on Convex (the real functions).

The real `chatbot slack --http` processes, the real Bolt app and slack-sdk, the loopback Slack and
Anthropic servers.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from core.messages import Platform, ReplyStatus, WorkspaceRef
from core.recovery import INTERRUPTED_MARKER
from core.stores.base import Store
from core.stores.convex import ConvexStore
from core.stores.sqlite import SqliteStore
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import TEAM_ID, FakeSlack
from tests.faults.test_crash_recovery import (
    ANSWER,
    EVENTS,
    ask_until_half_shown,
    bot_env,
    free_port,
    start_bot,
    stored_reply,
    the_reply,
    until,
)


def scale_out_env(
    request: pytest.FixtureRequest, data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, kind: str
) -> dict[str, str]:
    """The environment of bot processes sharing one store (`kind`: the data folder's SQLite file, or the
    Convex test server), whose owners go stale after 2 s."""
    shared = {
        "SLACK_NATIVE_STREAMING": "false",
        "CHATBOT_SCALE_OUT": "true",
        "CHATBOT_OWNER_STALE_S": "2",  # 10 s by default
        "CHATBOT_RECOVERY_INTERVAL_S": "0.5",
        "CHATBOT_ORPHAN_AFTER_S": "25",  # the one-process sweep must play no part here
    }
    if kind == "convex":
        server = request.getfixturevalue("convex_server")
        server.reset()
        shared |= {"CONVEX_URL": server.url, "CONVEX_SERVICE_SECRET": server.secret}
    return bot_env(data_dir, slack, fake_anthropic, **shared)


async def shared_store(request: pytest.FixtureRequest, data_dir: Path, kind: str) -> Store:
    """The store those processes shared, to read what they left in it."""
    if kind == "convex":
        server = request.getfixturevalue("convex_server")
        return ConvexStore(server.url, server.secret)
    return await SqliteStore.open(data_dir / "chatbot.sqlite")


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
async def test_a_live_process_takes_over_and_finishes_a_killed_processs_reply(
    request: pytest.FixtureRequest, data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, kind: str
) -> None:
    fake_anthropic.script(ANSWER, chunk_chars=8, delay_s=0.05)  # ~6 s of streaming
    env = scale_out_env(request, data_dir, slack, fake_anthropic, kind)
    ports = [free_port(), free_port()]
    owner = await start_bot(env, ports[0])
    other = await start_bot(env, ports[1])
    try:
        channel = await ask_until_half_shown(slack, ports[0], native=False)
        owner.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await owner.wait()
        reply = the_reply(slack, channel)
        assert reply is not None
        shown_before = slack.shown_text(reply)
        calls_before = len(slack.calls)

        marker = "Interrupted: the bot restarted while answering"
        await until(lambda: marker in slack.shown_text(reply), 30, "the other process finished the reply")
        assert time.monotonic() - killed < 30
        assert slack.shown_text(reply).startswith(shown_before[:100])
        await asyncio.sleep(2.0)  # more heartbeats and sweeps: nothing is finished twice
        later = [c for c in slack.calls[calls_before:] if c.args.get("ts") == reply.ts]
        assert len(later) == 1, [c.method for c in later]
        assert len(slack.replies_in(channel)) == 1
    finally:
        for proc in (owner, other):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)

    store = await shared_store(request, data_dir, kind)
    try:
        stored = await stored_reply(store, WorkspaceRef(Platform.SLACK, TEAM_ID), channel, str(EVENTS[False]["ts"]))
        assert stored.status is ReplyStatus.FAILED and stored.text.endswith(INTERRUPTED_MARKER)
    finally:
        await store.close()
