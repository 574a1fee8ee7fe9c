"""End to end: signed events through the real Bolt app and the real core, against the loopback Slack and Anthropic."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from bots.slack import limits
from bots.slack.mrkdwn import to_mrkdwn
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_USER_ID, event_body, signed_headers
from tests.slack.conftest import Harness

_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1_690_000_000 + next(_ts)}.000200"


def mention(text: str, *, user: str = "U1", channel: str = "C1", ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts or new_ts(),
        "channel": channel,
        **extra,
    }


def channel_message(text: str, *, user: str = "U1", channel: str = "C1", ts: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        **extra,
    }


def dm(text: str, *, user: str = "U1", channel: str = "D1", ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel_type": "im",
        "user": user,
        "text": text,
        "ts": ts or new_ts(),
        "channel": channel,
        **extra,
    }


async def answered(h: Harness, event: dict[str, Any]) -> None:
    reply = await h.event(event)
    assert reply.status == 200, reply.text
    await h.settle()
    assert not h.bot.errors, list(h.bot.errors)


ANSWER = (
    "To roll back a deploy, open the **deploy dashboard**, pick the previous release and press *Roll back*. "
    "Then post in #ops so the on-call person knows.\n\n"
    "1. Open the dashboard\n2. Pick the release\n3. Roll back\n\n"
    "```\ndeploy rollback --to previous\n```\n"
    "That is all it takes; the whole thing usually finishes within two minutes, and the alerts clear by themselves."
)


async def test_mention_streams_edits_in_the_thread_and_ends_with_the_full_answer(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(ANSWER, chunk_chars=8, delay_s=0.08)  # ~3.5 s: several 1 s edit intervals
    event = mention("how do I roll back a deploy?")
    await answered(harness, event)

    [reply] = harness.slack.replies_in("C1")
    assert reply.thread_ts == event["ts"]  # answered in the message's thread
    assert harness.slack.shown_text(reply) == to_mrkdwn(ANSWER)
    updates = harness.slack.calls_to("chat.update")
    shown = [_section_text(c.args) for c in updates]
    assert len(updates) >= 3
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(shown[:-1])), "the text grows edit after edit"
    assert shown[-1] == to_mrkdwn(ANSWER)
    # The question reached the model without the mention token.
    assert _last_user_text(fake_anthropic) == "how do I roll back a deploy?"


async def test_retried_event_gets_exactly_one_reply(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    event = mention("what is our on-call rotation?")
    first = await harness.event(event)
    # Slack retries with X-Slack-Retry-Num (a new delivery, so a new timestamp and signature).
    body = event_body(event)
    retry = await harness.post(
        body, signed_headers(body, content_type="application/json", timestamp=int(time.time()) - 2, retry_num=1)
    )
    assert first.status == retry.status == 200
    await harness.settle()
    assert len(harness.slack.replies_in("C1")) == 1
    assert len(harness.slack.calls_to("chat.postMessage")) == 1
    assert len(fake_anthropic.requests) == 1


async def test_app_mention_and_message_pair_gets_exactly_one_reply(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    event = mention("where are the design docs?")
    pair = channel_message(event["text"], ts=event["ts"])
    await asyncio.gather(harness.event(pair), harness.event(event))
    await harness.settle()
    assert len(harness.slack.replies_in("C1")) == 1
    assert len(fake_anthropic.requests) == 1


async def test_replayed_event_is_acknowledged_and_not_answered_twice(harness: Harness) -> None:
    body = event_body(mention("hello"))
    headers = signed_headers(body, content_type="application/json")
    assert (await harness.post(body, headers)).status == 200
    assert (await harness.post(body, headers)).status == 200  # Slack must not count it as a failure
    await harness.settle()
    assert len(harness.slack.replies_in("C1")) == 1


async def test_direct_message_is_answered_at_the_top_level(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("Hello! Ask me about **anything** here.")
    await answered(harness, dm("hi there"))
    [reply] = harness.slack.replies_in("D1")
    assert reply.thread_ts is None
    assert harness.slack.shown_text(reply) == "Hello! Ask me about *anything* here."


async def test_thread_follow_up_without_mention_uses_the_history(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script("The staging cluster is called *blue*.")
    first = mention("what is the staging cluster called?")
    await answered(harness, first)
    fake_anthropic.script("It runs in eu-west-1.")
    await answered(harness, channel_message("and where does it run?", ts=new_ts(), thread_ts=first["ts"]))

    replies = harness.slack.replies_in("C1", first["ts"])
    assert [harness.slack.shown_text(r) for r in replies] == [
        "The staging cluster is called _blue_.",
        "It runs in eu-west-1.",
    ]
    history = fake_anthropic.last_request["messages"]
    flat = str(history)
    assert "what is the staging cluster called?" in flat and "The staging cluster is called *blue*." in flat
    assert _last_user_text(fake_anthropic) == "and where does it run?"


async def test_unaddressed_channel_chatter_is_ignored(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    await answered(harness, channel_message("lunch anyone?", ts=new_ts()))
    await answered(harness, channel_message("in some thread", ts=new_ts(), thread_ts=new_ts()))
    assert not harness.slack.replies_in("C1") and not harness.slack.ephemerals
    assert not fake_anthropic.requests


async def test_bot_messages_edits_and_own_messages_are_ignored(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    ts = new_ts()
    await answered(harness, dm("from another bot", bot_id="B999", user="U9"))
    await answered(harness, dm("own", user=BOT_USER_ID))
    await answered(
        harness,
        {
            "type": "message",
            "subtype": "message_changed",
            "channel_type": "im",
            "channel": "D1",
            "ts": ts,
            "message": {"user": "U1", "text": "edited", "ts": ts},
        },
    )
    await answered(harness, dm("joined", subtype="channel_join"))
    assert not harness.slack.calls_to("chat.postMessage", ok_only=False)
    assert not fake_anthropic.requests


async def test_guest_is_refused_politely_and_ephemerally(harness: Harness, fake_anthropic: FakeAnthropic) -> None:
    harness.slack.add_user("UOWNER", is_owner=True)
    await harness.command("settings set default_role guest", user_id="UOWNER")
    await harness.settle()
    assert "updated" in harness.slack.responses[-1]["text"]

    await answered(harness, mention("can I ask?", user="U2"))
    assert not harness.slack.replies_in("C1")
    [notice] = harness.slack.ephemerals
    assert notice["user"] == "U2" and "guest" in notice["text"].lower()
    assert not fake_anthropic.requests


async def test_blocked_user_is_refused_politely_and_ephemerally(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    harness.slack.add_user("UADMIN", is_admin=True)
    await harness.command("role block <@U2|bob>", user_id="UADMIN")
    await harness.settle()
    assert "blocked" in harness.slack.responses[-1]["text"]

    await answered(harness, mention("hello?", user="U2"))
    assert not harness.slack.replies_in("C1")
    [notice] = harness.slack.ephemerals
    assert notice["user"] == "U2" and "sorry" in notice["text"].lower()
    assert not fake_anthropic.requests
    # Others are still answered.
    await answered(harness, mention("hello?", user="U3"))
    assert len(harness.slack.replies_in("C1")) == 1


async def test_member_cannot_set_roles(harness: Harness) -> None:
    harness.slack.add_user("UMEMBER")
    reply = await harness.command("role set <@U4> curator", user_id="UMEMBER")
    assert reply.status == 200
    await harness.settle()
    [response] = harness.slack.responses
    assert response["response_type"] == "ephemeral"
    assert response["text"].startswith("Not allowed")
    harness.slack.add_user("UADMIN", is_admin=True)
    await harness.command("role list", user_id="UADMIN")
    await harness.settle()
    assert "<@U4>" not in harness.slack.responses[-1]["text"]


async def test_admin_sets_roles_below_their_own_only(harness: Harness) -> None:
    harness.slack.add_user("UADMIN", is_admin=True)
    for command in (
        "role set <@U4> curator",
        "role set <@U5> admin",
        "role set <@U6> owner",
        "role set <@UADMIN> owner",
    ):
        await harness.command(command, user_id="UADMIN")
        await harness.settle()
    texts = [r["text"] for r in harness.slack.responses]
    assert "<@U4> is now curator" in texts[0]
    assert all(t.startswith("Not allowed") for t in texts[1:]), texts
    await harness.command("role list", user_id="UADMIN")
    await harness.settle()
    listing = harness.slack.responses[-1]["text"]
    assert "<@U4>: curator" in listing and "<@U5>" not in listing and "<@U6>" not in listing


async def test_429_storm_on_chat_update_still_ends_with_the_exact_final_text(
    fast_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = fast_harness
    fake_anthropic.script(ANSWER, chunk_chars=5, delay_s=0.01)
    h.slack.rate_limit("chat.update", per_minute=50, burst=3)  # Slack's Tier 3, in real time
    h.slack.storm("chat.update", times=5, retry_after=1)
    await answered(h, mention("how do I roll back?"))
    [reply] = h.slack.replies_in("C1")
    assert h.slack.shown_text(reply) == to_mrkdwn(ANSWER)
    assert len(h.slack.calls_to("chat.update", ok_only=False)) > len(h.slack.calls_to("chat.update"))
    assert h.bot.scheduler.rate_limited >= 5


async def test_assistant_thread_greets_suggests_and_answers_with_status_and_title(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "context": {}, "channel_id": "D7", "thread_ts": "1700000100.000100"},
        "event_ts": "1700000100.000200",
    }
    await answered(harness, started)
    [greeting] = harness.slack.replies_in("D7", "1700000100.000100")
    assert "Ask me" in greeting.text
    assert harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
    team = harness.slack.team_id
    for method in ("chat.postMessage", "assistant.threads.setSuggestedPrompts"):  # both spent from their budgets
        assert harness.bot.scheduler.rate(limits.scope(method, team, "D7").key) is not None, method

    fake_anthropic.script("Here you go.")
    await answered(harness, dm("What can you do for me today?", channel="D7", thread_ts="1700000100.000100"))
    replies = harness.slack.replies_in("D7", "1700000100.000100")
    assert harness.slack.shown_text(replies[-1]) == "Here you go."
    [status] = harness.slack.calls_to("assistant.threads.setStatus")
    assert status.args["status"] == "is thinking…"
    [title] = harness.slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "What can you do for me today?"


def _section_text(args: dict[str, Any]) -> str:
    blocks = args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")


def _last_user_text(fake: FakeAnthropic) -> str:
    content = fake.last_request["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content)


# Over two messages' worth, with a code block that must be split across them.
LONG_ANSWER = (
    "Intro paragraph.\n\n"
    + "Some prose. " * 200
    + "\n\n```python\n"
    + "\n".join(f"step_{i}()  # {'x' * 60}" for i in range(60))
    + "\n```\n\nThe end."
)


async def test_long_answer_continues_in_follow_up_messages_without_breaking_code(
    fast_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = fast_harness
    fake_anthropic.script(LONG_ANSWER, chunk_chars=200)
    event = mention("give me the whole script")
    await answered(h, event)
    replies = h.slack.replies_in("C1", event["ts"])
    assert len(replies) >= 2
    for reply in replies:
        for block in reply.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
                assert block["text"]["text"].count("```") % 2 == 0, "every section closes the fences it opens"
    shown = "\n".join(h.slack.shown_text(r) for r in replies)
    assert all(f"step_{i}()" in shown for i in range(60))
    assert shown.rstrip().endswith("The end.")


# -- native streaming (the default where the audience is one person: DM threads, assistant threads) ---

DM_THREAD = "1690000000.000100"


async def test_a_dm_thread_streams_natively_and_ends_with_the_full_answer(
    native_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = native_harness
    fake_anthropic.script(ANSWER, chunk_chars=8, delay_s=0.08)
    event = dm("how do I roll back a deploy?", thread_ts=DM_THREAD)
    await answered(h, event)

    [reply] = h.slack.replies_in("D1")
    assert reply.thread_ts == DM_THREAD and not reply.streaming
    assert h.slack.shown_text(reply) == ANSWER  # Slack renders the Markdown itself
    [start] = h.slack.calls_to("chat.startStream")
    assert "recipient_user_id" not in start.args  # a DM's audience is its one person
    appended = [c.args["markdown_text"] for c in h.slack.calls_to("chat.appendStream")]
    assert len(appended) >= 2, "the answer arrives in several appends as it is written"
    [stop] = h.slack.calls_to("chat.stopStream")
    assert "".join([*appended, stop.args.get("markdown_text", "")]) == ANSWER
    # Once the stream has ended, one edit swaps its Stop for Regenerate and 👍/👎, the answer in a
    # markdown block Slack renders as it rendered the stream.
    [swap] = h.slack.calls_to("chat.update", ok_only=False)
    assert [b["type"] for b in swap.args["blocks"]] == ["markdown", "actions"]
    assert not h.slack.calls_to("chat.postMessage")


async def test_a_channel_thread_is_edited_with_chat_update_so_everyone_watches_it_grow(
    native_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = native_harness
    fake_anthropic.script(ANSWER, chunk_chars=40, delay_s=0.05)
    await answered(h, mention("how do I roll back?"))
    [reply] = h.slack.replies_in("C1")
    assert h.slack.shown_text(reply) == to_mrkdwn(ANSWER)
    assert not h.slack.calls_to("chat.startStream", ok_only=False) and h.slack.calls_to("chat.update")


async def test_native_streaming_falls_back_to_chat_update_where_slack_refuses_it(
    native_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = native_harness
    h.slack.fail("chat.startStream", error="not_allowed_token_type")
    fake_anthropic.script(ANSWER, chunk_chars=40, delay_s=0.05)
    await answered(h, dm("how do I roll back?", thread_ts=DM_THREAD))
    [reply] = h.slack.replies_in("D1")
    assert h.slack.shown_text(reply) == to_mrkdwn(ANSWER)
    assert h.slack.calls_to("chat.postMessage") and h.slack.calls_to("chat.update")


async def test_429_storm_on_append_stream_still_ends_with_the_exact_final_text(
    native_fast_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = native_fast_harness
    fake_anthropic.script(ANSWER, chunk_chars=5, delay_s=0.01)
    h.slack.rate_limit("chat.appendStream", per_minute=50, burst=3)
    h.slack.storm("chat.appendStream", times=5, retry_after=1)
    await answered(h, dm("how do I roll back?", thread_ts=DM_THREAD))
    [reply] = h.slack.replies_in("D1")
    assert h.slack.shown_text(reply) == ANSWER and not reply.streaming
    assert h.bot.scheduler.rate_limited >= 5


async def test_long_answer_streams_natively_into_follow_up_messages(
    native_fast_harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = native_fast_harness
    fake_anthropic.script(LONG_ANSWER, chunk_chars=200)
    await answered(h, dm("give me the whole script", thread_ts=DM_THREAD))
    replies = h.slack.replies_in("D1", DM_THREAD)
    assert len(replies) >= 2 and not any(r.streaming for r in replies), "every stream was stopped"
    assert len(h.slack.calls_to("chat.startStream")) == len(replies)
    for reply in replies:
        assert len(h.slack.shown_text(reply)) <= 5000
        assert h.slack.shown_text(reply).count("```") % 2 == 0, "every message closes the fences it opens"
    shown = "\n".join(h.slack.shown_text(r) for r in replies)
    assert all(f"step_{i}()" in shown for i in range(60))
    assert shown.rstrip().endswith("The end.")
