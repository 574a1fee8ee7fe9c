"""The embedded default store: one SQLite file in WAL mode, used from one worker thread.

Every call runs on a single dedicated thread (sqlite3 connections are not shareable), so the event
loop never blocks on disk. Checks that guard a write run inside the same `BEGIN IMMEDIATE`
transaction as the write, exactly as the Convex mutations do.

Open it with `store = await SqliteStore.open(path)`: that creates the folder, the file and the schema
(idempotent) on the worker thread. `close()` must be awaited once at the end.

A role change judges its target by its effective rank (explicit role, the platform facts the caller
looked up for it, role mappings, default), exactly like the actor. The rules and every bound come from
the rule book (core/policy/rules.json) that the Convex functions are built from; inputs outside them are
rejected with `StoreError("invalid", ...)`, never truncated. A refused change is audited in the same
transaction that refuses it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

from core.messages import Actor, MessageRole, PlatformFacts, ReplyStatus, Source, StoredMessage, Usage, WorkspaceRef
from core.policy import (
    COUNTS,
    REFUSED,
    SETTING_CHOICES,
    SETTING_TEXT,
    TEXT,
    choice_error,
    count_error,
    number_error,
    text_error,
    whole_error,
)
from core.roles import (
    INITIAL_DEFAULT_ROLE,
    Membership,
    Permission,
    Role,
    RoleChangeDenied,
    Target,
    allows,
    check_block,
    check_default_change,
    check_mapping_change,
    check_role_change,
    effective_role,
)
from core.sqlite_worker import SqliteUnavailable, SqliteWorker
from core.stores import sqlite_ledger as ledger
from core.stores.base import (
    SETTING_FIELDS,
    AuditEntry,
    ChannelMode,
    ChannelRule,
    Delta,
    DocumentRecord,
    Page,
    PermissionDenied,
    StaleReply,
    StoreError,
    StoreUnavailable,
    WorkspaceSettings,
)
from core.stores.usage import BudgetState, Charge

T = TypeVar("T")


SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (key TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    ws TEXT NOT NULL, user_id TEXT NOT NULL, role INTEGER, blocked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ws, user_id));
CREATE TABLE IF NOT EXISTS role_mappings (
    ws TEXT NOT NULL, platform_role TEXT NOT NULL, role INTEGER NOT NULL, PRIMARY KEY (ws, platform_role));
CREATE TABLE IF NOT EXISTS channel_rules (
    ws TEXT NOT NULL, channel_id TEXT NOT NULL, mode TEXT NOT NULL, without_mention INTEGER NOT NULL,
    PRIMARY KEY (ws, channel_id));
CREATE TABLE IF NOT EXISTS usage (
    ws TEXT NOT NULL, user_id TEXT NOT NULL, window TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (ws, user_id, window));
CREATE TABLE IF NOT EXISTS event_claims (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS threads (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ws TEXT NOT NULL, channel_id TEXT NOT NULL,
    external TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (ws, channel_id, external));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, thread_id INTEGER NOT NULL REFERENCES threads(id),
    role TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, author_id TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, sources TEXT NOT NULL DEFAULT '[]',
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    platform_message_id TEXT NOT NULL DEFAULT '', idempotency_key TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (thread_id, id);
CREATE INDEX IF NOT EXISTS messages_by_status ON messages (status, updated_at);
CREATE TABLE IF NOT EXISTS deltas (
    message_id INTEGER NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (message_id, seq));
CREATE TABLE IF NOT EXISTS documents (
    ws TEXT NOT NULL, source_uri TEXT NOT NULL, title TEXT NOT NULL, content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL, status TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (ws, source_uri));
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ws TEXT NOT NULL, at REAL NOT NULL, actor_id TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_ws ON audit (ws, id);
"""
SCHEMA += ledger.SCHEMA


def _check(value: object, name: str, kind: str = "id", *, allow_empty: bool = False) -> str:
    """One validator for every identifier and text, with the rule book's bound for its kind."""
    error = text_error(kind, value, name, allow_empty=allow_empty)
    if error:
        raise StoreError("invalid", error)
    assert isinstance(value, str)
    return value


def _ws(ws: WorkspaceRef) -> str:
    _check(ws.external_id, "workspace id", "workspace")
    return _check(ws.key, "workspace", "workspace")


def _whole(value: object, name: str, kind: str) -> int:
    error = whole_error(kind, value, name)
    if error:
        raise StoreError("invalid", error)
    assert isinstance(value, int)
    return value


