"""`run_slack` and `chatbot slack`: startup against the fake Slack, an answer, a clean stop, missing variables."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import aiohttp
import pytest
import yaml

from bots.slack.server import MissingSlackSettings, run_slack, slack_credentials
from core.config import MissingSetting, Settings
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    FakeSlack,
    command_body,
    event_body,
    signed_headers,
)

if TYPE_CHECKING:
    from core.app import ChatCore

ROOT = Path(__file__).parents[2]


def mention_body(ts: str) -> str:
    return event_body(
        {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> are you there?", "ts": ts, "channel": "C1"}
    )


async def post_signed(url: str, body: str) -> None:
    headers = signed_headers(body, content_type="application/json")
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        assert response.status == 200


async def wait_for_reply(slack: FakeSlack, channel: str, limit_s: float = 20) -> None:
    """Poll the fake (another process may be answering) for a finished reply: bounded by `limit_s`."""
    for _ in range(int(limit_s / 0.05)):
        if slack.replies_in(channel) and (slack.calls_to("chat.stopStream") or slack.calls_to("chat.update")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reply in {channel} within {limit_s}s")


async def test_run_slack_serves_events_and_stops_cleanly(core: ChatCore, slack: FakeSlack) -> None:
    settings = Settings(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN=None,
        SLACK_API_URL=slack.api_url,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_slack(settings, core, port=0, host="127.0.0.1", stop=stop, on_ready=ready.set_result)
    )
    url = await asyncio.wait_for(ready, 10)
    assert url.endswith("/slack/events")
    assert slack.calls_to("auth.test"), "the token is checked at startup"
    body = mention_body("1700000500.000100")
    await post_signed(url, body)
    await wait_for_reply(slack, "C1")
    stop.set()
    assert await asyncio.wait_for(task, 20) == 0
    assert slack.replies_in("C1")[0].thread_ts == "1700000500.000100"


async def test_run_slack_in_socket_mode_answers_events_and_commands(core: ChatCore, slack: FakeSlack) -> None:
    """The real Socket Mode client: apps.connections.open, the WebSocket, hello, envelopes and their acks."""
    settings = Settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=slack.api_url)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_slack(settings, core, socket=True, stop=stop, on_ready=ready.set_result))
    try:
        assert await asyncio.wait_for(ready, 10) == "Socket Mode"
        ack = await slack.deliver("events_api", json.loads(mention_body("1700000700.000100")))
        assert set(ack) == {"envelope_id"}  # acknowledged at once; the answer comes after
        await wait_for_reply(slack, "C1")
        assert slack.replies_in("C1")[0].thread_ts == "1700000700.000100"

        command = dict(parse_qsl(command_body("role list", user_id="U1", response_url=slack.response_url())))
        await slack.deliver("slash_commands", command)
        for _ in range(200):
            if slack.responses:
                break
            await asyncio.sleep(0.05)
        [response] = slack.responses
        # Through the core's role check: a plain member may not list roles.
        assert response == {
            "text": "Not allowed: This needs the admin role; you are a member.",
            "response_type": "ephemeral",
        }
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    assert [c.method for c in slack.calls if c.method == "apps.connections.open"] == ["apps.connections.open"]


@pytest.mark.parametrize(
    ("socket_mode", "env", "missing"),
    [
        (False, {}, ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]),
        (False, {"SLACK_BOT_TOKEN": "xoxb-1"}, ["SLACK_SIGNING_SECRET"]),
        (False, {"SLACK_SIGNING_SECRET": "s"}, ["SLACK_BOT_TOKEN"]),
        (True, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, ["SLACK_APP_TOKEN"]),
        (True, {}, ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"]),
    ],
)
def test_each_missing_variable_gets_one_clear_line(socket_mode: bool, env: dict[str, str], missing: list[str]) -> None:
    values = {"SLACK_BOT_TOKEN": None, "SLACK_SIGNING_SECRET": None, "SLACK_APP_TOKEN": None} | env
    with pytest.raises(MissingSetting) as caught:
        slack_credentials(Settings(**values), socket=socket_mode)  # type: ignore[arg-type]
    assert isinstance(caught.value, MissingSlackSettings)
    lines = f"chatbot: {caught.value}".splitlines()
    assert [line.split()[1] for line in lines] == missing
    assert all(line.startswith("chatbot: SLACK_") and "is not set (" in line for line in lines)


def test_manifest_asks_for_exactly_the_scopes_and_events_used() -> None:
    manifest = yaml.safe_load((ROOT / "bots" / "slack" / "manifest.yaml").read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "app_mentions:read",
        "assistant:write",
        "channels:history",
        "chat:write",
        "commands",
        "files:read",
        "groups:history",
        "im:history",
        "mpim:history",
        "users:read",
    ]
    assert sorted(manifest["settings"]["event_subscriptions"]["bot_events"]) == [
        "app_mention",
        "app_uninstalled",
        "assistant_thread_started",
        "message.channels",
        "message.groups",
        "message.im",
        "tokens_revoked",
    ]
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/chatbot"]


# -- the real command line ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_", "CONVEX_", "WEAVIATE_"))}
    return base | {"CHATBOT_DATA_DIR": str(data_dir)} | extra


async def test_cli_prints_one_line_per_missing_variable(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "slack", "--http",
        cwd=data_dir, env=child_env(data_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()
    lines = [line for line in err.decode().splitlines() if line.startswith("chatbot:")]
    assert [line.split()[1] for line in lines] == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"], err.decode()


async def test_cli_slack_http_starts_answers_on_the_fake_and_stops_on_sigterm(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    port = free_port()
    env = child_env(
        data_dir,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        ANTHROPIC_API_KEY="test",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "slack", "--http", "--port", str(port),
        cwd=data_dir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(60):
            while b"Slack app ready" not in (line := await proc.stderr.readline()):
                assert line, "the process ended before it was ready"
        body = mention_body("1700000600.000100")
        await post_signed(f"http://127.0.0.1:{port}/slack/events", body)
        await wait_for_reply(slack, "C1")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
