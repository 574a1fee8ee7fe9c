"""A Stop clicked on a process that does not stream the reply: two bot cores (each its own Bolt app,
store clients and reply heartbeat, as two processes behind a load balancer) on one store, the embedded
SQLite file or the real Convex functions. The click lands on the process not streaming the reply; the
store judges it, the streaming process hears of it at its next heartbeat and stops the reply exactly as
a local Stop does: the stopped marker and the finished reply's buttons, once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from core.app import ChatCore, build_core
from core.config import Settings
from core.messages import Platform, ReplyStatus, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import TEAM_ID, FakeSlack
from tests.faults.test_crash_recovery import stored_reply
from tests.slack.conftest import Harness, make_bot, serve
from tests.slack.test_controls import FINISHED, LONG, buttons, click, streaming_reply
from tests.slack.test_conversations import mention

STOPPED = "_(stopped)_"


async def two_processes(
    stack: AsyncExitStack, request: pytest.FixtureRequest, data_dir: Path, anthropic: FakeAnthropic, slack: FakeSlack
) -> tuple[Harness, Harness, ChatCore]:
    shared: dict[str, Any] = {"CHATBOT_SCALE_OUT": True}
    if request.param == "convex":
        server = request.getfixturevalue("convex_server")
        server.reset()
        shared |= {"CONVEX_URL": server.url, "CONVEX_SERVICE_SECRET": server.secret}
    harnesses: list[Harness] = []
    cores: list[ChatCore] = []
    for _ in range(2):
        settings = Settings(
            CHATBOT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=anthropic.url, **shared
        )
        core = await build_core(settings)
        stack.push_async_callback(core.close)
        served = serve(make_bot(core, slack), slack)
        harnesses.append(await anext(served))
        stack.push_async_callback(lambda served=served: anext(served, None))  # type: ignore[misc]
        cores.append(core)
    return harnesses[0], harnesses[1], cores[0]


@pytest.fixture(params=["sqlite", "convex"])
async def processes(
    request: pytest.FixtureRequest, data_dir: Path, fake_anthropic: FakeAnthropic, slack: FakeSlack
) -> AsyncIterator[tuple[Harness, Harness, ChatCore]]:
    async with AsyncExitStack() as stack:
        yield await two_processes(stack, request, data_dir, fake_anthropic, slack)


async def test_a_stop_on_the_other_process_stops_the_reply_once(
    processes: tuple[Harness, Harness, ChatCore], fake_anthropic: FakeAnthropic, slack: FakeSlack
) -> None:
    streaming, clicked_on, streaming_core = processes
    fake_anthropic.script(LONG * 2, chunk_chars=6, delay_s=0.05)  # far longer than the test
    question = mention("tell me everything", user="U1")
    await streaming.event(question)
    reply = await streaming_reply(streaming)

    # Someone who may not stop it: the store refuses, the reply streams on.
    await click(clicked_on, "chatbot_stop", reply, user="U2", action_ts="3.1")
    await clicked_on.settle()
    assert "Only the person who asked" in slack.ephemerals[-1]["text"]

    ownership = streaming_core.ownership
    assert ownership is not None and ownership.on_stop is not None
    heard: list[float] = []  # when the streaming process heard of the Stop (its heartbeat's answer)
    stop_here = ownership.on_stop
    ownership.on_stop = lambda replies: (heard.append(time.monotonic()), stop_here(replies))

    clicked = time.monotonic()
    await click(clicked_on, "chatbot_stop", reply, user="U1", action_ts="3.2")
    await clicked_on.settle()
    assert "Stopping" in slack.ephemerals[-1]["text"]  # honest: it is live elsewhere, not "no longer streaming"
    await click(clicked_on, "chatbot_stop", reply, user="U1", action_ts="3.3")  # a second click: nothing more

    heartbeat_s = ownership.heartbeat_s
    while reply.streaming or not slack.shown_text(reply).endswith(STOPPED):
        assert time.monotonic() - clicked < heartbeat_s + 5, "the reply was not stopped"
        await asyncio.sleep(0.01)
    took = time.monotonic() - clicked
    print(
        f"Stop on the other process to a reply marked stopped: {took:.3f}s, heard at its heartbeat after"
        f" {heard[0] - clicked:.3f}s (heartbeat every {heartbeat_s:.2f}s)"
    )
    await streaming.settle()
    assert [b["action_id"] for b in buttons(reply)] == FINISHED  # Stop became Regenerate, 👍, 👎
    await asyncio.sleep(heartbeat_s + 0.5)  # more heartbeats still say "stop": nothing happens twice
    assert len(heard) >= 1
    stops = [c for c in slack.calls if c.args.get("ts") == reply.ts and STOPPED in json.dumps(c.args)]
    assert len(stops) == 1, [c.method for c in stops]
    assert len(slack.replies_in("C1")) == 1
    assert not streaming.bot.errors and not clicked_on.bot.errors

    stored = await stored_reply(streaming_core.store, WorkspaceRef(Platform.SLACK, TEAM_ID), "C1", question["ts"])
    assert stored.status is ReplyStatus.CANCELLED and stored.text.endswith(STOPPED)

    # Now it really ended: the old answer, from either process.
    ref = next(b["value"] for b in buttons(reply) if b["action_id"] == "chatbot_regenerate")
    await click(clicked_on, "chatbot_stop", reply, user="U1", action_ts="3.4", value=ref)
    await clicked_on.settle()
    assert "no longer streaming" in slack.ephemerals[-1]["text"]
