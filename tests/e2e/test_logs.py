"""The real command line's logs: commands show one clear line, services log JSON lines with no secret in them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.fernet import Fernet

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET, FakeSlack, event_body
from tests.slack.test_oauth import install_at
from tests.slack.test_server import child_env, free_port, mention_body, post_signed, wait_for_reply

ANTHROPIC_KEY = "sk-ant-api03-loopback-test-key-0123456789"


async def run_cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", *args,
        cwd=data_dir, env=child_env(data_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ingest_of_a_missing_file_prints_one_line_and_no_record(data_dir: Path) -> None:
    code, out, err = await run_cli(data_dir, "ingest", str(data_dir / "missing.md"))
    assert code == 1
    assert err.splitlines() == [f"chatbot: {data_dir / 'missing.md'}: no such file"], err
    assert "{" not in out + err
    assert out.strip().endswith("1 failed")


async def test_verbose_shows_the_records_as_json_lines(data_dir: Path) -> None:
    code, _, err = await run_cli(data_dir, "ingest", str(data_dir / "missing.md"), "--verbose")
    assert code == 1
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert "ingest.failed" in [r["event"] for r in records]
    assert err.splitlines()[-1] == f"chatbot: {data_dir / 'missing.md'}: no such file"


async def test_a_full_slack_run_logs_json_lines_with_keys_and_never_a_token(
    data_dir: Path, fake_anthropic: FakeAnthropic
) -> None:
    """`chatbot slack` at DEBUG (the libraries' request logs included) answers a question; then every token
    it was given is searched for in everything it wrote."""
    async with FakeSlack() as slack:
        env = {"SLACK_BOT_TOKEN": BOT_TOKEN}
        logs = await _slack_run(data_dir, slack, fake_anthropic, env, lambda url: _ask(url, slack, "C1"))
    for token in (BOT_TOKEN, SIGNING_SECRET, ANTHROPIC_KEY):
        assert token not in logs, f"{token} leaked into the logs"
    records = [json.loads(row) for row in logs.splitlines() if row.startswith("{")]
    assert len(records) > 5
    answered = [r for r in records if r["event"] == "slack.answered"]
    assert answered and answered[0]["key"] == "slack:T0FAKE:C1:1700000700.000100"


async def test_a_distributed_slack_run_never_logs_the_tokens_it_learns(
    data_dir: Path, fake_anthropic: FakeAnthropic
) -> None:
    """The same in distribution mode: a workspace installs the app (oauth.v2.access hands out its bot token,
    and slack-sdk logs that response at DEBUG) and is answered; neither that token, the client secret nor
    the key that seals tokens may appear."""
    key = Fernet.generate_key().decode()
    env = {"SLACK_CLIENT_ID": CLIENT_ID, "SLACK_CLIENT_SECRET": CLIENT_SECRET, "CHATBOT_TOKEN_KEY": key}

    async def install_then_ask(url: str) -> None:
        assert (await install_at(url, slack, "T9LOGS")).status == 200
        await post_signed(
            url + "/slack/events",
            event_body(
                {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1700000710.000100", "channel": "C9"},
                team_id="T9LOGS",
            ),
        )
        await wait_for_reply(slack, "C9")

    async with FakeSlack() as slack:
        logs = await _slack_run(data_dir, slack, fake_anthropic, env, install_then_ask)
        issued = slack.token_of("T9LOGS")
    assert slack.calls_to("oauth.v2.access")
    for token in (issued, CLIENT_SECRET, key, SIGNING_SECRET, ANTHROPIC_KEY):
        assert token not in logs, f"{token[:8]}… leaked into the logs"
    assert "[redacted]" in logs, "the run did log something secret-shaped, and it was scrubbed"


async def _ask(url: str, slack: FakeSlack, channel: str) -> None:
    await post_signed(url + "/slack/events", mention_body("1700000700.000100"))
    await wait_for_reply(slack, channel)


async def _slack_run(
    data_dir: Path,
    slack: FakeSlack,
    fake_anthropic: FakeAnthropic,
    extra: dict[str, str],
    work: Callable[[str], Awaitable[None]],
) -> str:
    port = free_port()
    env = child_env(
        data_dir,
        **extra,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        CHATBOT_LOG_LEVEL="DEBUG",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "slack", "--http", "--port", str(port),
        cwd=data_dir, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    ready = asyncio.Event()

    async def read_stderr() -> None:  # drained all along: a full pipe would stall the process
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode())
            if "Slack app ready" in lines[-1]:
                ready.set()

    reader = asyncio.create_task(read_stderr())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        await work(f"http://127.0.0.1:{port}")
        await asyncio.sleep(0.3)  # the reply's last records
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await asyncio.wait_for(reader, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
    assert fake_anthropic.api_key() == ANTHROPIC_KEY, "the run really used the key"
    return "".join(lines)
