"""Two live processes on one store: SIGKILL the one that claimed a question but has shown nothing of
its answer yet, and the other takes the question itself over (its hold went stale) and answers it,
once: one reply on Slack, the whole answer, no "interrupted" marker. On the embedded SQLite store and
on Convex (the real functions).

The real `chatbot slack --http` processes, the real Bolt app and slack-sdk, the loopback Slack and
Anthropic servers. Slack refuses the first process's posts (429) until it is killed, so it dies
holding the question with nothing shown.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from core.messages import MessageRole, Platform, ReplyStatus, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import TEAM_ID, FakeSlack, event_body, signed_headers
from tests.faults.test_crash_recovery import EVENTS, free_port, start_bot, stop_all, until
from tests.faults.test_takeover import scale_out_env, shared_store

ANSWER = "Deploys go out from the release branch after the staging checks pass, every weekday morning."


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
async def test_a_live_process_answers_the_question_a_killed_process_claimed_but_never_answered(
    request: pytest.FixtureRequest, data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, kind: str
) -> None:
    for _ in range(2):  # the killed process's call and the live one's
        fake_anthropic.script(ANSWER, chunk_chars=20, delay_s=0.02)
    env = scale_out_env(request, data_dir, slack, fake_anthropic, kind)
    ports = [free_port(), free_port()]
    owner, other = await asyncio.gather(start_bot(env, ports[0]), start_bot(env, ports[1]))
    event = EVENTS[False]
    channel = str(event["channel"])
    try:
        slack.storm("chat.postMessage", times=10_000, retry_after=0.5)  # nothing of the answer shows
        body = event_body(event)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{ports[0]}/slack/events"
            async with http.post(url, data=body, headers=signed_headers(body, content_type="application/json")) as r:
                assert r.status == 200

        def refused() -> bool:
            return any(c.method == "chat.postMessage" and c.status == 429 for c in slack.calls)

        await until(refused, 20, "the first process tried to post its answer")
        owner.send_signal(signal.SIGKILL)
        await owner.wait()
        slack.faults["chat.postMessage"].clear()
        assert slack.replies_in(channel) == []

        def answered() -> bool:
            replies = slack.replies_in(channel)
            return len(replies) == 1 and slack.shown_text(replies[0]).startswith(ANSWER[:60])

        await until(answered, 30, "the live process answered the question")
        await asyncio.sleep(2.5)  # more heartbeats and sweeps: it is not answered twice
        [reply] = slack.replies_in(channel)
        assert ANSWER in slack.shown_text(reply) and "Interrupted" not in slack.shown_text(reply)
    finally:
        await stop_all(owner, other)

    store = await shared_store(request, data_dir, kind)
    try:
        ws = WorkspaceRef(Platform.SLACK, TEAM_ID)
        thread = await store.find_thread(ws, channel, str(event["ts"]))
        assert thread is not None
        messages = (await store.messages(ws, thread)).items
        assert [m.role for m in messages].count(MessageRole.USER) == 1  # the question, stored once
        answers = [m for m in messages if m.role is MessageRole.ASSISTANT and m.status is ReplyStatus.COMPLETE]
        assert len(answers) == 1 and ANSWER in answers[0].text  # the dead process's unposted reply never completes
        assert answers[0].platform_message_id == reply.ts
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "convex"])
async def test_a_question_acknowledged_while_its_authors_lookup_waits_is_held_and_answered_by_a_live_process(
    request: pytest.FixtureRequest, data_dir: Path, slack: FakeSlack, fake_anthropic: FakeAnthropic, kind: str
) -> None:
    """Slack never delivers an acknowledged event again: the first process holds the question before it
    asks users.info (which waits in its budget here), so when it dies waiting, the live process takes the
    question over, looks the author up itself and answers it, once."""
    fake_anthropic.script(ANSWER, chunk_chars=20, delay_s=0.02)
    env = scale_out_env(request, data_dir, slack, fake_anthropic, kind)
    ports = [free_port(), free_port()]
    owner, other = await asyncio.gather(start_bot(env, ports[0]), start_bot(env, ports[1]))
    event = EVENTS[False]
    channel, user = str(event["channel"]), str(event["user"])

    def lookups(status: int) -> int:
        return sum(
            1 for c in slack.calls if c.method == "users.info" and c.args.get("user") == user and c.status == status
        )

    try:
        slack.storm("users.info", times=10_000, retry_after=0.5)  # the author's facts never come
        body = event_body(event)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{ports[0]}/slack/events"
            async with http.post(url, data=body, headers=signed_headers(body, content_type="application/json")) as r:
                assert r.status == 200  # acknowledged: Slack will not deliver it again

        await until(lambda: lookups(429) > 0, 20, "the first process asked for the author's facts")
        owner.send_signal(signal.SIGKILL)
        await owner.wait()
        slack.faults["users.info"].clear()
        assert slack.replies_in(channel) == [] and not fake_anthropic.requests

        def answered() -> bool:
            replies = slack.replies_in(channel)
            return len(replies) == 1 and slack.shown_text(replies[0]).startswith(ANSWER[:60])

        await until(answered, 30, "the live process answered the question")
        assert lookups(200) >= 1  # the live process looked the author up itself
        await asyncio.sleep(2.5)  # more heartbeats and sweeps: it is not answered twice
        [reply] = slack.replies_in(channel)
        assert ANSWER in slack.shown_text(reply) and len(fake_anthropic.requests) == 1
    finally:
        await stop_all(owner, other)
