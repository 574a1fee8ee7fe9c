"""The Slack HTTP edge: what a request must be before Bolt (and the core) ever see it.

In this order, on the raw body: the timestamp is fresh and the signature is Slack's (else 401);
the same signed request seen before is acknowledged without being handled again (a same-second
retry carries the same signature, and Slack must get a 2xx for it, not a 401); then the body is
parsed and checked against the shapes the app handles (else 400, never a 5xx); event types the app
does not handle are acknowledged and dropped; every string is normalized (core.text), and Bolt gets
the normalized body. A request whose handling ended in a 5xx is forgotten, so Slack's retry of it
gets through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog

from core.text import clean_payload

log = structlog.get_logger(__name__)

SIGNATURE_WINDOW_S = 60 * 5  # Slack's documented freshness window for X-Slack-Request-Timestamp

# The events the app listens to, with the fields its listeners need (strings, not empty).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "app_mention": ("channel", "ts"),
    "message": ("channel", "ts"),
    "assistant_thread_started": (),
    "assistant_thread_context_changed": (),
    "app_uninstalled": (),  # distribution: the workspace's token is forgotten (bots/slack/oauth.py)
    "tokens_revoked": (),
}
# Optional fields that, when present, must be strings (a listener reads them as text).
EVENT_TEXT_FIELDS = ("user", "text", "thread_ts", "channel_type", "subtype", "bot_id", "team")
COMMAND_FIELDS = ("command", "team_id", "user_id", "response_url")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Either an answer for Slack now (`status`, `body`), or a normalized `forward` body for Bolt."""

    status: int = 200
    body: str = ""
    forward: str | None = None
    signature: str = ""


def _refuse(status: int, reason: str) -> Verdict:
    return Verdict(status, json.dumps({"error": reason}))


class SlackEdge:
    """Verify, de-duplicate, parse, validate and normalize one Events API / command request."""

    def __init__(
        self,
        signing_secret: str,
        *,
        window_s: float = SIGNATURE_WINDOW_S,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = signing_secret.encode()
        self.window_s = window_s
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> when it may be forgotten

    # -- the steps, in order -----------------------------------------------------------------------
    def admit(self, raw: bytes, headers: Mapping[str, str]) -> Verdict:
        signature = headers.get("X-Slack-Signature", "")
        refusal = self._verify(raw, headers.get("X-Slack-Request-Timestamp", ""), signature)
        if refusal is not None:
            return refusal
        now = self.clock()
        self._expire(now)
        if signature in self._seen:
            # A retry within the same second, or a replay: the first delivery is (being) handled.
            log.info("slack.duplicate_request_acknowledged", retry=headers.get("X-Slack-Retry-Num"))
            return Verdict(200, "")
        verdict = self._parse(raw, headers.get("Content-Type", ""))
        if verdict.status < 500:
            self._seen[signature] = now + self.window_s
        return Verdict(verdict.status, verdict.body, verdict.forward, signature)

    def failed(self, verdict: Verdict) -> None:
        """Handling the admitted request ended in a 5xx: let Slack's retry of it through."""
        self._seen.pop(verdict.signature, None)

    def _verify(self, raw: bytes, timestamp: str, signature: str) -> Verdict | None:
        if not signature or not timestamp:
            return _refuse(401, "unsigned request")
        try:
            sent = int(timestamp)
        except ValueError:
            return _refuse(401, "bad timestamp")
        if abs(self.clock() - sent) > self.window_s:
            return _refuse(401, "stale timestamp")
        # Slack's v0 scheme, computed on the bytes as received (before any decoding or parsing).
        base = b"v0:" + timestamp.encode() + b":" + raw
        expected = "v0=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return _refuse(401, "invalid signature")
        return None

    def _parse(self, raw: bytes, content_type: str) -> Verdict:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(400, "the body is not UTF-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            return self._form(text)
        try:
            payload = json.loads(text)
        except ValueError:
            return _refuse(400, "the body is not JSON")
        return self._envelope(clean_payload(payload))

    def _envelope(self, payload: Any) -> Verdict:
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return _refuse(400, "the body must be an object with a type")
        kind = payload["type"]
        if kind == "url_verification":
            if not isinstance(payload.get("challenge"), str):
                return _refuse(400, "url_verification needs a challenge")
            return Verdict(forward=json.dumps(payload))
        if kind != "event_callback":
            log.info("slack.envelope_ignored", type=kind)  # app_rate_limited and the like
            return Verdict(200, "")
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return _refuse(400, "event_callback needs an event object with a type")
        required = EVENT_FIELDS.get(event["type"])
        if required is None:
            log.info("slack.event_ignored", type=event["type"])
            return Verdict(200, "")
        missing = [name for name in required if not isinstance(event.get(name), str) or not event[name]]
        wrong = [name for name in EVENT_TEXT_FIELDS if event.get(name) is not None and not isinstance(event[name], str)]
        if missing or wrong:
            return _refuse(400, f"the {event['type']} event has missing or malformed fields: {missing + wrong}")
        if not isinstance(payload.get("authorizations", []), list):
            return _refuse(400, "authorizations must be a list")
        return Verdict(forward=json.dumps(payload))

    def _form(self, text: str) -> Verdict:
        try:
            fields = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            return _refuse(400, "the body is not a form")
        fields = clean_payload(fields)
        if "payload" in fields:  # interactivity: one JSON field
            try:
                inner = json.loads(fields["payload"])
            except ValueError:
                return _refuse(400, "the payload field is not JSON")
            if not isinstance(inner, dict) or not isinstance(inner.get("type"), str):
                return _refuse(400, "the payload must be an object with a type")
            return Verdict(forward=urlencode({**fields, "payload": json.dumps(clean_payload(inner))}))
        missing = [name for name in COMMAND_FIELDS if not fields.get(name)]
        if missing:
            return _refuse(400, f"the command is missing {', '.join(missing)}")
        return Verdict(forward=urlencode(fields))

    def _expire(self, now: float) -> None:
        # Entries are kept in arrival order with one window, so the oldest expire first.
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) <= self.max_entries:
                return
            del self._seen[oldest]
