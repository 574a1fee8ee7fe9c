"""Request verification through the real Bolt app over HTTP: only genuine, fresh, first-time requests get in."""

from __future__ import annotations

import json
import time

from tests.fakes.slack import SIGNING_SECRET, event_body, sign, signed_headers, url_verification_body
from tests.slack.conftest import Harness

MENTION = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hello?", "ts": "1700000001.000100", "channel": "C1"}


def no_work_done(h: Harness) -> None:
    assert not h.bot.errors, list(h.bot.errors)
    assert not h.slack.calls_to("chat.postMessage", ok_only=False)
    assert not h.slack.calls_to("chat.postEphemeral", ok_only=False)


async def test_url_verification_echoes_the_challenge(bare: Harness) -> None:
    body = url_verification_body("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    reply = await bare.post(body, signed_headers(body, content_type="application/json"))
    assert reply.status == 200
    assert json.loads(reply.text) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_url_verification_needs_a_valid_signature(bare: Harness) -> None:
    body = url_verification_body("abc")
    reply = await bare.post(body, signed_headers(body, content_type="application/json", secret="wrong"))
    assert reply.status == 401
    assert "abc" not in reply.text


async def test_forged_signature_is_refused(bare: Harness) -> None:
    body = event_body(MENTION)
    headers = signed_headers(body, content_type="application/json", secret="not-the-" + SIGNING_SECRET)
    reply = await bare.post(body, headers)
    assert reply.status == 401
    await bare.settle()
    no_work_done(bare)


async def test_tampered_body_is_refused(bare: Harness) -> None:
    body = event_body(MENTION)
    headers = signed_headers(body, content_type="application/json")
    reply = await bare.post(body.replace("hello?", "role set U1 owner"), headers)
    assert reply.status == 401
    await bare.settle()
    no_work_done(bare)


async def test_missing_signature_is_refused(bare: Harness) -> None:
    body = event_body(MENTION)
    reply = await bare.post(body, {"Content-Type": "application/json"})
    assert reply.status == 401
    no_work_done(bare)


async def test_stale_timestamp_is_refused(bare: Harness) -> None:
    body = event_body(MENTION)
    stale = int(time.time()) - 5 * 60 - 30
    reply = await bare.post(body, signed_headers(body, content_type="application/json", timestamp=stale))
    assert reply.status == 401
    await bare.settle()
    no_work_done(bare)


async def test_future_timestamp_is_refused(bare: Harness) -> None:
    body = event_body(MENTION)
    ahead = int(time.time()) + 10 * 60
    reply = await bare.post(body, signed_headers(body, content_type="application/json", timestamp=ahead))
    assert reply.status == 401
    no_work_done(bare)


async def test_old_signature_on_a_new_timestamp_is_refused(bare: Harness) -> None:
    """A captured body replayed with a fresh timestamp: the signature no longer matches."""
    body = event_body(MENTION)
    old = int(time.time()) - 600
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": sign(body, old),
    }
    reply = await bare.post(body, headers)
    assert reply.status == 401
    no_work_done(bare)


async def test_replayed_request_is_acknowledged_without_being_handled(bare: Harness) -> None:
    """The identical signed request sent twice within the window: the second is a replay (or Slack's
    same-second retry), acknowledged with a 2xx so Slack stops retrying, and not handled again."""
    body = url_verification_body("first")
    headers = signed_headers(body, content_type="application/json")
    first = await bare.post(body, headers)
    assert first.status == 200
    again = await bare.post(body, headers)
    assert again.status == 200
    assert "first" not in again.text


async def test_health_endpoint(bare: Harness) -> None:
    async with bare.http.get(bare.url.replace("/slack/events", "/healthz")) as response:
        assert response.status == 200
