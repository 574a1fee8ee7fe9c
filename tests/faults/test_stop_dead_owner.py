"""A Stop for a reply whose owner process is dead ends it as stopped, not "interrupted".

A real `chatbot slack --http` process streams two replies and is killed (SIGKILL). Stop is clicked for
the first on a live process (a second bot core on the same store: the embedded SQLite file, or the real
Convex functions behind the loopback Convex server): the store records the Stop, the live process sweeps
at once, and once the dead owner's heartbeat is stale it takes both replies over (each won by one taker
only) and finishes them: the one asked to stop as a local Stop ends it (the stopped marker, status
cancelled), the other with the "interrupted" marker (status failed). The live process's periodic
take-over sweep is held back, so only the click's own sweep can take the replies.
"""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from core.app import build_core
from core.config import Settings
from core.messages import Platform, ReplyStatus, WorkspaceRef
from core.recovery import INTERRUPTED_MARKER
from core.streaming import CANCELLED_MARKER
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import TEAM_ID, FakeMessage, FakeSlack, event_body, signed_headers
from tests.faults.test_crash_recovery import ANSWER, free_port, start_bot, stop_all, stored_reply, until
from tests.faults.test_takeover import scale_out_env
from tests.slack.conftest import make_bot, serve
from tests.slack.test_controls import buttons, click
from tests.slack.test_conversations import mention

STOPPED = CANCELLED_MARKER.strip()
QUESTIONS = {"C1": "1700000910.000100", "C2": "1700000911.000100"}  # channel -> the question's ts


def streaming_reply(slack: FakeSlack, channel: str) -> FakeMessage | None:
    """The channel's one reply, once it shows part of the answer and its Stop button."""
    replies = slack.replies_in(channel)
    if len(replies) != 1 or len(slack.shown_text(replies[0])) < 100:
        return None
    return replies[0] if any(b["action_id"] == "chatbot_stop" for b in buttons(replies[0])) else None


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
async def test_a_stop_for_a_dead_owners_reply_ends_it_as_stopped_on_the_live_process(
    request: pytest.FixtureRequest, data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, kind: str
) -> None:
    for _ in QUESTIONS:
        fake_anthropic.script(ANSWER * 3, chunk_chars=20, delay_s=0.05)  # ~8 s: still streaming at the kill
    env = scale_out_env(request, data_dir, slack, fake_anthropic, kind)  # owners stale after 2 s
    port = free_port()
    settings = Settings(**{k: v for k, v in env.items() if k.startswith(("CHATBOT_", "CONVEX_", "ANTHROPIC_"))})
    async with AsyncExitStack() as stack:
        owner, core = await asyncio.gather(start_bot(env, port), build_core(settings))
        stack.push_async_callback(stop_all, owner)
        stack.push_async_callback(core.close)
        bot = make_bot(core, slack)
        served = serve(bot, slack)
        live = await anext(served)
        stack.push_async_callback(lambda: anext(served, None))  # type: ignore[misc]
        ownership = core.ownership
        assert ownership is not None
        ownership.sweep_s = 3600.0  # its periodic take-over sweeps once, at the start, and not again here
        bot.attach_recovery()
        core.start_recovery()

        async with aiohttp.ClientSession() as http:
            for channel, ts in QUESTIONS.items():
                body = event_body(mention("tell me everything", user="U1", channel=channel, ts=ts))
                headers = signed_headers(body, content_type="application/json")
                async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as r:
                    assert r.status == 200
        await until(lambda: all(streaming_reply(slack, c) for c in QUESTIONS), 30, "both replies were streaming")
        stopped, interrupted = (streaming_reply(slack, c) for c in QUESTIONS)
        assert stopped is not None and interrupted is not None
        ref = next(b["value"] for b in buttons(stopped) if b["action_id"] == "chatbot_stop")
        owner.send_signal(signal.SIGKILL)
        await owner.wait()
        killed = time.monotonic()

        # Clicked on the live process at once: the dead owner's heartbeat is not stale yet.
        await click(live, "chatbot_stop", stopped, user="U1", action_ts="5.1")
        await live.settle()
        assert "Stopping" in slack.ephemerals[-1]["text"]
        # A second click once it is stale: the click's own sweep takes the replies over now.
        await asyncio.sleep(max(0.0, killed + ownership.stale_s + 0.5 - time.monotonic()))
        clicked = time.monotonic()
        await click(live, "chatbot_stop", stopped, user="U1", action_ts="5.2")

        def finished() -> bool:
            return slack.shown_text(stopped).endswith(STOPPED) and INTERRUPTED_MARKER.strip() in slack.shown_text(
                interrupted
            )

        await until(finished, 10, "the live process took both replies over and finished them")
        print(f"second click to a reply marked stopped: {time.monotonic() - clicked:.3f}s")
        calls = len(slack.calls)
        await asyncio.sleep(1.5)  # more heartbeats (which still say "stop"), more clicks' sweeps: nothing twice
        await click(live, "chatbot_stop", stopped, user="U1", action_ts="5.3", value=ref)  # (no buttons now)
        await live.settle()
        assert "no longer streaming" in slack.ephemerals[-1]["text"]
        assert [c.method for c in slack.calls[calls:] if c.args.get("ts") in (stopped.ts, interrupted.ts)] == []
        assert ownership.taken_over == 2 and ownership.finished == 2
        assert [len(slack.replies_in(c)) for c in QUESTIONS] == [1, 1]

        ws = WorkspaceRef(Platform.SLACK, TEAM_ID)
        kept = await stored_reply(core.store, ws, "C1", QUESTIONS["C1"])
        assert kept.status is ReplyStatus.CANCELLED and kept.text.endswith(CANCELLED_MARKER)
        assert slack.shown_text(stopped).startswith(kept.text[: -len(CANCELLED_MARKER)].strip()[:100])
        cut = await stored_reply(core.store, ws, "C2", QUESTIONS["C2"])
        assert cut.status is ReplyStatus.FAILED and cut.text.endswith(INTERRUPTED_MARKER)
        assert not live.bot.errors
