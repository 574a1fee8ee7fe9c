"""A loopback Slack Web API server, plus signed Events API / slash command requests.

The real slack-sdk AsyncWebClient is pointed at it with base_url (SLACK_API_URL, ending in
'/'), so the adapter runs its real client code. The fake keeps messages per channel, records
every call, enforces per-method rate limits (HTTP 429 + Retry-After, as Slack does), and can be
told to fail or rate-limit the next calls of a method. `enforce_limits()` applies Slack's own
limits from bots/slack/limits.py: each method's calls per window per workspace, or per channel for
the methods Slack counts per channel (tests on a sped-up clock leave it off). Response URLs of slash commands point
here too (`fake.response_url()`), so `respond()` lands in `fake.responses`.

Socket Mode too: `apps.connections.open` (with the app-level token) hands out a WebSocket URL on
this server, which greets with `hello`, delivers envelopes (`await fake.deliver(...)`) and
records the client's acknowledgements by envelope id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bots.slack import limits
from tests.fakes.loopback import serve

BOT_TOKEN = "xoxb-fake-token"
CLIENT_ID = "1111.2222"  # the app's OAuth credentials (distribution)
CLIENT_SECRET = "fake-client-secret-0123456789"
APP_TOKEN = "xapp-fake-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
STREAM_TEXT_LIMIT = 12_000  # markdown_text per streaming call


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200  # what the fake answered: 200 or 429/5xx
    error: str = ""  # Slack's `error` when ok is false
    team: str = ""  # the workspace whose token made the call


@dataclass
class Limit:
    """A token bucket for one method: `per_minute` calls, `burst` at once, then 429 + Retry-After."""

    per_minute: float
    burst: float
    tokens: float = 0.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0 if allowed, else the seconds until a call would be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_minute / 60)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * 60 / self.per_minute


@dataclass
class Fault:
    times: int
    status: int = 200  # 200 with ok=false, 429, or a 5xx
    error: str = "internal_error"
    retry_after: float = 1.0


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    edits: int = 0
    streaming: bool = False  # started with chat.startStream and not stopped yet
    files: list[dict[str, Any]] = field(default_factory=list)


class FakeSlack:
    """`async with FakeSlack() as slack:` then `slack.api_url`, `slack.calls`, `slack.messages`."""

    def __init__(self, *, token: str = BOT_TOKEN, team_id: str = TEAM_ID) -> None:
        self.token = token
        self.team_id = team_id
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], FakeMessage] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response URLs
        self.users: dict[str, dict[str, Any]] = {}
        self._any_team: set[str] = set()  # users made up on first sight: members of every workspace
        self.limits: dict[str, Limit] = {}
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        # Every version of every bot message as people would see it: (when, channel, ts, text shown).
        self.versions: list[tuple[float, str, str, str]] = []
        self.windows: dict[str, limits.Method] = {}  # Slack's limits, per window (enforce_limits)
        self._window_hits: dict[str, deque[float]] = defaultdict(deque)
        self.latency_s = 0.0
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections, newest last
        self.socket_connected = asyncio.Event()
        self.acks: dict[str, dict[str, Any]] = {}  # envelope id -> the client's acknowledgement
        self._acked = asyncio.Condition()
        self._envelopes = itertools.count(1)
        self._last_ts = 1_600_000_000.0  # the newest ts seen: new messages are always later
        self.files: dict[str, tuple[str, bytes]] = {}  # file id -> (mimetype, content), served at /files/
        self.downloads: list[tuple[str, str]] = []  # (file id, the Authorization it came with)
        self.replies_page_cap = 1000  # conversations.replies' most per page (15 for unlisted distributed apps)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.add_user(BOT_USER_ID, name="chatbot", is_bot=True)
        # Distribution: the workspaces that can install the app (code -> team) and the bot tokens issued.
        self.tokens: dict[str, str] = {token: team_id}  # bot token -> team id
        self.install_codes: dict[str, str] = {}
        self.installs = itertools.count(1)
        self._caller_team = ""

    # -- setup ---------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """The AsyncWebClient base_url (Slack's ends with /api/)."""
        return f"{self.url}/api/"

    def add_user(
        self,
        user_id: str,
        *,
        name: str = "",
        is_owner: bool = False,
        is_primary_owner: bool = False,
        is_admin: bool = False,
        is_restricted: bool = False,
        is_bot: bool = False,
        team_id: str = "",
    ) -> None:
        self._any_team.discard(user_id)
        self.users[user_id] = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name or user_id.lower(),
            "is_owner": is_owner,
            "is_primary_owner": is_primary_owner,
            "is_admin": is_admin or is_owner or is_primary_owner,
            "is_restricted": is_restricted,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "profile": {"display_name": name or user_id.lower(), "real_name": name or user_id.lower()},
        }

    def rate_limit(self, method: str, *, per_minute: float, burst: float = 1.0) -> None:
        """Enforce a real limit on `method` from now on (429 + Retry-After beyond it)."""
        self.limits[method] = Limit(per_minute, burst, tokens=burst, updated=time.monotonic())

    def enforce_limits(self) -> None:
        """From now on answer 429 beyond Slack's limits (bots/slack/limits.py), counted in sliding
        windows: at most `limit` calls of a method in any `window_s`, per workspace or per channel."""
        self.windows = dict(limits.METHODS)

    def _over_window(self, method: str, args: dict[str, Any], now: float) -> float:
        """0 if the call is within its window (and counts), else the seconds until it would be."""
        spec = self.windows.get(method)
        if spec is None:
            return 0.0
        key = f"{method}:{args.get('channel') or args.get('channel_id') or ''}" if spec.per_channel else method
        hits = self._window_hits[key]
        while hits and now - hits[0] >= spec.budget.window_s:
            hits.popleft()
        if len(hits) >= spec.budget.limit:
            return spec.budget.window_s - (now - hits[0])
        hits.append(now)
        return 0.0

    def fail(self, method: str, *, times: int = 1, status: int = 200, error: str = "internal_error") -> None:
        """The next `times` calls of `method` fail (ok=false with `error`, or HTTP `status`)."""
        self.faults[method].append(Fault(times, status, error))

    def storm(self, method: str, *, times: int, retry_after: float = 1.0) -> None:
        """The next `times` calls of `method` answer 429 with Retry-After: `retry_after`."""
        self.faults[method].append(Fault(times, 429, "ratelimited", retry_after))

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> FakeMessage:
        """A message someone posted (as Slack has it before it delivers the event)."""
        ts = ts or self._next_ts()
        self._last_ts = max(self._last_ts, float(ts))
        message = FakeMessage(channel, ts, text, [], thread_ts, user=user, files=list(files or []))
        self.messages[(channel, ts)] = message
        return message

    def upload(self, name: str, content: bytes, mimetype: str) -> dict[str, Any]:
        """A file someone shared: the `files` entry of its message event (downloadable with the bot token)."""
        file_id = f"F{len(self.files) + 1:06d}"
        self.files[file_id] = (mimetype, content)
        url = f"{self.url}/files/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "size": len(content),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    def record_event(self, event: dict[str, Any]) -> None:
        """Keep an event's message, as Slack keeps every message it delivers."""
        if event.get("type") in {"message", "app_mention"} and event.get("ts") and event.get("channel"):
            key = (str(event["channel"]), str(event["ts"]))
            if key not in self.messages:
                self.add_message(
                    key[0],
                    str(event.get("text") or ""),
                    user=str(event.get("user") or ""),
                    ts=key[1],
                    thread_ts=event.get("thread_ts"),
                    files=event.get("files"),
                )

    def add_workspace(self, team_id: str) -> str:
        """A workspace whose admin will approve an install: returns the one-use code Slack would hand
        to the redirect URL (oauth.v2.access exchanges it for a bot token of that workspace)."""
        code = f"code-{team_id}-{next(self.installs)}"
        self.install_codes[code] = team_id
        return code

    def token_of(self, team_id: str) -> str:
        return next(t for t, team in self.tokens.items() if team == team_id)

    def revoke(self, team_id: str) -> None:
        """The workspace uninstalled the app: its tokens stop working."""
        self.tokens = {t: team for t, team in self.tokens.items() if team != team_id}

    def response_url(self, name: str = "cmd") -> str:
        return f"{self.url}/response/{name}"

    # -- inspection ----------------------------------------------------------------------------
    def calls_to(self, method: str, *, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if c.method == method and (not ok_only or (c.status == 200 and not c.error))]

    def replies_in(self, channel: str, thread_ts: str | None = None) -> list[FakeMessage]:
        """The bot's messages in a channel (optionally one thread), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.channel == channel and m.user == BOT_USER_ID and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def shown_text(self, message: FakeMessage) -> str:
        """What Slack would show: the section blocks' text (the `text` field is only the notification)."""
        shown = [
            b["text"] if b.get("type") == "markdown" else b["text"]["text"]
            for b in message.blocks
            if (b.get("type") == "section" and "text" in b) or b.get("type") == "markdown"
        ]
        return "\n".join(shown) or message.text

    # -- server --------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response_url)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files/{id}/{name}", self._file)
        self._runner, self.url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- Socket Mode -----------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)  # pongs echo the SDK's "sdk-ping-pong:<t>" pings
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json(
            {"type": "hello", "num_connections": len(self.sockets), "connection_info": {"app_id": "AFAKE"}}
        )
        self.socket_connected.set()
        async for frame in ws:
            if frame.type == web.WSMsgType.TEXT:
                ack = json.loads(frame.data)
                async with self._acked:
                    self.acks[str(ack.get("envelope_id"))] = ack
                    self._acked.notify_all()
        return ws

    async def deliver(self, kind: str, payload: dict[str, Any], *, timeout_s: float = 10) -> dict[str, Any]:
        """Send one envelope (`events_api`, `slash_commands`, ...) over the newest socket; returns the ack."""
        await asyncio.wait_for(self.socket_connected.wait(), timeout_s)
        envelope_id = f"env-{next(self._envelopes)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": payload,
        }
        await self.sockets[-1].send_json(envelope)
        async with self._acked:
            await asyncio.wait_for(self._acked.wait_for(lambda: envelope_id in self.acks), timeout_s)
        return self.acks[envelope_id]

    async def _file(self, request: web.Request) -> web.Response:
        """url_private(_download): only with a bot token of a workspace that has the app (Slack answers a
        login page otherwise)."""
        file_id = request.match_info["id"]
        auth = request.headers.get("Authorization", "")
        self.downloads.append((file_id, auth))
        if auth.removeprefix("Bearer ") not in self.tokens or file_id not in self.files:
            return web.Response(status=403, text="<html>sign in</html>", content_type="text/html")
        mimetype, content = self.files[file_id]
        return web.Response(body=content, content_type=mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        now = time.monotonic()
        call = Call(method, args, now)
        self.calls.append(call)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(args.get("token", ""))
        if method == "oauth.v2.access":  # the app's own credentials, not a token
            return self._oauth_v2_access(request, args, call)
        # apps.connections.open takes the app-level token; everything else a bot token.
        if method == "apps.connections.open":
            valid = token == APP_TOKEN
        else:
            valid = token in self.tokens
            call.team = self.tokens.get(token, "")
        if not valid:
            call.error = "invalid_auth"
            return web.json_response({"ok": False, "error": "invalid_auth"})
        faults = self.faults.get(method)
        if faults:
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            call.status, call.error = fault.status, fault.error
            if fault.status == 429:
                return _ratelimited(fault.retry_after)
            return web.json_response({"ok": False, "error": fault.error}, status=fault.status)
        limit = self.limits.get(method)
        wait = limit.take(now) if limit is not None else 0.0
        wait = wait or self._over_window(method, args, now)
        if wait > 0:
            call.status, call.error = 429, "ratelimited"
            return _ratelimited(wait)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            call.error = "unknown_method"
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        self._caller_team = call.team  # handlers are synchronous: nothing else runs before they read it
        body: dict[str, Any] = handler(args)
        if not body.get("ok", True):
            call.error = str(body.get("error"))
        elif method.startswith("chat.") and method != "chat.postEphemeral":
            shown = self.messages.get((str(body.get("channel") or args.get("channel")), str(body.get("ts"))))
            if shown is not None:
                self.versions.append((time.monotonic(), shown.channel, shown.ts, self.shown_text(shown)))
        return web.json_response({"ok": True, **body} if body.get("ok", True) else body)

    # -- methods -------------------------------------------------------------------------------
    def _next_ts(self) -> str:
        self._last_ts += 0.0001
        return f"{self._last_ts:.6f}"

    def _oauth_v2_access(self, request: web.Request, args: dict[str, Any], call: Call) -> web.Response:
        """OAuth v2: client id + secret (HTTP Basic, or in the form) and a one-use code -> a bot token."""
        client_id, client_secret = str(args.get("client_id") or ""), str(args.get("client_secret") or "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        error = ""
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            error = "invalid_client_id" if client_id != CLIENT_ID else "bad_client_secret"
        team = self.install_codes.pop(str(args.get("code") or ""), None)
        if not error and team is None:
            error = "invalid_code"
        if error:
            call.error = error
            return web.json_response({"ok": False, "error": error})
        assert team is not None
        token = f"xoxb-{team}-{secrets.token_hex(8)}"
        self.tokens[token] = team
        call.team = team
        return web.json_response(
            {
                "ok": True,
                "access_token": token,
                "token_type": "bot",
                "scope": "app_mentions:read,chat:write,commands,users:read",
                "bot_user_id": BOT_USER_ID,
                "app_id": "AFAKE",
                "team": {"id": team, "name": f"Team {team}"},
                "enterprise": None,
                "is_enterprise_install": False,
                "authed_user": {"id": "UINSTALLER"},
            }
        )

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "user": "chatbot",
            "team_id": self._caller_team or self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url.replace("http://", "ws://", 1) + "/socket"}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user") or "")
        team = self._caller_team or self.team_id
        if user_id not in self.users and user_id[:1] in {"U", "W"}:
            self.add_user(user_id)  # anyone not set up otherwise is a plain full member
            self._any_team.add(user_id)  # of whichever workspace asks
        user = self.users.get(user_id)
        if user is not None and (user_id in self._any_team or user_id == BOT_USER_ID):
            return {"user": {**user, "team_id": team}}
        # Otherwise a workspace's token sees its own members only.
        return {"user": user} if user and user["team_id"] == team else {"ok": False, "error": "user_not_found"}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        blocks = _json_field(args.get("blocks"))
        text = str(args.get("text") or "")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        error = _check_blocks(blocks)
        if error:
            return {"ok": False, "error": error}
        ts = self._next_ts()
        thread_ts = args.get("thread_ts") or None
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, blocks, thread_ts)
        return {"channel": channel, "ts": ts, "message": {"text": text, "ts": ts, "user": BOT_USER_ID}}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.streaming:
            return {"ok": False, "error": "cant_update_message"}  # a stream is stopped before it is edited
        blocks = _json_field(args.get("blocks"))
        error = _check_blocks(blocks)
        if error:
            return {"ok": False, "error": error}
        message.text = str(args.get("text") or "")
        message.blocks = blocks
        message.edits += 1
        return {"channel": key[0], "ts": key[1], "text": message.text}

    # Native streaming: the message's `text` is the Markdown streamed so far, its `blocks` the blocks
    # chunks streamed (in order) and then stopStream's `blocks`, "rendered at the bottom of the finalized
    # message". Streams live in threads, and outside DMs name their recipient. Text comes either as
    # `markdown_text` or as `chunks` (markdown_text, task_update, plan_update and blocks chunks), not both.
    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = str(args.get("channel") or ""), str(args.get("thread_ts") or "")
        if not channel or not thread_ts:
            return {"ok": False, "error": "invalid_arguments"}
        if not channel.startswith("D") and not (args.get("recipient_team_id") and args.get("recipient_user_id")):
            return {"ok": False, "error": "missing_recipient"}
        streamed = _streamed(args)
        if isinstance(streamed, str):
            return {"ok": False, "error": streamed}
        text, blocks = streamed
        ts = self._next_ts()
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, blocks, thread_ts, streaming=True)
        return {"channel": channel, "ts": ts}

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("markdown_text") and not args.get("chunks"):
            return {"ok": False, "error": "invalid_arguments"}
        return self._stream(args)

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        error = _check_blocks(_json_field(args.get("blocks")))
        if error:
            return {"ok": False, "error": error}
        result = self._stream(args)
        message = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if result.get("ok", True) and message is not None:
            message.blocks = message.blocks + _json_field(args.get("blocks"))
            message.streaming = False
        return result

    def _stream(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        streamed = _streamed(args)
        if isinstance(streamed, str):
            return {"ok": False, "error": streamed}
        message.text += streamed[0]
        message.blocks = message.blocks + streamed[1]
        message.edits += 1
        return {"channel": key[0], "ts": key[1]}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("user") or not args.get("channel"):
            return {"ok": False, "error": "user_not_in_channel"}
        self.ephemerals.append(dict(args))
        return {"message_ts": self._next_ts()}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """Chronological, the parent first; `oldest`/`latest` bound it (exclusive unless `inclusive`),
        pages of at most `replies_page_cap` with a cursor, as Slack pages threads."""
        channel, thread = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not channel or not thread:
            return {"ok": False, "error": "invalid_arguments"}
        parent = self.messages.get((channel, thread))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        try:
            limit = min(int(args.get("limit") or self.replies_page_cap), self.replies_page_cap)
            offset = int(str(args.get("cursor") or "0").removeprefix("off:"))
        except ValueError:
            return {"ok": False, "error": "invalid_cursor"}
        inclusive = str(args.get("inclusive", "")).lower() in {"1", "true"}
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        replies = sorted(
            (m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread and m.ts != thread),
            key=lambda m: float(m.ts),
        )
        within = [
            m
            for m in replies
            if (oldest <= float(m.ts) if inclusive else oldest < float(m.ts))
            and (float(m.ts) <= latest if inclusive else float(m.ts) < latest)
        ]
        page = within[offset : offset + limit]
        more = offset + limit < len(within)
        messages = ([parent] if offset == 0 else []) + page
        body: dict[str, Any] = {"messages": [self._wire(m) for m in messages], "has_more": more}
        if more:
            body["response_metadata"] = {"next_cursor": f"off:{offset + limit}"}
        return body

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages (thread parents included, replies not), newest first."""
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        try:
            limit = min(int(args.get("limit") or 100), 1000)
        except ValueError:
            return {"ok": False, "error": "invalid_limit"}
        top = sorted(
            (m for m in self.messages.values() if m.channel == channel and m.thread_ts in (None, m.ts)),
            key=lambda m: -float(m.ts),
        )
        return {"messages": [self._wire(m) for m in top[:limit]], "has_more": len(top) > limit}

    def _wire(self, m: FakeMessage) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text, "user": m.user}
        if m.thread_ts:
            wire["thread_ts"] = m.thread_ts
        if m.blocks:
            wire["blocks"] = m.blocks
        if m.user == BOT_USER_ID:
            wire["bot_id"] = BOT_ID
        if m.files:
            wire["files"] = m.files
        return wire

    def _m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _m_assistant_threads_setTitle(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}


def _ratelimited(retry_after: float) -> web.Response:
    # Slack sends whole seconds; the fake allows fractions so tests stay fast (the SDK passes them through).
    value = f"{retry_after:.3f}".rstrip("0").rstrip(".") or "0"
    return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": value})


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            args.update(await request.json())
        else:
            args.update(dict(await request.post()))
    return args


def _json_field(value: Any) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value)


CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})


def _streamed(args: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | str:
    """(Markdown, blocks) one streaming call adds, from `markdown_text` or `chunks`; or Slack's error."""
    markdown = str(args.get("markdown_text") or "")
    chunks = _json_field(args.get("chunks"))
    if markdown and chunks:
        return "invalid_arguments"
    blocks: list[dict[str, Any]] = []
    for chunk in chunks:
        if not isinstance(chunk, dict) or chunk.get("type") not in CHUNK_TYPES:
            return "invalid_chunks"
        if chunk["type"] == "markdown_text":
            if not isinstance(chunk.get("text"), str) or not chunk["text"]:
                return "invalid_chunks"
            markdown += chunk["text"]
        elif chunk["type"] == "blocks":
            found = chunk.get("blocks")
            if not isinstance(found, list) or not 1 <= len(found) <= 50 or _check_blocks(found):
                return "invalid_blocks"
            blocks.extend(found)
    if len(markdown) > STREAM_TEXT_LIMIT:
        return "msg_too_long"
    return markdown, blocks


def _check_blocks(blocks: list[dict[str, Any]]) -> str:
    """The limits Slack enforces that matter here: 50 blocks, 3,000 characters of section text, 12,000 of a
    markdown block, 10 context items, 25 elements of an actions block."""
    if len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if block.get("type") == "section" and len(block.get("text", {}).get("text", "")) > 3000:
            return "invalid_blocks"
        if block.get("type") == "markdown" and not 1 <= len(str(block.get("text", ""))) <= 12_000:
            return "invalid_blocks"
        if block.get("type") == "context" and len(block.get("elements", [])) > 10:
            return "invalid_blocks"
        if block.get("type") == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                return "invalid_blocks"
            for button in elements:  # a button's value holds 2,000 characters, its label 75
                if len(str(button.get("value", ""))) > 2000 or len(button.get("text", {}).get("text", "")) > 75:
                    return "invalid_blocks"
    return ""


# -- signed requests, as Slack sends them --------------------------------------------------------


def sign(body: str, timestamp: int | str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature: HMAC-SHA256 over "v0:{timestamp}:{body}" with the signing secret."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: str,
    *,
    content_type: str,
    timestamp: int | None = None,
    secret: str = SIGNING_SECRET,
    retry_num: int | None = None,
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(body, ts, secret),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


_event_ids = itertools.count(1)


def event_body(event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None) -> str:
    """An Events API `event_callback` envelope around `event`, as JSON text."""
    return json.dumps(
        {
            "token": "verification-token-unused",
            "team_id": team_id,
            "api_app_id": "AFAKE",
            "event": {"event_ts": event.get("ts", "0"), **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(_event_ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
        }
    )


def block_actions_body(
    action_id: str,
    value: str,
    *,
    user_id: str,
    message: FakeMessage,
    team_id: str = TEAM_ID,
    action_ts: str = "",
    state: dict[str, Any] | None = None,
) -> str:
    """A button click (`block_actions`) on `message`, form-encoded with its JSON `payload`, as Slack POSTs it."""
    wire: dict[str, Any] = {"type": "message", "ts": message.ts, "user": message.user, "text": message.text}
    if message.thread_ts:
        wire["thread_ts"] = message.thread_ts
    payload = {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "fake"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "api_app_id": "AFAKE",
        "token": "verification-token-unused",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel},
        "trigger_id": f"trigger.{next(_event_ids)}",
        "channel": {"id": message.channel, "name": "general"},
        "message": wire,
        "response_url": "",
        "state": {"values": state or {}},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "chatbot_controls",
                "value": value,
                "action_ts": action_ts or f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def url_verification_body(challenge: str) -> str:
    return json.dumps({"token": "verification-token-unused", "challenge": challenge, "type": "url_verification"})


def command_body(
    text: str, *, user_id: str, response_url: str, team_id: str = TEAM_ID, channel_id: str = "C0GENERAL"
) -> str:
    """A slash command's form-encoded body, as Slack POSTs it."""
    return urlencode(
        {
            "token": "verification-token-unused",
            "team_id": team_id,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/chatbot",
            "text": text,
            "api_app_id": "AFAKE",
            "response_url": response_url,
            "trigger_id": f"trigger.{next(_event_ids)}",
        }
    )
