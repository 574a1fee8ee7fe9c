"""Cross-process Stop: click -> stopped, when the click lands on a process that does not stream the reply.

    uv run python bench/stop_elsewhere.py                    # 5 Stops, on SQLite and on Convex
    uv run python bench/stop_elsewhere.py --stores convex --stops 10 --json
    uv run python bench/stop_elsewhere.py --dead-owner --stops 4   # A is SIGKILLed before each click

Runs the product itself: two `chatbot slack --http` processes with CHATBOT_SCALE_OUT on one store (the
embedded SQLite file in one data folder, or the loopback Convex server running the real functions),
against the loopback Slack and Anthropic servers of tests/fakes. Each round asks process A (a mention
in a channel of its own), waits until the reply streams with its Stop button, then clicks Stop on
process B as the asker: B's store records the Stop, A hears of it at its next reply heartbeat (every
CHATBOT_OWNER_STALE_S / 3) and stops the reply like a local Stop. With --dead-owner, A is killed
(SIGKILL) before the click, at a point spread over 0 to 0.9 x CHATBOT_OWNER_STALE_S (later, B's sweep
may have taken the reply over as interrupted before the click); B takes the reply over once A's
heartbeat is stale and ends it as stopped; A is started again for the next round.

Figures (measured at the fake Slack, `time.monotonic`):
  click_to_stopped_s   from the click's POST to B until the reply shows the stopped marker and
                       streams no more (p50 / max over the rounds); bounded by the heartbeat interval
                       plus the final edit's turn in the workspace's chat.update budget
  stopping_answers     rounds whose clicker was told "Stopping…" (not "no longer streaming"; with
                       --same-process the reply stops at once and the clicker is told nothing)
  stopped_once         rounds whose reply got exactly one update with the stopped marker
  kill_to_stopped_s    (--dead-owner) from the SIGKILL until the reply shows the stopped marker
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.columns import print_columns  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.slack import (  # noqa: E402
    BOT_USER_ID,
    FakeMessage,
    FakeSlack,
    block_actions_body,
    event_body,
    signed_headers,
)
from tests.faults.test_crash_recovery import bot_env, free_port, start_bot, stop_all  # noqa: E402
from tests.support.convex_server import running_convex_server  # noqa: E402

STOPPED = "_(stopped)_"
ANSWER = "This answer takes a long while to write, one small piece after another. " * 60


def _fail(message: str) -> Any:
    raise SystemExit(f"bench/stop_elsewhere.py: {message}")


def stop_value(message: FakeMessage) -> str | None:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "chatbot_stop":
                return str(element["value"])
    return None


async def until(condition: Any, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/stop_elsewhere.py: no {what} within {limit_s}s")
        await asyncio.sleep(0.005)


async def one_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    async with FakeSlack() as slack, FakeAnthropic() as anthropic, aiohttp.ClientSession() as http:
        anthropic.script_for("everything", ANSWER, chunk_chars=6, delay_s=0.05)  # ~40 s each: longer than a round
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            shared = {"SLACK_NATIVE_STREAMING": "false", "CHATBOT_SCALE_OUT": "true", "CHATBOT_LOG_LEVEL": "WARNING"}
            shared["CHATBOT_OWNER_STALE_S"] = str(args.owner_stale_s)
            if kind == "convex":
                convex = stack.enter_context(running_convex_server(_fail))
                shared |= {"CONVEX_URL": convex.url, "CONVEX_SERVICE_SECRET": convex.secret}
            env = bot_env(Path(tmp), slack, anthropic, **shared)
            heartbeat_s = args.owner_stale_s / 3  # core/app.py: heartbeats every third of the stale time
            ports = [free_port(), free_port()]
            streaming = await start_bot(env, ports[0])
            clicked_on = await start_bot(env, ports[1])
            times: list[float] = []
            after_kill: list[float] = []  # --dead-owner: kill -> stopped
            stopping = stopped_once = 0
            try:
                for i in range(args.stops):
                    channel = f"C{i + 1}"
                    event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> tell me everything",
                             "ts": f"1700002{i:03d}.000100", "channel": channel}  # fmt: skip
                    slack.record_event(event)
                    body = event_body(event)
                    url = f"http://127.0.0.1:{ports[0]}/slack/events"
                    headers = signed_headers(body, content_type="application/json")
                    async with http.post(url, data=body, headers=headers) as r:
                        assert r.status == 200

                    def live() -> bool:
                        replies = slack.replies_in(channel)  # noqa: B023 (awaited within the round)
                        return (
                            bool(replies)
                            and stop_value(replies[0]) is not None
                            and len(slack.shown_text(replies[0])) > 100
                        )

                    await until(live, 60, "streaming reply with a Stop button")
                    reply = slack.replies_in(channel)[0]
                    ref = stop_value(reply)
                    assert ref is not None
                    killed = 0.0
                    if args.dead_owner:  # clicks spread from at once to after A's heartbeat went stale
                        streaming.send_signal(signal.SIGKILL)
                        await streaming.wait()
                        killed = time.monotonic()
                        await asyncio.sleep(0.9 * args.owner_stale_s * i / max(1, args.stops - 1))
                    else:  # clicks at other points of the heartbeat cycle
                        await asyncio.sleep(args.phase_s * i % heartbeat_s)
                    ephemerals = len(slack.ephemerals)
                    click = block_actions_body("chatbot_stop", ref, user_id="U1", message=reply, action_ts=f"9.{i}")
                    clicked = time.monotonic()
                    form = signed_headers(click, content_type="application/x-www-form-urlencoded")
                    target = ports[0] if args.same_process else ports[1]
                    async with http.post(f"http://127.0.0.1:{target}/slack/events", data=click, headers=form) as r:
                        assert r.status == 200
                    await until(lambda: not reply.streaming and slack.shown_text(reply).endswith(STOPPED), 60, "stop")  # noqa: B023
                    times.append(time.monotonic() - clicked)
                    if killed:
                        after_kill.append(time.monotonic() - killed)
                    if not args.same_process:  # (a local Stop answers the clicker with the stopped reply only)
                        await until(lambda: len(slack.ephemerals) > ephemerals, 10, "answer to the clicker")  # noqa: B023
                        stopping += "Stopping" in slack.ephemerals[ephemerals]["text"]
                    await asyncio.sleep(args.settle_s)  # later heartbeats still say "stop": nothing twice
                    marked = [c for c in slack.calls if c.args.get("ts") == reply.ts and STOPPED in json.dumps(c.args)]
                    stopped_once += len(marked) == 1
                    if args.dead_owner:
                        streaming = await start_bot(env, ports[0])
            finally:
                await stop_all(streaming, clicked_on)
    mode = " (same process)" if args.same_process else " (dead owner)" if args.dead_owner else ""
    return {
        "store": kind + mode,
        "stops": len(times),
        "click_to_stopped_p50_s": round(statistics.median(times), 3),
        "click_to_stopped_max_s": round(max(times), 3),
        "click_to_stopped_s": [round(t, 3) for t in times],
        "heartbeat_s": round(args.owner_stale_s / 3, 2),
        "stopping_answers": stopping,
        "stopped_once": stopped_once,
    } | (
        {"kill_to_stopped_s": [round(t, 3) for t in after_kill], "kill_to_stopped_max_s": round(max(after_kill), 3)}
        if after_kill
        else {}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,convex", help="comma-separated: sqlite, convex")
    parser.add_argument("--stops", type=int, default=5, help="Stops clicked per store")
    parser.add_argument("--owner-stale-s", type=float, default=10.0, help="CHATBOT_OWNER_STALE_S (the default: 10)")
    parser.add_argument("--phase-s", type=float, default=0.7, help="spreads the clicks over the heartbeat cycle")
    parser.add_argument("--settle-s", type=float, default=4.0, help="after each Stop, before counting updates")
    parser.add_argument("--same-process", action="store_true", help="the baseline: click on the streaming process")
    parser.add_argument("--dead-owner", action="store_true", help="SIGKILL the streaming process before each click")
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # a Stop cuts the fake model's stream
    rows = [asyncio.run(one_store(kind, args)) for kind in args.stores.split(",")]
    if not args.json:
        keys = [
            "stops",
            "heartbeat_s",
            "click_to_stopped_p50_s",
            "click_to_stopped_max_s",
            "stopping_answers",
            "stopped_once",
        ] + (["kill_to_stopped_max_s"] if args.dead_owner else [])
        print_columns(rows, "store", keys, width=22)
    print(json.dumps({"bench": "stop_elsewhere", "runs": rows}))


if __name__ == "__main__":
    main()
