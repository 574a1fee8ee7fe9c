"""Bad input at the Slack HTTP edge, through the real Bolt app over loopback HTTP: refused before it is
parsed (401), malformed bodies answered 400 (never 5xx, never reaching the core), unknown events
acknowledged, same-second retries and replays acknowledged and handled once, odd text normalized."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from core.messages import MessageRole, Platform, WorkspaceRef
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_USER_ID, SIGNING_SECRET, TEAM_ID, command_body, event_body, signed_headers
from tests.slack.conftest import Harness

MENTION = {
    "type": "app_mention",
    "user": "U1",
    "text": f"<@{BOT_USER_ID}> hi?",
    "ts": "1700000101.000100",
    "channel": "C1",
}


def envelope(event: Any) -> str:
    """An event_callback envelope with `event` as given (any JSON value, even null)."""
    body = json.loads(event_body({"type": "app_mention", "ts": "1"}))
    body["event"] = event
    return json.dumps(body)


def without(field: str) -> str:
    return envelope({k: v for k, v in MENTION.items() if k != field})


MALFORMED_JSON = {
    "not JSON": '{"type": "event_callback", "event": {',
    "an array": json.dumps([{"type": "event_callback", "event": MENTION}]),
    "a string": json.dumps("event_callback"),
    "no type": json.dumps({"event": MENTION}),
    "null event": envelope(None),
    "event is a list": envelope([MENTION]),
    "event without a type": envelope({k: v for k, v in MENTION.items() if k != "type"}),
    "no channel": without("channel"),
    "no ts": without("ts"),
    "channel is a number": envelope({**MENTION, "channel": 5}),
    "text is an object": envelope({**MENTION, "text": {"a": 1}}),
    "url_verification without a challenge": json.dumps({"type": "url_verification"}),
    "empty": "",
}
MALFORMED_FORMS = {
    "command without a user": "command=%2Fchatbot&team_id=T1&text=help&response_url=http%3A%2F%2Fx",
    "interactivity payload not JSON": "payload=%7Bnot-json",
    "interactivity payload an array": "payload=%5B1%5D",
}


def no_work_done(h: Harness) -> None:
    assert not h.bot.errors, list(h.bot.errors)
    assert not [c for c in h.slack.calls if c.method != "auth.test"], [c.method for c in h.slack.calls]


@pytest.mark.parametrize("body", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
async def test_malformed_json_bodies_answer_400_signed_and_401_unsigned(bare: Harness, body: str) -> None:
    signed = await bare.post(body, signed_headers(body, content_type="application/json"))
    assert signed.status == 400, signed.text
    assert "error" in json.loads(signed.text)
    unsigned = await bare.post(body, {"Content-Type": "application/json"})
    assert unsigned.status == 401
    forged = await bare.post(body, signed_headers(body, content_type="application/json", secret="forged"))
    assert forged.status == 401
    await bare.settle()
    no_work_done(bare)  # the bare app has no core: any use of it would have failed the test


@pytest.mark.parametrize("body", MALFORMED_FORMS.values(), ids=MALFORMED_FORMS.keys())
async def test_malformed_forms_answer_400_signed_and_401_unsigned(bare: Harness, body: str) -> None:
    form = "application/x-www-form-urlencoded"
    assert (await bare.post(body, signed_headers(body, content_type=form))).status == 400
    assert (await bare.post(body, {"Content-Type": form})).status == 401
    await bare.settle()
    no_work_done(bare)


async def test_a_body_that_is_not_utf8_is_refused_before_decoding(bare: Harness) -> None:
    raw = b'{"type": "event_callback", "event": "\xff\xfe"}'
    ts = int(time.time())
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature}
    async with bare.http.post(bare.url, data=raw, headers=headers) as response:
        assert response.status == 400
    async with bare.http.post(bare.url, data=raw, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 401
    no_work_done(bare)


@pytest.mark.parametrize(
    "body",
    [
        envelope({"type": "reaction_added", "user": "U1", "item": {}}),
        json.dumps({"type": "app_rate_limited", "team_id": TEAM_ID, "minute_rate_limited": 1}),
    ],
    ids=["unknown event type", "unknown envelope type"],
)
async def test_events_the_app_does_not_handle_are_acknowledged_and_dropped(bare: Harness, body: str) -> None:
    reply = await bare.post(body, signed_headers(body, content_type="application/json"))
    assert reply.status == 200
    await bare.settle()
    no_work_done(bare)


async def test_a_same_second_retry_is_acknowledged_and_answered_once(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    """Slack's retry within the second of the original carries the same timestamp, so the same signature."""
    event = {**MENTION, "ts": "1700000102.000100"}
    body = event_body(event)
    now = int(time.time())
    first = await harness.post(body, signed_headers(body, content_type="application/json", timestamp=now))
    retry = await harness.post(body, signed_headers(body, content_type="application/json", timestamp=now, retry_num=1))
    assert (first.status, retry.status) == (200, 200)
    # A later retry (new timestamp, new signature) gets through the edge and is deduplicated by the claim.
    later = await harness.post(
        body, signed_headers(body, content_type="application/json", timestamp=now + 2, retry_num=2)
    )
    assert later.status == 200
    await harness.settle()
    assert len(harness.slack.replies_in("C1")) == 1
    assert len(fake_anthropic.requests) == 1
    assert not harness.bot.errors