def _number(value: object, name: str, kind: str) -> float:
    error = number_error(kind, value, name)
    if error:
        raise StoreError("invalid", error)
    assert isinstance(value, (int, float))
    return float(value)


def _count(items: Sequence[object], name: str, kind: str) -> None:
    error = count_error(kind, len(items), name)
    if error:
        raise StoreError("invalid", error)


def _source_uris(uris: Sequence[str]) -> None:
    """The sources a kept answer cites, by their URIs: bounded in number and each in length."""
    _count(uris, "sources", "sources")
    for uri in uris:
        _check(uri, "source uri", "uri")


def _role(value: object) -> Role | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value not in {int(r) for r in Role}:
        raise StoreError("invalid", f"{value!r} is not a role")
    return Role(value)


def _settings_from_json(raw: str | None) -> WorkspaceSettings:
    if not raw:
        return WorkspaceSettings()
    data = json.loads(raw)
    data["default_role"] = Role(data.get("default_role", INITIAL_DEFAULT_ROLE))
    return WorkspaceSettings(**{k: v for k, v in data.items() if k in SETTING_FIELDS})


def _settings_to_json(settings: WorkspaceSettings) -> str:
    data = asdict(settings)
    data["default_role"] = int(settings.default_role)
    return json.dumps(data)


def _validate_changes(changes: dict[str, object], current: WorkspaceSettings) -> WorkspaceSettings:
    unknown = set(changes) - SETTING_FIELDS
    if unknown:
        raise StoreError("invalid", f"unknown settings: {', '.join(sorted(unknown))}")
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        expected = type(getattr(current, key))
        if key == "default_role":
            if not isinstance(value, int) or isinstance(value, bool) or value not in {int(r) for r in Role}:
                raise StoreError("invalid", "default_role must be a role")
            value = Role(value)
        elif key == "quotas":
            if not isinstance(value, dict) or not set(value) <= {r.label for r in Role}:
                raise StoreError("invalid", "quotas map role names to whole numbers")
            for role, limit in value.items():
                _whole(limit, f"quota for {role}", "quota")
        elif not isinstance(value, expected):
            raise StoreError("invalid", f"{key} must be {expected.__name__}")
        if key in SETTING_TEXT:
            _check(value, key, SETTING_TEXT[key], allow_empty=True)
        if key in SETTING_CHOICES and (error := choice_error(key, value)):
            raise StoreError("invalid", error)
        checked[key] = value
    return replace(current, **checked)


