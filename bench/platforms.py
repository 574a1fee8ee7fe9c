"""The loopback platforms of bench/streaming.py, in a process of their own (so the bot's CPU and RSS
are its own): tests/fakes' Discord (REST + gateway) and one loopback Slack per workspace, enforcing
the limits of bots/<platform>/limits.py, the loopback Anthropic API streaming each question's answer
in its model's rhythm, plus the people who ask the questions.

It speaks JSON lines with its parent: a config line in, the servers' addresses out; then the
questions in (it delivers each at its time: a Discord MESSAGE_CREATE over the gateway, a signed
Slack event POSTed to the bot's Events API URL); finally a path to write what the platforms saw.

    python -m bench.platforms    # run by bench/streaming.py, not by hand
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.discord import GUILD_ID, FakeDiscord  # noqa: E402
from tests.fakes.slack import FakeSlack, event_body, signed_headers  # noqa: E402


async def read_line(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit(0)
    data: dict[str, Any] = json.loads(line)
    return data


def say(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)  # the questions arrive as one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = await read_line(reader)
    discord = FakeDiscord(latency_s=config["latency_s"])
    discord.guilds[GUILD_ID].extend(config["discord_channels"])
    slacks = [FakeSlack(team_id=team) for team in config["slack_teams"]]
    model = FakeAnthropic()
    texts: dict[str, str] = {}  # answer -> question id, to tell the answers' timelines apart
    for qid, answer in config["answers"].items():
        text = "".join(answer["pieces"])
        texts[text] = qid
        model.script_for(
            qid, text, pieces=tuple(answer["pieces"]), gaps=tuple(answer["gaps"]), stall_s=answer["think_s"]
        )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(model)
        await stack.enter_async_context(discord)
        for slack in slacks:
            await stack.enter_async_context(slack)
            slack.enforce_limits()
            slack.latency_s = config["latency_s"]
        say(
            {
                "discord_api": discord.api_url,
                "discord_gateway": discord.gateway_url,
                "discord_token": discord.token,
                "slack_api": [s.api_url for s in slacks],
                "anthropic": model.url,
            }
        )
        plan = await read_line(reader)
        urls: list[str] = plan["slack_urls"]
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            sent: dict[str, dict[str, Any]] = {}
            t0 = time.monotonic()
            pending: set[asyncio.Task[None]] = set()
            for question in sorted(plan["questions"], key=lambda q: q["at"]):
                delay = t0 + question["at"] - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if question["platform"] == "discord":
                    payload = await discord.send_message(
                        question["user"], question["text"], channel_id=question["channel"]
                    )
                    sent[question["id"]] = {"message_id": payload["id"], "at": time.monotonic()}
                else:
                    task = asyncio.create_task(post_event(http, urls[question["team"]], question, sent))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending)
            say({"sent": len(sent)})
            report = await read_line(reader)
        seen = snapshot(discord, slacks, sent)
        # When the model sent each piece of each answer: (time, characters so far).
        produced: dict[str, list[list[float]]] = {qid: [] for qid in config["answers"]}
        seen["model"] = produced
        for at, text, count in model.sent_log:
            if text in texts:
                produced[texts[text]].append([at, count])
        await asyncio.to_thread(Path(report["path"]).write_text, json.dumps(seen))
        say({"written": report["path"]})


async def post_event(
    http: aiohttp.ClientSession, url: str, question: dict[str, Any], sent: dict[str, dict[str, Any]]
) -> None:
    event: dict[str, Any] = {"user": question["user"], "ts": question["ts"], "channel": question["channel"]}
    if question["kind"] == "dm_thread":
        event.update(type="message", channel_type="im", text=question["text"], thread_ts=question["thread_ts"])
    else:
        event.update(type="app_mention", text=f"<@UBOT> {question['text']}")
    body = event_body(event, team_id=question["team_id"])
    at = time.monotonic()
    async with http.post(url, data=body.encode(), headers=signed_headers(body, content_type="application/json")) as r:
        await r.read()
        sent[question["id"]] = {"message_id": question["ts"], "at": at, "status": r.status}


def snapshot(discord: FakeDiscord, slacks: list[FakeSlack], sent: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the platforms saw: every request, every version of every message, where each message sits."""
    return {
        "sent": sent,
        "discord": {
            "calls": [[c.method, c.path, c.at, c.status] for c in discord.calls],
            "versions": discord.versions,
            "messages": {
                mid: [m["channel_id"], (m.get("message_reference") or {}).get("message_id")]
                for mid, m in discord.messages.items()
                if m["author"]["id"] == "100000000000000001"
            },
            "threads": {t["id"]: t["parent_id"] for t in discord.threads},
        },
        "slack": [
            {
                "team": slack.team_id,
                "calls": [
                    [c.method, c.at, c.status, str(c.args.get("channel") or c.args.get("channel_id") or "")]
                    for c in slack.calls
                ],
                "versions": slack.versions,
                "messages": {f"{m.channel}:{m.ts}": [m.thread_ts, m.streaming] for m in slack.messages.values()},
            }
            for slack in slacks
        ],
    }


if __name__ == "__main__":
    asyncio.run(main())
