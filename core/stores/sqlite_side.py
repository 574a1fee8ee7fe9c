"""Ports kept beside the SQLite store: their own table in its file, its worker, its checks."""

from __future__ import annotations

from core.stores.sqlite import SqliteStore


class SideTable:
    """Creates the port's table (one CREATE TABLE IF NOT EXISTS) on first use."""

    schema = ""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._ready = False

    async def _schema(self) -> None:
        if not self._ready:
            await self.store._tx(lambda db: db.execute(self.schema))
            self._ready = True
