"""A loopback Discord: REST (the routes the bot uses) and the gateway WebSocket, speaking the real wire
format so the real discord.py client runs end to end. The limits of bots/discord/limits.py are
enforced as Discord does: per-channel route buckets (message creates and edits share one) and the
global 50 requests per second over every route, with X-RateLimit-* headers on every answer of a
limited route and 429s carrying retry_after and `global`; the gateway can drop the connection and
replays missed events after RESUME. The gateway serves several shards at once: each connection
identifies as one shard of a count and receives the events of its guilds only (Discord's rule:
shard = (guild_id >> 22) % shard_count; DMs go to shard 0).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bots.discord import limits
from core.pacing import Budget
from tests.fakes.loopback import serve

BOT_ID = "100000000000000001"
APP_ID = "100000000000000002"
GUILD_ID = "200000000000000001"
CHANNEL_ID = "300000000000000001"
OWNER_ID = "400000000000000001"
MOD_ROLE_ID = "500000000000000001"  # Manage Guild
DOCS_ROLE_ID = "500000000000000002"  # no permissions; admins may map it to a bot role
MANAGE_GUILD = 1 << 5
MESSAGE_CONTENT = 1 << 15  # the privileged gateway intent

_ids = itertools.count(600000000000000001)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body only when the content type is exactly application/json (no charset).
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def snowflake() -> str:
    return str(next(_ids))


def user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": user_id, "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


BOT_USER = user(BOT_ID, "chatbot", bot=True)


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    at: float
    status: int


@dataclass
class FakeDiscord:
    """`async with FakeDiscord() as fake:` then point discord.py at fake.api_url and fake.gateway_url."""

    calls: list[Call] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest message payload
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> member payload
    channel_limit: tuple[int, float] = (limits.CHANNEL_MESSAGES.limit, limits.CHANNEL_MESSAGES.window_s)
    global_limit: tuple[int, float] = (limits.GLOBAL.limit, limits.GLOBAL.window_s)
    latency_s: float = 0.0  # added to every REST call, as the network would
    rate_limited: list[Call] = field(default_factory=list)  # every 429 answered (storms included)
    # Every version of every message as users would see it: (when, channel id, message id, content).
    versions: list[tuple[float, str, str, str]] = field(default_factory=list)
    storm: int = 0  # answer this many next message create/edit requests with 429
    storm_retry_after: float = 0.3
    thread_storm: int = 0  # answer this many next thread creations with 429 (storm_retry_after)
    thread_delay_s: float = 0.0  # thread creations answer this late (a slow or hung Discord)
    token: str = "test-token"
    url: str = ""
    identifies: int = 0
    intents: int = 0
    message_content_granted: bool = False
    commands: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    threads: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # attachment id -> (type, content)
    history_refused: bool = False  # history reads answer 403 Missing Access (no Read Message History)
    guilds: dict[str, list[str]] = field(default_factory=lambda: {GUILD_ID: [CHANNEL_ID]})  # guild -> channels
    shards_identified: list[tuple[int, int]] = field(default_factory=list)  # (shard id, count) per IDENTIFY
    _runner: web.AppRunner | None = None
    _sessions: dict[str, _Session] = field(default_factory=dict)  # session id -> one shard's connection
    _thread_guilds: dict[str, str] = field(default_factory=dict)  # thread id -> its guild
    _interaction_channels: dict[str, str] = field(default_factory=dict)  # interaction token -> its channel
    _windows: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.add_member(OWNER_ID, "owner")

    def add_guild(self, guild_id: str, *channel_ids: str) -> None:
        """Another server (with these text channels) the bot is in; its events go to its shard."""
        self.guilds[guild_id] = list(channel_ids)

    def guild_of(self, channel_id: str) -> str | None:
        found = next((g for g, channels in self.guilds.items() if channel_id in channels), None)
        return found or self._thread_guilds.get(channel_id)

    # -- setup -------------------------------------------------------------------------------
    def add_member(self, user_id: str, name: str, roles: tuple[str, ...] = ()) -> dict[str, Any]:
        member = {
            "user": user(user_id, name),
            "roles": list(roles),
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
        self.members[user_id] = member
        return member

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/gateway"

    def guild(self, guild_id: str = GUILD_ID) -> dict[str, Any]:
        role = {
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        return {
            "id": guild_id,
            "name": "Team" if guild_id == GUILD_ID else f"Team {guild_id[-4:]}",
            "owner_id": OWNER_ID,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "unavailable": False,
            "large": False,
            "member_count": len(self.members) + 1,
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "roles": [
                {**role, "id": guild_id, "name": "@everyone", "permissions": str(1 << 11 | 1 << 10), "position": 0},
                {**role, "id": MOD_ROLE_ID, "name": "mods", "permissions": str(MANAGE_GUILD), "position": 1},
                {**role, "id": DOCS_ROLE_ID, "name": "docs", "permissions": "0", "position": 2},
            ],
            "channels": [
                {
                    "id": channel_id,
                    "type": 0,
                    "name": "general" if channel_id == CHANNEL_ID else f"general-{channel_id[-4:]}",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                }
                for channel_id in self.guilds[guild_id]
            ],
            "members": [
                *self.members.values(),
                {
                    "user": BOT_USER,
                    "roles": [],
                    "joined_at": "2026-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                },
            ],
        }

    # -- events the test sends -----------------------------------------------------------------
    def message_payload(
        self,
        author_id: str,
        content: str,
        *,
        channel_id: str = CHANNEL_ID,
        dm: bool = False,
        mention_bot: bool = True,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        author = self.members[author_id]["user"] if author_id in self.members else user(author_id, f"u{author_id[-4:]}")
        payload: dict[str, Any] = {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": author,
            "content": (f"<@{BOT_ID}> " + content) if mention_bot and not dm else content,
            "timestamp": "2026-11-25T10:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [BOT_USER] if mention_bot and not dm else [],
            "mention_roles": [],
            "attachments": list(attachments or []),
            "embeds": [],
            "pinned": False,
            "type": 0 if reply_to is None else 19,
            "flags": 0,
        }
        guild_id = self.guild_of(channel_id) or GUILD_ID
        if not dm:
            payload["guild_id"] = guild_id
            member = dict(self.members.get(author_id) or self.add_member(author_id, author["username"]))
            member.pop("user", None)
            payload["member"] = member
        if reply_to is not None:
            payload["message_reference"] = {"message_id": reply_to, "channel_id": channel_id, "guild_id": guild_id}
            payload["referenced_message"] = self.messages.get(reply_to)
        return payload

    async def send_message(self, author_id: str, content: str, **options: Any) -> dict[str, Any]:
        payload = self.add_message(author_id, content, **options)
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def add_message(self, author_id: str, content: str, **options: Any) -> dict[str, Any]:
        """A message someone posted, kept as Discord keeps it (history reads find it); no event."""
        payload = self.message_payload(author_id, content, **options)
        self.messages[payload["id"]] = payload
        return payload

    def attach(self, name: str, content: bytes, content_type: str) -> dict[str, Any]:
        """An attachment object for `message_payload(attachments=...)`, served on the fake's CDN route."""
        attachment_id = snowflake()
        self.files[attachment_id] = (content_type, content)
        url = f"{self.url}/attachments/{attachment_id}/{name}"
        return {
            "id": attachment_id,
            "filename": name,
            "size": len(content),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    async def _attachment(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[1], content_type=found[0])

    async def submit_modal(self, custom_id: str, values: dict[str, str], user_id: str, channel_id: str) -> None:
        """Submit a modal the bot opened (its custom id is in the type-9 callback), with text input values."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        await self._interaction(5, {"custom_id": custom_id, "components": rows}, user_id, channel_id, None)

    async def click(self, custom_id: str, message_id: str, user_id: str, *, interaction_id: str = "") -> str:
        """Press a button on a message (a component interaction over the gateway); returns the interaction id."""
        message = self.messages[message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interaction(3, data, user_id, message["channel_id"], message, interaction_id)

    async def _interaction(
        self,
        kind: int,
        data: dict[str, Any],
        user_id: str,
        channel_id: str,
        message: dict[str, Any] | None,
        interaction_id: str = "",
    ) -> str:
        member = self.members.get(user_id) or self.add_member(user_id, f"u{user_id[-4:]}")
        interaction_id = interaction_id or snowflake()
        self._interaction_channels[f"tok-{interaction_id}"] = channel_id
        await self.dispatch(
            "INTERACTION_CREATE",
            {
                "id": interaction_id,
                "application_id": APP_ID,
                "type": kind,
                "token": f"tok-{interaction_id}",
                "version": 1,
                "guild_id": GUILD_ID,
                "channel_id": channel_id,
                "channel": {"id": channel_id, "type": 0, "guild_id": GUILD_ID, "name": "general"},
                "locale": "en-US",
                "guild_locale": "en-US",
                "app_permissions": "0",
                "attachment_size_limit": 10485760,
                "entitlements": [],
                "authorizing_integration_owners": {},
                "context": 0,
                "member": {**member, "permissions": "32" if MOD_ROLE_ID in member.get("roles", []) else "0"},
                "data": data,
                **({"message": message} if message is not None else {}),
            },
        )
        return interaction_id

    def buttons(self, message_id: str) -> list[dict[str, Any]]:
        """The buttons on a message, as Discord shows them."""
        rows = self.messages[message_id].get("components") or []
        return [c for row in rows for c in row.get("components", [])]

    async def open_thread(self, owner_id: str, name: str = "discussion") -> str:
        """A public thread someone opened in the channel (THREAD_CREATE); returns its id."""
        thread = self._thread(CHANNEL_ID, name, owner_id)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return str(thread["id"])

    def shard_of(self, guild_id: str | None, shard_count: int) -> int:
        return (int(guild_id) >> 22) % shard_count if guild_id else 0

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to the shard of its guild (every shard count the sessions use)."""
        guild_id = data.get("guild_id") or (data.get("id") if event == "GUILD_CREATE" else None)
        for session in list(self._sessions.values()):
            if self.shard_of(guild_id, session.shard[1]) == session.shard[0]:
                await session.send(event, data)

    async def drop_connection(self) -> None:
        """Close the gateway sockets as Discord does on a server-side failure; the client should RESUME."""
        self._connected.clear()
        for session in self._sessions.values():
            if session.ws is not None:
                await session.ws.close(code=4000, message=b"unknown error")

    async def connected(self, limit_s: float = 10) -> None:
        await asyncio.wait_for(self._connected.wait(), limit_s)

    # -- what the test reads -------------------------------------------------------------------
    def bot_messages(self, channel_id: str = CHANNEL_ID) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["channel_id"] == channel_id and m["author"]["id"] == BOT_ID]

    def calls_to(self, method: str, fragment: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and fragment in c.path and c.status < 400]

    # -- server --------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner, self.url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self._sessions.values():
            if session.ws is not None:
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session: _Session | None = None
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            op = frame.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                if frame["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                if frame["d"].get("intents", 0) & MESSAGE_CONTENT and not self.message_content_granted:
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                shard_id, shard_count = frame["d"].get("shard") or (0, 1)
                if not 0 <= shard_id < shard_count:
                    await ws.close(code=4010, message=b"Invalid shard.")
                    break
                self.intents = frame["d"].get("intents", 0)
                self.identifies += 1
                self.shards_identified.append((shard_id, shard_count))
                session = _Session(f"session-{len(self._sessions) + 1}", (shard_id, shard_count), ws)
                self._sessions[session.id] = session
                mine = [g for g in self.guilds if self.shard_of(g, shard_count) == shard_id]
                await session.send(
                    "READY",
                    {
                        "v": 10,
                        "user": BOT_USER,
                        "guilds": [{"id": g, "unavailable": True} for g in mine],
                        "session_id": session.id,
                        "resume_gateway_url": self.gateway_url,
                        "application": {"id": APP_ID, "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                        "shard": [shard_id, shard_count],
                    },
                )
                for guild_id in mine:
                    await session.send("GUILD_CREATE", self.guild(guild_id))
                self._connected.set()
            elif op == 6:
                self.resumes += 1
                session = self._sessions.get(frame["d"].get("session_id", ""))
                if session is None:
                    await ws.send_str(json.dumps({"op": 9, "d": False}))  # invalid session: identify again
                    continue
                session.ws = ws
                for past in [f for f in session.history if f["s"] > (frame["d"].get("seq") or 0)]:
                    await ws.send_str(json.dumps(past))
                session.seq += 1
                await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}))
                self._connected.set()
        return ws

    def _limited(self, key: str, limit: int, window: float) -> float | None:
        """Seconds until the bucket frees up, or None when this request is within its limit (and counted)."""
        now = time.monotonic()
        hits = self._windows[key]
        while hits and now - hits[0] >= window:
            hits.popleft()
        if len(hits) >= limit:
            return window - (now - hits[0])
        hits.append(now)
        return None

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: dict[str, Any] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            elif request.content_type.startswith("multipart/"):
                form = await request.post()
                body = json.loads(str(form.get("payload_json") or "{}"))
        # Interaction callbacks and webhooks authenticate by their token in the path, not the bot token.
        arrived = time.monotonic()
        if self.latency_s:
            await asyncio.sleep(self.latency_s / 2)  # half on the way in, half on the way out
        needs_auth = not path.startswith(("/interactions/", "/webhooks/"))
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            response = _json({"message": "401: Unauthorized", "code": 0}, status=401)
        else:
            # Interaction responses are not bound by the global limit (Discord's docs).
            response = (self._global_limit() if needs_auth else None) or await self._route(
                request.method, path, body, dict(request.query)
            )
        call = Call(request.method, path, body, arrived, response.status)
        self.calls.append(call)
        if response.status == 429:
            self.rate_limited.append(call)
        if self.latency_s:
            await asyncio.sleep(self.latency_s / 2)
        return response

    def _global_limit(self) -> web.Response | None:
        limit, window = self.global_limit
        retry_after = self._limited("global", limit, window)
        if retry_after is None:
            return None
        headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global", "Via": "1.1 google"}
        headers["Retry-After"] = str(max(1, round(retry_after)))
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": True}
        return _json(body, status=429, headers=headers)

    async def _route(self, method: str, path: str, body: dict[str, Any], query: dict[str, str]) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return _json(BOT_USER)
        # The guild and its members, as Convex asks them when it verifies a user's facts (convex/functions/facts.ts).
        if method == "GET" and parts == ["guilds", GUILD_ID]:
            return _json(self.guild())
        if method == "GET" and len(parts) == 4 and parts[:3] == ["guilds", GUILD_ID, "members"]:
            member = self.members.get(parts[3])
            return _json(member) if member else _json({"message": "Unknown Member", "code": 10007}, 404)
        if path in ("/applications/@me", "/oauth2/applications/@me"):
            return _json(
                {
                    "id": APP_ID,
                    "name": "chatbot",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "k",
                    "owner": user(OWNER_ID, "owner"),
                    "flags": 0,
                    "team": None,
                }
            )
        if parts[0] == "applications" and "commands" in parts:
            commands = body if isinstance(body, list) else []
            self.commands = [
                {
                    "id": snowflake(),
                    "application_id": APP_ID,
                    "version": "1",
                    "default_member_permissions": None,
                    "dm_permission": True,
                    "nsfw": False,
                    "type": 1,
                    "description": "",
                    "options": [],
                    **command,
                }
                for command in commands
            ]
            return _json(self.commands)
        if path == "/users/@me/channels":
            recipient = body["recipient_id"]
            return _json(
                {"id": f"9{recipient[1:]}", "type": 1, "recipients": [user(recipient, "dm")], "last_message_id": None}
            )
        if parts[0] == "channels" and parts[-1] == "typing":
            limited, headers = self._route_limit(f"typing:{parts[1]}", limits.TYPING)
            return limited or web.Response(status=204, headers=headers)
        if parts[0] == "channels" and len(parts) == 5 and parts[2] == "messages" and parts[4] == "threads":
            if self.thread_delay_s:
                await asyncio.sleep(self.thread_delay_s)
            if self.thread_storm > 0:
                self.thread_storm -= 1
                return self._too_many(f"threads:{parts[1]}", limits.THREADS.limit, self.storm_retry_after)
            limited, headers = self._route_limit(f"threads:{parts[1]}", limits.THREADS)
            if limited is not None:
                return limited
            if any(t["id"] == parts[3] for t in self.threads):  # Discord: one thread per message
                return _json({"message": "A thread has already been created for this message", "code": 160004}, 400)
            # A thread started from a message has that message's id (its starter message).
            thread = self._thread(parts[1], body["name"], BOT_ID, body.get("auto_archive_duration", 1440), parts[3])
            await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
            return _json(thread, status=201, headers=headers)
        if parts[0] == "channels" and len(parts) in (3, 4) and parts[2] == "messages" and method == "GET":
            return await self._read_messages(parts[1], parts[3] if len(parts) == 4 else None, query)
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "messages":
            channel_id = parts[1]
            retry, headers = self._message_limit(channel_id)
            if retry is not None:
                return retry
            if method == "POST" and len(parts) == 3:
                return _json(self._store(channel_id, snowflake(), body, created=True), headers=headers)
            if method == "PATCH" and len(parts) == 4:
                if parts[3] not in self.messages:
                    return _json({"message": "Unknown Message", "code": 10008}, status=404, headers=headers)
                return _json(self._store(channel_id, parts[3], body, created=False), headers=headers)
        if parts[0] == "interactions" and parts[-1] == "callback":
            self.callbacks.append(body)
            flags = (body.get("data") or {}).get("flags", 0) or 0
            return _json(
                {
                    "interaction": {
                        "id": parts[1],
                        "type": 2,
                        "response_message_loading": body.get("type") == 5,
                        "response_message_ephemeral": bool(flags & 64),
                    },
                    "resource": {"type": body.get("type", 4)},
                }
            )
        if parts[0] == "webhooks":
            message_id = parts[-1] if "messages" in parts else snowflake()
            stored = self._store(f"webhook:{parts[2]}", message_id, body, created=True)
            # Kept apart from the channels' messages; answered, like Discord, with the interaction's channel.
            channel = self._interaction_channels.get(parts[2], CHANNEL_ID)
            return _json({**stored, "channel_id": channel})
        return _json({"message": f"404: no fake route {method} {path}", "code": 0}, status=404)

    def _thread(
        self, parent_id: str, name: str, owner_id: str, archive: int = 1440, thread_id: str | None = None
    ) -> dict[str, Any]:
        guild_id = self.guild_of(parent_id) or GUILD_ID
        thread = {
            "id": thread_id or snowflake(),
            "type": 11,
            "guild_id": guild_id,
            "parent_id": parent_id,
            "name": name,
            "owner_id": owner_id,
            "member_count": 1,
            "message_count": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": archive,
                "archive_timestamp": "2026-11-25T10:00:00+00:00",
                "locked": False,
            },
        }
        self.threads.append(thread)
        self._thread_guilds[thread["id"]] = guild_id
        return thread

    async def _read_messages(self, channel_id: str, message_id: str | None, query: dict[str, str]) -> web.Response:
        """GET one message, or a page of the channel's messages newest first (`before`/`after`, at most 100)."""
        retry, _ = self._route_limit(f"history:{channel_id}", limits.HISTORY)
        if retry is not None:
            return retry
        if self.history_refused:
            return _json({"message": "Missing Access", "code": 50001}, status=403)
        if message_id is not None:
            found = self.messages.get(message_id)
            if found is None or found["channel_id"] != channel_id:
                return _json({"message": "Unknown Message", "code": 10008}, status=404)
            return _json(self._as_read(found))
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
        before, after = int(query.get("before") or 1 << 63), int(query.get("after") or 0)
        found = sorted(
            (m for m in self.messages.values() if m["channel_id"] == channel_id and after < int(m["id"]) < before),
            key=lambda m: int(m["id"]),
            reverse=True,
        )
        return _json([self._as_read(m) for m in found[:limit]])

    def _as_read(self, message: dict[str, Any]) -> dict[str, Any]:
        """Without the Message Content intent, Discord sends other people's messages without their content
        unless they mention the bot (or are DMs)."""
        if self.intents & MESSAGE_CONTENT or message["author"]["id"] == BOT_ID:
            return message
        if any(u["id"] == BOT_ID for u in message.get("mentions", [])) or "guild_id" not in message:
            return message
        return {**message, "content": "", "attachments": [], "embeds": []}

    def _message_limit(self, channel_id: str) -> tuple[web.Response | None, dict[str, str]]:
        """The per-channel bucket shared by message creates and edits (and `storm`'s injected 429s)."""
        limit, window = self.channel_limit
        if self.storm > 0:
            self.storm -= 1
            return self._too_many(f"messages:{channel_id}", limit, self.storm_retry_after), {}
        return self._route_limit(f"messages:{channel_id}", Budget(limit, window, 0.0, 0.0))

    def _route_limit(self, key: str, budget: Budget) -> tuple[web.Response | None, dict[str, str]]:
        """(a 429 when over the route's limit, else None; the X-RateLimit-* headers of the answer)."""
        retry_after = self._limited(key, budget.limit, budget.window_s)
        if retry_after is not None:
            return self._too_many(key, budget.limit, retry_after), {}
        hits = self._windows[key]
        reset_after = budget.window_s - (time.monotonic() - hits[0]) if hits else budget.window_s
        return None, {
            "X-RateLimit-Limit": str(budget.limit),
            "X-RateLimit-Remaining": str(max(0, budget.limit - len(hits))),
            "X-RateLimit-Reset-After": f"{max(0.0, reset_after):.3f}",
            "X-RateLimit-Reset": f"{time.time() + max(0.0, reset_after):.3f}",
            "X-RateLimit-Bucket": key.split(":")[0],
        }

    def _too_many(self, key: str, limit: int, retry_after: float) -> web.Response:
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": key.split(":")[0],
            "X-RateLimit-Scope": "user",
            "Retry-After": str(max(1, round(retry_after))),
            "Via": "1.1 google",  # discord.py takes a 429 without it for a Cloudflare ban
        }
        return _json(
            {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": False},
            status=429,
            headers=headers,
        )

    def _store(self, channel_id: str, message_id: str, body: dict[str, Any], *, created: bool) -> dict[str, Any]:
        previous = self.messages.get(message_id, {})
        message = {
            "id": message_id,
            "channel_id": channel_id,
            "author": BOT_USER,
            "type": 0,
            "tts": False,
            "content": body.get("content", previous.get("content", "")) or "",
            "embeds": body.get("embeds", previous.get("embeds", [])) or [],
            "components": body.get("components", previous.get("components", [])) or [],
            "timestamp": previous.get("timestamp", "2026-11-25T10:00:01+00:00"),
            "edited_timestamp": None if created else "2026-11-25T10:00:02+00:00",
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "pinned": False,
            "flags": body.get("flags", 0) or 0,
        }
        reference = previous.get("message_reference") or body.get("message_reference")
        if reference:  # Discord omits the key when there is none; discord.py relies on that
            message["message_reference"] = {k: str(v) for k, v in reference.items() if v is not None}
        guild_id = self.guild_of(channel_id)
        if guild_id is not None:
            message["guild_id"] = guild_id
        self.messages[message_id] = message
        self.versions.append((time.monotonic(), channel_id, message_id, message["content"]))
        return message


@dataclass
class _Session:
    """One shard's gateway session: its sequence numbers and the frames it was sent (for RESUME)."""

    id: str
    shard: tuple[int, int]
    ws: web.WebSocketResponse | None
    seq: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        frame = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.history.append(frame)
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_str(json.dumps(frame))
