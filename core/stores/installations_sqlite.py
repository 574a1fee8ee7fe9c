"""Installations and OAuth states in the SQLite store's file (tables of their own, one worker of their own)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.installations import Installation
from core.messages import WorkspaceRef
from core.policy import text_error
from core.sqlite_worker import SqliteUnavailable, SqliteWorker
from core.stores.base import StoreError, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS installations (
    ws TEXT PRIMARY KEY,
    sealed_token TEXT NOT NULL,
    bot_id TEXT NOT NULL,
    bot_user_id TEXT NOT NULL,
    bot_scopes TEXT NOT NULL,
    app_id TEXT NOT NULL,
    installer_user_id TEXT NOT NULL,
    team_name TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    installed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_states (
    state TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS oauth_states_expiry ON oauth_states (expires_at);
"""
T = TypeVar("T")


# The rule book's bound for each field (the Convex functions apply the same ones).
_KINDS = {
    "bot_token": "sealed_token",
    "bot_id": "id",
    "bot_user_id": "id",
    "app_id": "id",
    "installer_user_id": "id",
    "enterprise_id": "id",
    "bot_scopes": "scopes",
    "team_name": "title",
}


def check_installation(installation: Installation) -> None:
    for name, kind in _KINDS.items():
        error = text_error(kind, getattr(installation, name), name, allow_empty=name != "bot_token")
        if error:
            raise StoreError("invalid", error)


def check_state(state: str) -> None:
    error = text_error("oauth_state", state, "OAuth state")
    if error:
        raise StoreError("invalid", error)


class SqliteInstallations:
    def __init__(self, path: Path) -> None:
        self._worker = SqliteWorker(path, SCHEMA, name="sqlite-installations")

    @classmethod
    async def open(cls, path: Path) -> SqliteInstallations:
        installations = cls(path)
        await installations._worker.open()
        return installations

    async def close(self) -> None:
        await self._worker.close()

    async def put_installation(self, installation: Installation) -> None:
        check_installation(installation)
        i = installation

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO installations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (i.workspace.key, i.bot_token, i.bot_id, i.bot_user_id, i.bot_scopes, i.app_id,
                 i.installer_user_id, i.team_name, i.enterprise_id, i.installed_at),
            )  # fmt: skip

        await self._tx(write)

    async def get_installation(self, ws: WorkspaceRef) -> Installation | None:
        def read(db: sqlite3.Connection) -> Installation | None:
            row = db.execute(
                "SELECT sealed_token, bot_id, bot_user_id, bot_scopes, app_id, installer_user_id, team_name,"
                " enterprise_id, installed_at FROM installations WHERE ws = ?",
                (ws.key,),
            ).fetchone()
            return Installation(ws, *row) if row else None

        try:
            return await self._worker.read(read)
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc

    async def delete_installation(self, ws: WorkspaceRef) -> bool:
        return await self._tx(lambda db: db.execute("DELETE FROM installations WHERE ws = ?", (ws.key,)).rowcount > 0)

    async def put_state(self, state: str, expires_at: float) -> None:
        check_state(state)

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO oauth_states VALUES (?, ?)", (state, expires_at))

        await self._tx(write)

    async def take_state(self, state: str, now: float) -> bool:
        check_state(state)

        def take(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM oauth_states WHERE expires_at < ?", (now - 3600,))  # keep the table small
            row = db.execute("DELETE FROM oauth_states WHERE state = ? RETURNING expires_at", (state,)).fetchone()
            return row is not None and float(row[0]) >= now

        return await self._tx(take)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._worker.transaction(fn)
        except SqliteUnavailable as exc:
            raise StoreUnavailable(f"the SQLite store {exc}") from exc
