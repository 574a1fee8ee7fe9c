"""Channel personas in the embedded store's SQLite file (through the store's own worker and checks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from core.messages import Actor, WorkspaceRef
from core.roles import Permission
from core.stores.base import WorkspaceSettings
from core.stores.personas import ChannelPersona
from core.stores.sqlite import _check, _validate_changes, _ws
from core.stores.sqlite_side import SideTable

SCHEMA = """
CREATE TABLE IF NOT EXISTS channel_personas (
    ws TEXT NOT NULL, channel_id TEXT NOT NULL, system_prompt TEXT NOT NULL, model TEXT NOT NULL,
    PRIMARY KEY (ws, channel_id));
"""
ONE = "SELECT system_prompt, model FROM channel_personas WHERE ws = ? AND channel_id = ?"


class SqlitePersonas(SideTable):
    schema = SCHEMA

    async def channel_persona(self, ws: WorkspaceRef, channel_id: str) -> ChannelPersona | None:
        _ws(ws)
        _check(channel_id, "channel id")
        await self._schema()

        def read(db: sqlite3.Connection) -> ChannelPersona | None:
            row = db.execute(
                "SELECT system_prompt, model FROM channel_personas WHERE ws = ? AND channel_id = ?",
                (ws.key, channel_id),
            ).fetchone()
            return ChannelPersona(channel_id, row[0], row[1]) if row else None

        return await self.store._read(read)

    async def channel_personas(self, ws: WorkspaceRef) -> Sequence[ChannelPersona]:
        _ws(ws)
        await self._schema()

        def read(db: sqlite3.Connection) -> list[ChannelPersona]:
            rows = db.execute(
                "SELECT channel_id, system_prompt, model FROM channel_personas WHERE ws = ? ORDER BY channel_id "
                "LIMIT 1000",
                (ws.key,),
            )
            return [ChannelPersona(r[0], r[1], r[2]) for r in rows]

        return await self.store._read(read)

    async def set_channel_persona(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        channel_id: str,
        *,
        system_prompt: str | None = None,
        model: str | None = None,
    ) -> ChannelPersona:
        _ws(ws)
        _check(channel_id, "channel id")
        changes: dict[str, object] = {
            k: v for k, v in (("system_prompt", system_prompt), ("model", model)) if v is not None
        }
        # The workspace settings' own rule, so a channel's prompt and model have exactly its bounds.
        checked = _validate_changes(changes, WorkspaceSettings())
        await self._schema()

        def change(db: sqlite3.Connection) -> ChannelPersona:
            self.store._require(db, ws.key, actor, Permission.MANAGE_SETTINGS)
            row = db.execute(
                "SELECT system_prompt, model FROM channel_personas WHERE ws = ? AND channel_id = ?",
                (ws.key, channel_id),
            ).fetchone()
            prompt = checked.system_prompt if system_prompt is not None else (row[0] if row else "")
            chosen = checked.model if model is not None else (row[1] if row else "")
            if not prompt and not chosen:
                db.execute("DELETE FROM channel_personas WHERE ws = ? AND channel_id = ?", (ws.key, channel_id))
            else:
                db.execute(
                    "INSERT INTO channel_personas (ws, channel_id, system_prompt, model) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (ws, channel_id) DO UPDATE SET system_prompt = excluded.system_prompt, "
                    "model = excluded.model",
                    (ws.key, channel_id, prompt, chosen),
                )
            fields = ", ".join(sorted(changes)) or "nothing"
            self.store._audit(db, ws.key, actor.user_id, "channel.persona", f"{channel_id}: {fields}")
            return ChannelPersona(channel_id, prompt, chosen)

        return await self.store._act(ws.key, actor, f"channel persona {channel_id}", change)
