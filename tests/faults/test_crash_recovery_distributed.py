"""Distribution: a reply cut by SIGKILL in an installed workspace is finished after the restart with that
workspace's own token (the recovery runs outside any event, so it looks the token up itself)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_USER_ID, CLIENT_ID, CLIENT_SECRET, FakeSlack, event_body, signed_headers
from tests.faults.test_crash_recovery import ANSWER, bot_env, free_port, start_bot, the_reply, until
from tests.slack.test_oauth import install_at

TEAM = "T7CRASH"


async def test_an_installed_workspaces_cut_reply_is_finished_with_its_token(
    data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(ANSWER, chunk_chars=8, delay_s=0.05)
    env = bot_env(
        data_dir,
        slack,
        fake_anthropic,
        SLACK_NATIVE_STREAMING="false",
        SLACK_CLIENT_ID=CLIENT_ID,
        SLACK_CLIENT_SECRET=CLIENT_SECRET,
        CHATBOT_TOKEN_KEY=Fernet.generate_key().decode(),
    )
    port = free_port()
    first = await start_bot(env, port)
    second = None
    try:
        assert (await install_at(f"http://127.0.0.1:{port}", slack, TEAM)).status == 200
        event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> deploy?", "ts": "1700001000.000100",
                 "channel": "C7"}  # fmt: skip
        body = event_body(event, team_id=TEAM)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/slack/events"
            async with http.post(url, data=body, headers=signed_headers(body, content_type="application/json")) as r:
                assert r.status == 200
        await until(lambda: (m := the_reply(slack, "C7")) is not None and len(slack.shown_text(m)) > 150, 30, "shown")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        reply = the_reply(slack, "C7")
        assert reply is not None
        calls_before = len(slack.calls)

        second = await start_bot(env, port)
        marker = "Interrupted: the bot restarted while answering"
        await until(lambda: marker in slack.shown_text(reply), 30, "the reply was finished on Slack")
        finishing = [c for c in slack.calls[calls_before:] if c.args.get("ts") == reply.ts]
        assert finishing and {c.team for c in finishing} == {TEAM} and not any(c.error for c in finishing)
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