class SqliteStore:
    """The whole `Store` port on one SQLite file; create it with `await SqliteStore.open(path)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, SCHEMA, name="sqlite-store")

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._worker.transaction(fn)
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._worker.read(fn)
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        store = cls(path)
        await store._worker.open()
        await store._tx(ledger.migrate)
        return store

    async def close(self) -> None:
        await self._worker.close()

    # -- shared checks (called inside transactions) ---------------------------------------------
    @staticmethod
    def _settings(db: sqlite3.Connection, ws: str) -> WorkspaceSettings:
        row = db.execute("SELECT settings FROM workspaces WHERE key = ?", (ws,)).fetchone()
        return _settings_from_json(row[0] if row else None)

    @staticmethod
    def _membership(db: sqlite3.Connection, ws: str, user_id: str) -> Membership | None:
        row = db.execute("SELECT role, blocked FROM members WHERE ws = ? AND user_id = ?", (ws, user_id)).fetchone()
        if row is None:
            return None
        return Membership(user_id, Role(row[0]) if row[0] is not None else None, bool(row[1]))

    @staticmethod
    def _mappings(db: sqlite3.Connection, ws: str) -> dict[str, Role]:
        rows = db.execute("SELECT platform_role, role FROM role_mappings WHERE ws = ?", (ws,)).fetchall()
        return {r[0]: Role(r[1]) for r in rows}

    def _actor_role(self, db: sqlite3.Connection, ws: str, actor: Actor) -> Role | None:
        _check(actor.user_id, "actor id")
        _count(actor.facts.role_ids, "role ids", "role_ids")
        return effective_role(
            self._membership(db, ws, actor.user_id),
            actor.facts,
            self._mappings(db, ws),
            self._settings(db, ws).default_role,
        )

    def _require(self, db: sqlite3.Connection, ws: str, actor: Actor, permission: Permission) -> Role:
        role = self._actor_role(db, ws, actor)
        if role is None:
            raise RoleChangeDenied("blocked", "you are blocked in this workspace")
        if not allows(role, permission):
            raise RoleChangeDenied("forbidden", f"{permission.value} needs a higher role than {role.label}")
        return role

    async def _act(self, ws: str, actor: Actor, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run an acting write; a refusal is audited in the same transaction (committed) and then raised."""

        def run(db: sqlite3.Connection) -> tuple[T | None, RoleChangeDenied | None]:
            try:
                return fn(db), None
            except RoleChangeDenied as exc:
                if exc.code == "invalid":
                    raise StoreError("invalid", str(exc)) from None
                self._audit(db, ws, actor.user_id, REFUSED, f"{exc.code}: {what}")
                return None, exc

        result, refusal = await self._tx(run)
        if refusal is not None:
            raise PermissionDenied(refusal.code, str(refusal))
        return result  # type: ignore[return-value]

    @staticmethod
    def _audit(db: sqlite3.Connection, ws: str, actor_id: str, action: str, detail: str) -> None:
        db.execute(
            "INSERT INTO audit (ws, at, actor_id, action, detail) VALUES (?, ?, ?, ?, ?)",
            (ws, time.time(), actor_id, action, detail[: TEXT["detail"]]),
        )

    def _target(self, db: sqlite3.Connection, ws: str, user_id: str, facts: PlatformFacts) -> Target:
        _count(facts.role_ids, "role ids", "role_ids")
        settings = self._settings(db, ws)
        return Target(user_id, self._membership(db, ws, user_id), facts, self._mappings(db, ws), settings.default_role)

    @staticmethod
    def _owner_rows(db: sqlite3.Connection, ws: str) -> int:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM members WHERE ws = ? AND role = ? AND blocked = 0", (ws, int(Role.OWNER))
            ).fetchone()[0]
        )

    # -- EventClaims ----------------------------------------------------------------------------
    async def claim_event(self, key: str) -> bool:
        _check(key, "event key", "key")

        def claim(db: sqlite3.Connection) -> bool:
            cur = db.execute("INSERT OR IGNORE INTO event_claims (key, at) VALUES (?, ?)", (key, time.time()))
            return cur.rowcount == 1

        return await self._tx(claim)

    # -- RoleStore ------------------------------------------------------------------------------
    async def settings(self, ws: WorkspaceRef) -> WorkspaceSettings:
        _ws(ws)
        return await self._read(lambda db: self._settings(db, ws.key))

    async def update_settings(self, ws: WorkspaceRef, actor: Actor, changes: dict[str, object]) -> WorkspaceSettings:
        _ws(ws)
        if not isinstance(changes, dict) or not changes:
            raise StoreError("invalid", "settings changes must be a non-empty mapping")

        def update(db: sqlite3.Connection) -> WorkspaceSettings:
            actor_role = self._require(db, ws.key, actor, Permission.MANAGE_SETTINGS)
            current = self._settings(db, ws.key)
            new = _validate_changes(changes, current)
            if "default_role" in changes:
                check_default_change(actor_role=actor_role, old=current.default_role, new=new.default_role)
            db.execute(
                "INSERT INTO workspaces (key, settings) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET settings = excluded.settings",
                (ws.key, _settings_to_json(new)),
            )
            self._audit(db, ws.key, actor.user_id, "settings.update", ", ".join(sorted(changes)))
            return new

        return await self._act(ws.key, actor, f"settings {', '.join(sorted(changes))}", update)

    async def membership(self, ws: WorkspaceRef, user_id: str) -> Membership | None:
        _ws(ws)
        _check(user_id, "user id")
        return await self._read(lambda db: self._membership(db, ws.key, user_id))

    async def members(self, ws: WorkspaceRef) -> Sequence[Membership]:
        _ws(ws)

        def read(db: sqlite3.Connection) -> list[Membership]:
            rows = db.execute("SELECT user_id, role, blocked FROM members WHERE ws = ? ORDER BY user_id", (ws.key,))
            return [Membership(r[0], Role(r[1]) if r[1] is not None else None, bool(r[2])) for r in rows]

        return await self._read(read)

    async def role_mappings(self, ws: WorkspaceRef) -> dict[str, Role]:
        _ws(ws)
        return await self._read(lambda db: self._mappings(db, ws.key))

    async def set_role(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        role: Role | None,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None:
        _ws(ws)
        _check(user_id, "user id")
        role = _role(role)

        def change(db: sqlite3.Connection) -> None:
            check_role_change(
                actor_id=actor.user_id,
                actor_role=self._actor_role(db, ws.key, actor),
                target=self._target(db, ws.key, user_id, target_facts or PlatformFacts()),
                new_role=role,
                owner_rows=self._owner_rows(db, ws.key),
            )
            db.execute(
                "INSERT INTO members (ws, user_id, role, blocked) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (ws, user_id) DO UPDATE SET role = excluded.role",
                (ws.key, user_id, int(role) if role is not None else None),
            )
            self._audit(db, ws.key, actor.user_id, "role.set", f"{user_id}: {role.label if role else 'default'}")

        await self._act(ws.key, actor, f"role set {user_id} {role.label if role else 'default'}", change)

    async def set_blocked(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        user_id: str,
        blocked: bool,
        *,
        target_facts: PlatformFacts | None = None,
    ) -> None:
        _ws(ws)
        _check(user_id, "user id")
        if not isinstance(blocked, bool):
            raise StoreError("invalid", "blocked must be true or false")

        def change(db: sqlite3.Connection) -> None:
            check_block(
                actor_id=actor.user_id,
                actor_role=self._actor_role(db, ws.key, actor),
                target=self._target(db, ws.key, user_id, target_facts or PlatformFacts()),
                blocked=blocked,
                owner_rows=self._owner_rows(db, ws.key),
            )
            db.execute(
                "INSERT INTO members (ws, user_id, role, blocked) VALUES (?, ?, NULL, ?) "
                "ON CONFLICT (ws, user_id) DO UPDATE SET blocked = excluded.blocked",
                (ws.key, user_id, int(blocked)),
            )
            self._audit(db, ws.key, actor.user_id, "role.block" if blocked else "role.unblock", user_id)

        await self._act(ws.key, actor, f"role {'block' if blocked else 'unblock'} {user_id}", change)

    async def set_role_mapping(self, ws: WorkspaceRef, actor: Actor, platform_role: str, role: Role | None) -> None:
        _ws(ws)
        _check(platform_role, "platform role")
        role = _role(role)

        def change(db: sqlite3.Connection) -> None:
            check_mapping_change(
                actor_role=self._actor_role(db, ws.key, actor),
                existing=self._mappings(db, ws.key).get(platform_role),
                new=role,
            )
            if role is None:
                db.execute("DELETE FROM role_mappings WHERE ws = ? AND platform_role = ?", (ws.key, platform_role))
            else:
                db.execute(
                    "INSERT INTO role_mappings (ws, platform_role, role) VALUES (?, ?, ?) "
                    "ON CONFLICT (ws, platform_role) DO UPDATE SET role = excluded.role",
                    (ws.key, platform_role, int(role)),
                )
            self._audit(db, ws.key, actor.user_id, "rolemap.set", f"{platform_role}: {role.label if role else 'none'}")

        await self._act(ws.key, actor, f"rolemap {platform_role} {role.label if role else 'none'}", change)

    async def channel_rule(self, ws: WorkspaceRef, channel_id: str) -> ChannelRule | None:
        _ws(ws)
        _check(channel_id, "channel id")

        def read(db: sqlite3.Connection) -> ChannelRule | None:
            row = db.execute(
                "SELECT mode, without_mention FROM channel_rules WHERE ws = ? AND channel_id = ?", (ws.key, channel_id)
            ).fetchone()
            return ChannelRule(channel_id, ChannelMode(row[0]), bool(row[1])) if row else None

        return await self._read(read)

    async def channel_rules(self, ws: WorkspaceRef) -> Sequence[ChannelRule]:
        _ws(ws)

        def read(db: sqlite3.Connection) -> list[ChannelRule]:
            rows = db.execute(
                "SELECT channel_id, mode, without_mention FROM channel_rules WHERE ws = ? ORDER BY channel_id",
                (ws.key,),
            )
            return [ChannelRule(r[0], ChannelMode(r[1]), bool(r[2])) for r in rows]

        return await self._read(read)

    async def set_channel_rule(self, ws: WorkspaceRef, actor: Actor, rule: ChannelRule) -> None:
        _ws(ws)
        _check(rule.channel_id, "channel id")
        mode = ChannelMode(rule.mode)

        def change(db: sqlite3.Connection) -> None:
            self._require(db, ws.key, actor, Permission.MANAGE_SETTINGS)
            if mode is ChannelMode.DEFAULT and not rule.answer_without_mention:
                db.execute("DELETE FROM channel_rules WHERE ws = ? AND channel_id = ?", (ws.key, rule.channel_id))
            else:
                db.execute(
                    "INSERT INTO channel_rules (ws, channel_id, mode, without_mention) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (ws, channel_id) DO UPDATE SET mode = excluded.mode, "
                    "without_mention = excluded.without_mention",
                    (ws.key, rule.channel_id, mode.value, int(rule.answer_without_mention)),
                )
            self._audit(db, ws.key, actor.user_id, "channel.set", f"{rule.channel_id}: {mode.value}")

        await self._act(ws.key, actor, f"channel {mode.value} {rule.channel_id}", change)

    async def consume_quota(self, ws: WorkspaceRef, user_id: str, window: str, limit: int) -> bool:
        _ws(ws)
        _check(user_id, "user id")
        _check(window, "window", "window")
        _whole(limit, "limit", "quota")

        def consume(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT count FROM usage WHERE ws = ? AND user_id = ? AND window = ?", (ws.key, user_id, window)
            ).fetchone()
            used = row[0] if row else 0
            if used >= limit:
                return False
            db.execute(
                "INSERT INTO usage (ws, user_id, window, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (ws, user_id, window) DO UPDATE SET count = count + 1",
                (ws.key, user_id, window),
            )
            return True

        return await self._tx(consume)

    # -- ThreadStore ----------------------------------------------------------------------------
    async def find_thread(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str | None:
        _ws(ws)
        _check(channel_id, "channel id")
        _check(external_thread, "thread id")

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT id FROM threads WHERE ws = ? AND channel_id = ? AND external = ?",
                (ws.key, channel_id, external_thread),
            ).fetchone()
            return str(row[0]) if row else None

        return await self._read(read)

    async def thread_for(self, ws: WorkspaceRef, channel_id: str, external_thread: str) -> str:
        _ws(ws)
        _check(channel_id, "channel id")
        _check(external_thread, "thread id")

        def upsert(db: sqlite3.Connection) -> str:
            db.execute(
                "INSERT OR IGNORE INTO threads (ws, channel_id, external, created_at) VALUES (?, ?, ?, ?)",
                (ws.key, channel_id, external_thread, time.time()),
            )
            row = db.execute(
                "SELECT id FROM threads WHERE ws = ? AND channel_id = ? AND external = ?",
                (ws.key, channel_id, external_thread),
            ).fetchone()
            return str(row[0])

        return await self._tx(upsert)

    async def add_message(
        self,
        ws: WorkspaceRef,
        thread_id: str,
        role: MessageRole,
        text: str,
        *,
        author_id: str = "",
        status: ReplyStatus = ReplyStatus.COMPLETE,
        idempotency_key: str = "",
    ) -> str:
        _ws(ws)
        _check(text, "message text", "text", allow_empty=True)
        _check(author_id, "author id", allow_empty=True)
        _check(idempotency_key, "idempotency key", "key", allow_empty=True)
        role, status = MessageRole(role), ReplyStatus(status)
        if role is MessageRole.USER and status is not ReplyStatus.COMPLETE:
            raise StoreError("invalid", "a user's message is stored complete")
        thread = _int_id(thread_id, "thread id")

        def add(db: sqlite3.Connection) -> str:
            # The thread first: a key is only ever looked up within the thread it was stored in.
            self._thread_in(db, ws.key, thread, thread_id)
            scoped_key = f"{thread}:{idempotency_key}" if idempotency_key else None
            if scoped_key:
                row = db.execute(
                    "SELECT id FROM messages WHERE idempotency_key = ? AND thread_id = ?", (scoped_key, thread)
                ).fetchone()
                if row:
                    return str(row[0])
            now = time.time()
            cur = db.execute(
                "INSERT INTO messages (thread_id, role, text, status, author_id, created_at, updated_at, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (thread, role.value, text, status.value, author_id, now, now, scoped_key),
            )
            return str(cur.lastrowid)

        return await self._tx(add)

    @staticmethod
    def _thread_in(db: sqlite3.Connection, ws: str, thread: int, thread_id: str) -> None:
        """Existence and ownership first: a thread of another workspace is not found."""
        if db.execute("SELECT 1 FROM threads WHERE id = ? AND ws = ?", (thread, ws)).fetchone() is None:
            raise StoreError("not_found", f"no thread {thread_id} in this workspace")

    @staticmethod
    def _message_row(db: sqlite3.Connection, row: sqlite3.Row | tuple[Any, ...]) -> StoredMessage:
        (mid, thread_id, role, text, status, author_id, created_at, sources, tin, tout, cread, cwrite, pmid, ws) = row
        if status == ReplyStatus.STREAMING.value:
            parts = db.execute("SELECT text FROM deltas WHERE message_id = ? ORDER BY seq", (mid,)).fetchall()
            text = text + "".join(p[0] for p in parts)
        return StoredMessage(
            id=str(mid),
            thread_id=str(thread_id),
            role=MessageRole(role),
            text=text,
            status=ReplyStatus(status),
            author_id=author_id,
            created_at=created_at,
            sources=tuple(Source(**s) for s in json.loads(sources)),
            usage=Usage(tin, tout, cread, cwrite),
            platform_message_id=pmid,
            workspace=ws,
        )

    _COLUMNS = (
        "id, thread_id, role, text, status, author_id, created_at, sources, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, platform_message_id, "
        "(SELECT ws FROM threads WHERE threads.id = messages.thread_id)"
    )
    _IN_WS = "thread_id IN (SELECT id FROM threads WHERE ws = ?)"

    async def messages(
        self, ws: WorkspaceRef, thread_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[StoredMessage]:
        _ws(ws)
        thread = _int_id(thread_id, "thread id")
        if not isinstance(limit, int) or not 1 <= limit <= COUNTS["messages_page"]:
            raise StoreError("invalid", f"limit must be between 1 and {COUNTS['messages_page']}")
        before = _int_id(cursor, "cursor") if cursor else None

        def read(db: sqlite3.Connection) -> Page[StoredMessage]:
            self._thread_in(db, ws.key, thread, thread_id)
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM messages WHERE thread_id = ? AND (? IS NULL OR id < ?) "
                "ORDER BY id DESC LIMIT ?",
                (thread, before, before, limit + 1),
            ).fetchall()
            items = [self._message_row(db, r) for r in rows[:limit]]
            return Page(items, items[-1].id if len(rows) > limit else None)

        return await self._read(read)

    async def message(self, ws: WorkspaceRef, message_id: str) -> StoredMessage | None:
        _ws(ws)
        mid = _int_id(message_id, "message id")

        def read(db: sqlite3.Connection) -> StoredMessage | None:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM messages WHERE id = ? AND {self._IN_WS}", (mid, ws.key)
            ).fetchone()
            return self._message_row(db, row) if row else None

        return await self._read(read)

    async def append_deltas(self, deltas: Sequence[Delta]) -> None:
        _count(deltas, "deltas", "deltas_per_call")
        rows = [
            (
                _int_id(d.message_id, "message id"),
                _whole(d.seq, "seq", "seq"),
                _check(d.text, "delta", "text"),
                _check(d.workspace, "workspace", "workspace"),
            )
            for d in deltas
        ]
        if not rows:
            return
        now = time.time()

        def append(db: sqlite3.Connection) -> None:
            totals: dict[int, int] = {}  # live reply -> characters it holds with this batch
            fresh: list[tuple[int, int, str]] = []
            taken: set[tuple[int, int]] = set()
            for mid, seq, text, ws in rows:
                # Only live replies of the delta's own workspace take deltas: one flushed after
                # completion would be an orphan row forever.
                live = db.execute(
                    "SELECT length(text) FROM messages WHERE id = ? AND status = 'streaming' AND role = 'assistant' "
                    f"AND {self._IN_WS}",
                    (mid, ws),
                ).fetchone()
                if live is None:
                    continue
                if mid not in totals:
                    streamed = db.execute("SELECT SUM(length(text)) FROM deltas WHERE message_id = ?", (mid,))
                    totals[mid] = live[0] + (streamed.fetchone()[0] or 0)
                # The same (message, seq) again is a retried write that did land: skip it.
                seen = db.execute("SELECT 1 FROM deltas WHERE message_id = ? AND seq = ?", (mid, seq)).fetchone()
                if seen or (mid, seq) in taken:
                    continue
                taken.add((mid, seq))
                # The text assembled from deltas has the same total bound as a completed text.
                totals[mid] += len(text)
                if totals[mid] > TEXT["text"]:
                    raise StoreError("invalid", f"reply {mid} would grow past {TEXT['text']:,} characters")
                fresh.append((mid, seq, text))
            db.executemany("INSERT INTO deltas (message_id, seq, text) VALUES (?, ?, ?)", fresh)
            db.executemany("UPDATE messages SET updated_at = ? WHERE id = ?", [(now, mid) for mid in totals])

        await self._tx(append)

    async def complete_message(
        self,
        ws: WorkspaceRef,
        message_id: str,
        *,
        text: str,
        status: ReplyStatus,
        sources: Sequence[Source] = (),
        usage: Usage | None = None,
        platform_message_id: str = "",
        charge: Charge | None = None,
    ) -> Sequence[BudgetState]:
        _ws(ws)
        mid = _int_id(message_id, "message id")
        _check(text, "message text", "text", allow_empty=True)
        _check(platform_message_id, "platform message id", allow_empty=True)
        status = ReplyStatus(status)
        if status is ReplyStatus.STREAMING:
            raise StoreError("invalid", "a reply is completed as complete, failed or cancelled, never streaming")
        _count(sources, "sources", "sources")
        for s in sources:
            _whole(s.index, "source index", "source_index")
            _check(s.title, "source title", "title", allow_empty=True)
            _check(s.uri, "source uri", "uri", allow_empty=True)
            _check(s.text, "source text", "source_text", allow_empty=True)
            _number(s.score, "source score", "score")
        usage = usage or Usage()
        _whole(usage.input_tokens, "input tokens", "tokens")
        _whole(usage.output_tokens, "output tokens", "tokens")
        _whole(usage.cache_read_tokens, "cache read tokens", "tokens")
        _whole(usage.cache_write_tokens, "cache write tokens", "tokens")
        if charge is not None:
            _check(charge.user_id, "charged user id")
            _check(charge.role, "charged role")
            _check(charge.model, "model", "model", allow_empty=True)
        encoded = json.dumps([asdict(s) for s in sources])

        def complete(db: sqlite3.Connection) -> Sequence[BudgetState]:
            row = db.execute(
                "SELECT role, status, text, (SELECT channel_id FROM threads WHERE threads.id = messages.thread_id) "
                f"FROM messages WHERE id = ? AND {self._IN_WS}",
                (mid, ws.key),
            ).fetchone()
            if row is None:
                raise StoreError("not_found", f"no message {message_id} in this workspace")
            if row[0] != MessageRole.ASSISTANT.value:
                raise StoreError("invalid", "only the bot's replies are completed")
            if row[1] != ReplyStatus.STREAMING.value:
                # A message moves only forward; a retry of the same completion changes nothing.
                if row[1] == status.value and row[2] == text:
                    return ()
                raise StoreError("conflict", f"reply {message_id} is already {row[1]}")
            db.execute(
                "UPDATE messages SET text = ?, status = ?, sources = ?, input_tokens = ?, output_tokens = ?, "
                "cache_read_tokens = ?, cache_write_tokens = ?, platform_message_id = ?, updated_at = ? WHERE id = ?",
                (
                    text,
                    status.value,
                    encoded,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    platform_message_id,
                    time.time(),
                    mid,
                ),
            )
            # The final text lives in the row; the deltas were only for watching it grow.
            db.execute("DELETE FROM deltas WHERE message_id = ?", (mid,))
            # The usage is charged to the ledger and the budgets in this same transaction.
            return ledger.charge(db, ws.key, row[3], charge, usage, self._audit) if charge is not None else ()

        return await self._tx(complete)

    async def stale_streaming(self, older_than_s: float) -> Sequence[StaleReply]:
        if not isinstance(older_than_s, (int, float)) or older_than_s < 0:
            raise StoreError("invalid", "older_than_s must be a non-negative number of seconds")
        cutoff = time.time() - older_than_s

        def read(db: sqlite3.Connection) -> list[StaleReply]:
            rows = db.execute(
                "SELECT m.id, t.ws FROM messages m JOIN threads t ON t.id = m.thread_id "
                "WHERE m.status = 'streaming' AND m.updated_at < ? ORDER BY m.id",
                (cutoff,),
            ).fetchall()
            return [StaleReply(str(r[0]), r[1]) for r in rows]

        return await self._read(read)

    # -- DocumentStore --------------------------------------------------------------------------
    @staticmethod
    def _document(row: tuple[Any, ...]) -> DocumentRecord:
        return DocumentRecord(row[0], row[1], row[2], row[3], row[4], row[5])

    async def document(self, ws: WorkspaceRef, source_uri: str) -> DocumentRecord | None:
        _ws(ws)
        _check(source_uri, "source uri", "uri")

        def read(db: sqlite3.Connection) -> DocumentRecord | None:
            row = db.execute(
                "SELECT source_uri, title, content_hash, chunk_count, status, updated_at FROM documents "
                "WHERE ws = ? AND source_uri = ?",
                (ws.key, source_uri),
            ).fetchone()
            return self._document(row) if row else None

        return await self._read(read)

    async def documents(self, ws: WorkspaceRef) -> Sequence[DocumentRecord]:
        _ws(ws)

        def read(db: sqlite3.Connection) -> list[DocumentRecord]:
            rows = db.execute(
                "SELECT source_uri, title, content_hash, chunk_count, status, updated_at FROM documents "
                "WHERE ws = ? ORDER BY source_uri",
                (ws.key,),
            ).fetchall()
            return [self._document(r) for r in rows]

        return await self._read(read)

    async def put_document(self, ws: WorkspaceRef, actor: Actor, record: DocumentRecord) -> None:
        _ws(ws)
        _check(record.source_uri, "source uri", "uri")
        _check(record.title, "title", "title", allow_empty=True)
        _check(record.content_hash, "content hash", "content_hash", allow_empty=True)
        if record.status not in {"ingesting", "ready", "failed"}:
            raise StoreError("invalid", "document status must be ingesting, ready or failed")
        _whole(record.chunk_count, "chunk count", "chunk_count")

        def put(db: sqlite3.Connection) -> None:
            self._require(db, ws.key, actor, Permission.MANAGE_KNOWLEDGE)
            db.execute(
                "INSERT INTO documents (ws, source_uri, title, content_hash, chunk_count, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ws, source_uri) DO UPDATE SET title = excluded.title, "
                "content_hash = excluded.content_hash, chunk_count = excluded.chunk_count, "
                "status = excluded.status, updated_at = excluded.updated_at",
                (
                    ws.key,
                    record.source_uri,
                    record.title,
                    record.content_hash,
                    record.chunk_count,
                    record.status,
                    time.time(),
                ),
            )
            # Every state a document enters is audited, `ingesting` over a ready one included.
            self._audit(db, ws.key, actor.user_id, f"document.{record.status}", record.source_uri)

        await self._act(ws.key, actor, f"document put {record.source_uri}", put)

    async def delete_document(self, ws: WorkspaceRef, actor: Actor, source_uri: str) -> bool:
        _ws(ws)
        _check(source_uri, "source uri", "uri")

        def delete(db: sqlite3.Connection) -> bool:
            self._require(db, ws.key, actor, Permission.MANAGE_KNOWLEDGE)
            cur = db.execute("DELETE FROM documents WHERE ws = ? AND source_uri = ?", (ws.key, source_uri))
            if cur.rowcount == 0:
                return False  # nothing was deleted, so nothing is audited as deleted
            self._audit(db, ws.key, actor.user_id, "document.delete", source_uri)
            return True

        return await self._act(ws.key, actor, f"document delete {source_uri}", delete)

    # -- AuditLog -------------------------------------------------------------------------------
    async def audit(self, ws: WorkspaceRef, actor_id: str, action: str, detail: str = "") -> None:
        """Only refusals decided outside a store write (a question refused) are recorded this way;
        every other audit row is written by the function that acts, in its own transaction."""
        _ws(ws)
        _check(actor_id, "actor id")
        if action != REFUSED:
            raise StoreError("invalid", f"only {REFUSED!r} rows are recorded directly; changes audit themselves")
        _check(detail, "detail", "detail", allow_empty=True)
        await self._tx(lambda db: self._audit(db, ws.key, actor_id, action, detail))

    async def audit_entries(self, ws: WorkspaceRef, actor: Actor, *, limit: int = 50) -> Sequence[AuditEntry]:
        _ws(ws)
        if not isinstance(limit, int) or not 1 <= limit <= COUNTS["audit_page"]:
            raise StoreError("invalid", f"limit must be between 1 and {COUNTS['audit_page']}")

        def read(db: sqlite3.Connection) -> list[AuditEntry]:
            # A read writes nothing, so its refusal is not audited here (as in the Convex query).
            try:
                self._require(db, ws.key, actor, Permission.VIEW_AUDIT)
            except RoleChangeDenied as exc:
                raise PermissionDenied(exc.code, str(exc)) from None
            rows = db.execute(
                "SELECT at, actor_id, action, detail FROM audit WHERE ws = ? ORDER BY id DESC LIMIT ?",
                (ws.key, limit),
            ).fetchall()
            return [AuditEntry(*r) for r in rows]

        return await self._read(read)


def _int_id(value: str | None, name: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise StoreError("invalid", f"{name} {value!r} is not an id of this store") from None