async def test_a_replayed_slash_command_runs_once(harness: Harness) -> None:
    harness.slack.add_user("UADMIN", is_admin=True)
    body = command_body("role set <@U7> curator", user_id="UADMIN", response_url=harness.slack.response_url())
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    assert (await harness.post(body, headers)).status == 200
    assert (await harness.post(body, headers)).status == 200
    await harness.settle()
    assert len(harness.slack.responses) == 1
    store = harness.bot.core.store
    entries = [e for e in await store.audit_entries(WorkspaceRef(Platform.SLACK, TEAM_ID), _admin(), limit=20)]
    assert [e.action for e in entries].count("role.set") == 1


def _admin() -> Any:
    from core.messages import Actor, PlatformFacts

    return Actor("UADMIN", PlatformFacts(is_admin=True))


async def test_slacks_retry_of_a_5xx_gets_through_once(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatch = harness.bot.app.async_dispatch
    calls = 0

    async def failing_once(request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug behind the edge")
        return await dispatch(request)

    monkeypatch.setattr(harness.bot.app, "async_dispatch", failing_once)
    event = {**MENTION, "ts": "1700000103.000100"}
    body = event_body(event)
    now = int(time.time())
    assert (
        await harness.post(body, signed_headers(body, content_type="application/json", timestamp=now))
    ).status == 500
    retry = signed_headers(body, content_type="application/json", timestamp=now, retry_num=1)
    assert (await harness.post(body, retry)).status == 200
    assert (await harness.post(body, retry)).status == 200  # and only once
    await harness.settle()
    assert calls == 2
    assert len(harness.slack.replies_in("C1")) == 1


@pytest.mark.parametrize(
    ("raw_text", "stored"),
    [
        ("<@UBOT> lone \\ud800 surrogate?", "lone \ufffd surrogate?"),
        ("<@UBOT> nul\\u0000 and bell\\u0007 and tab\\tkept?", "nul and bell and tab\tkept?"),
    ],
    ids=["lone surrogate", "control characters"],
)
async def test_odd_text_is_normalized_at_the_edge_and_answered(
    harness: Harness, fake_anthropic: FakeAnthropic, raw_text: str, stored: str
) -> None:
    ts = f"17000002{len(raw_text):02d}.000100"
    # Written by hand: json.dumps would escape the surrogate the same way, but this is the wire form.
    body = envelope({**MENTION, "ts": ts}).replace(json.dumps(MENTION["text"]), f'"{raw_text}"')
    assert "\\ud800" in body or "\\u0000" in body
    reply = await harness.post(body, signed_headers(body, content_type="application/json"))
    assert reply.status == 200
    await harness.settle()
    assert not harness.bot.errors, list(harness.bot.errors)
    assert len(harness.slack.replies_in("C1")) == 1  # answered, not silently lost
    store = harness.bot.core.store
    thread = await store.find_thread(WorkspaceRef(Platform.SLACK, TEAM_ID), "C1", ts)
    assert thread is not None
    page = await store.messages(WorkspaceRef(Platform.SLACK, TEAM_ID), thread)
    [question] = [m for m in page.items if m.role is MessageRole.USER]
    assert question.text == stored
    assert fake_anthropic.last_request["messages"][-1]["content"] == stored
