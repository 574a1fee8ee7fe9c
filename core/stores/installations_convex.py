"""Installations and OAuth states in Convex (convex/functions/installations.ts), through the ConvexStore's client."""

from __future__ import annotations

from typing import Any

from core.installations import Installation
from core.messages import WorkspaceRef
from core.stores.convex import ConvexStore

_FIELDS = {
    "bot_token": "sealedToken",
    "bot_id": "botId",
    "bot_user_id": "botUserId",
    "bot_scopes": "botScopes",
    "app_id": "appId",
    "installer_user_id": "installerUserId",
    "team_name": "teamName",
    "enterprise_id": "enterpriseId",
    "installed_at": "installedAt",
}


class ConvexInstallations:
    def __init__(self, store: ConvexStore) -> None:
        self.convex = store  # its HTTP client, secret and retries

    async def put_installation(self, installation: Installation) -> None:
        row: dict[str, Any] = {cx: getattr(installation, py) for py, cx in _FIELDS.items()}
        await self.convex._mutation("installations:put", workspace=installation.workspace.key, **row)

    async def get_installation(self, ws: WorkspaceRef) -> Installation | None:
        row = await self.convex._query("installations:get", workspace=ws.key)
        if row is None:
            return None
        return Installation(ws, **{py: row[cx] for py, cx in _FIELDS.items()})

    async def delete_installation(self, ws: WorkspaceRef) -> bool:
        return bool(await self.convex._mutation("installations:remove", workspace=ws.key))

    async def put_state(self, state: str, expires_at: float) -> None:
        await self.convex._mutation("installations:putState", state=state, expiresAt=expires_at)

    async def take_state(self, state: str, now: float) -> bool:
        # A retried take must not consume twice: without a request id, a lost answer reads as refused.
        return bool(await self.convex._mutation("installations:takeState", once=False, state=state, now=now))

    async def close(self) -> None:
        return None  # the ConvexStore owns the client
