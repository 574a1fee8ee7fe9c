"""The installations port: one bot token per workspace that installed the app (Slack OAuth v2).

Tokens are encrypted before they reach a store (Fernet, key CHATBOT_TOKEN_KEY) and decrypted only
here, so neither SQLite's file nor Convex ever holds, logs or returns one in the clear. OAuth
`state` values are kept in the same store, each usable once and only until it expires.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken

from core.logs import remember_secret
from core.messages import WorkspaceRef

STATE_TTL_S = 600.0  # an install started more than ten minutes ago has to start again


@dataclass(frozen=True, slots=True)
class Installation:
    workspace: WorkspaceRef
    bot_token: str  # in the clear only in memory; stores see `TokenCipher.seal(bot_token)`
    bot_id: str = ""
    bot_user_id: str = ""
    bot_scopes: str = ""
    app_id: str = ""
    installer_user_id: str = ""
    team_name: str = ""
    enterprise_id: str = ""
    installed_at: float = 0.0

    def __repr__(self) -> str:  # never print a token, even by accident
        return f"Installation({self.workspace.key}, bot={self.bot_user_id}, scopes={self.bot_scopes!r})"


class InvalidTokenKey(Exception):
    """CHATBOT_TOKEN_KEY is missing, malformed, or not the key the tokens were sealed with."""


class TokenCipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) with the deployment's key."""

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            remember_secret(key)
            try:
                self._fernet = Fernet(key.encode())
            except ValueError as exc:
                raise InvalidTokenKey(
                    "CHATBOT_TOKEN_KEY is not a Fernet key (32 url-safe base64 bytes; make one with "
                    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
                ) from exc

    def _key(self) -> Fernet:
        if self._fernet is None:
            raise InvalidTokenKey("CHATBOT_TOKEN_KEY is not set (needed to keep workspaces' bot tokens)")
        return self._fernet

    def seal(self, token: str) -> str:
        return self._key().encrypt(token.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            token = self._key().decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise InvalidTokenKey(
                "a stored bot token does not open with CHATBOT_TOKEN_KEY (was the key changed?)"
            ) from exc
        remember_secret(token)
        return token


class SealedInstallations(Protocol):
    """What a store keeps: installations with the token already sealed, and one-use OAuth states."""

    async def put_installation(self, installation: Installation) -> None:
        """Create or replace the workspace's installation (`bot_token` sealed)."""
        ...

    async def get_installation(self, ws: WorkspaceRef) -> Installation | None: ...

    async def delete_installation(self, ws: WorkspaceRef) -> bool:
        """Remove the workspace's installation; True if there was one."""
        ...

    async def put_state(self, state: str, expires_at: float) -> None: ...

    async def take_state(self, state: str, now: float) -> bool:
        """True once for a state that exists and has not expired; it is gone afterwards either way."""
        ...


class Installations:
    """The port the Slack adapter uses: plain tokens in, plain tokens out, sealed in between."""

    def __init__(self, store: SealedInstallations, cipher: TokenCipher) -> None:
        self.store = store
        self.cipher = cipher

    async def save(self, installation: Installation) -> None:
        remember_secret(installation.bot_token)
        sealed = replace(installation, bot_token=self.cipher.seal(installation.bot_token))
        await self.store.put_installation(sealed)

    async def find(self, ws: WorkspaceRef) -> Installation | None:
        found = await self.store.get_installation(ws)
        if found is None:
            return None
        return replace(found, bot_token=self.cipher.open(found.bot_token))

    async def delete(self, ws: WorkspaceRef) -> bool:
        return await self.store.delete_installation(ws)

    async def issue_state(self, state: str, *, ttl_s: float = STATE_TTL_S) -> None:
        await self.store.put_state(state, time.time() + ttl_s)

    async def consume_state(self, state: str) -> bool:
        return await self.store.take_state(state, time.time())
