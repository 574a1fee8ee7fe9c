"""Slack distribution: Bolt's OAuth v2 flow on the bot's own store, one bot token per workspace.

GET /slack/install starts an install (a one-use `state`, kept in the store and in a cookie),
GET /slack/oauth_redirect checks that state, exchanges the code (oauth.v2.access) and saves the
workspace's installation; every event is then answered with its workspace's token, and
app_uninstalled / tokens_revoked remove it. Tokens reach the store sealed (core.installations).
"""

from __future__ import annotations

import logging
import secrets
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.installation_store import Installation as SlackInstallation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from core.installations import Installation, Installations
from core.messages import Platform, WorkspaceRef

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
MANIFEST = Path(__file__).with_name("manifest.yaml")

_LOGGER = logging.getLogger(__name__)  # slack-sdk's stores log through a stdlib logger (core.logs formats it)
# The bot token of the workspace whose event this task is answering (see TeamRoutedClient).
team_token: ContextVar[str | None] = ContextVar("team_token", default=None)


def manifest_scopes() -> list[str]:
    """The bot scopes the app asks for at install: the manifest's, the one list of them."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return [str(s) for s in manifest["oauth_config"]["scopes"]["bot"]]


class TeamRoutedClient(AsyncWebClient):
    """One Web API client for every workspace: each call carries the token of the workspace whose event
    the current task answers (`team_token`), so the surfaces, the user directory and the thread reader
    need no per-workspace plumbing. Without one (single-workspace mode) the client's own token is used."""

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        token = team_token.get()
        if token is not None:
            params = dict(kwargs.get("params") or {})
            json_body = kwargs.get("json")
            if "token" not in params and not (isinstance(json_body, dict) and "token" in json_body):
                params["token"] = token
                kwargs["params"] = params
        return await super().api_call(api_method, **kwargs)


def _workspace(team_id: str | None, enterprise_id: str | None) -> WorkspaceRef:
    return WorkspaceRef(Platform.SLACK, str(team_id or enterprise_id or ""))


def _bot_fields(found: Installation, team_id: str | None) -> dict[str, Any]:
    """What slack-sdk's Bot and Installation share, from an installation."""
    return {
        "app_id": found.app_id or None,
        "enterprise_id": found.enterprise_id or None,
        "team_id": team_id,
        "team_name": found.team_name or None,
        "bot_token": found.bot_token,
        "bot_id": found.bot_id,
        "bot_user_id": found.bot_user_id,
        "bot_scopes": found.bot_scopes,
        "installed_at": found.installed_at,
    }


class StoreInstallationStore(AsyncInstallationStore):
    """slack-sdk's installation store on core.installations (bot tokens only: the app asks no user scopes)."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    @property
    def logger(self) -> logging.Logger:
        return _LOGGER

    async def async_save(self, installation: SlackInstallation) -> None:
        if not installation.bot_token:
            return
        await self.installations.save(
            Installation(
                workspace=_workspace(installation.team_id, installation.enterprise_id),
                bot_token=installation.bot_token,
                bot_id=installation.bot_id or "",
                bot_user_id=installation.bot_user_id or "",
                bot_scopes=",".join(installation.bot_scopes or []),
                app_id=installation.app_id or "",
                installer_user_id=installation.user_id or "",
                team_name=installation.team_name or "",
                enterprise_id=installation.enterprise_id or "",
                installed_at=float(installation.installed_at or time.time()),
            )
        )

    async def async_save_bot(self, bot: Bot) -> None:
        return None  # async_save keeps the bot with its installation

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = await self.installations.find(_workspace(team_id, enterprise_id))
        return Bot(**_bot_fields(found, team_id)) if found is not None else None

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> SlackInstallation | None:
        found = await self.installations.find(_workspace(team_id, enterprise_id))
        if found is None:
            return None
        return SlackInstallation(**_bot_fields(found, team_id), user_id=found.installer_user_id or "unknown")

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.installations.delete(_workspace(team_id, enterprise_id))

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:  # a user's own token (none are kept) leaves the bot's in place
            await self.installations.delete(_workspace(team_id, enterprise_id))

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.installations.delete(_workspace(team_id, enterprise_id))


class StoreStateStore(AsyncOAuthStateStore):
    """One-use OAuth states in the store: an install started in one process may finish in another."""

    def __init__(self, installations: Installations) -> None:
        self.installations = installations

    @property
    def logger(self) -> logging.Logger:
        return _LOGGER

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self.installations.issue_state(state)
        return state

    async def async_consume(self, state: str) -> bool:
        return await self.installations.consume_state(state)


def oauth_parts(
    *,
    installations: Installations,
    client: AsyncWebClient,
    client_id: str,
    client_secret: str,
    scopes: list[str],
    redirect_uri: str | None,
) -> tuple[StoreInstallationStore, AsyncInstallationStoreAuthorize, AsyncOAuthFlow]:
    """The installation store, the authorize step (its auth.test answers cached per token) and the flow."""
    store = StoreInstallationStore(installations)
    settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        user_scopes=[],
        redirect_uri=redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=store,
        installation_store_bot_only=True,
        state_store=StoreStateStore(installations),
    )
    authorize = AsyncInstallationStoreAuthorize(
        installation_store=store,
        client_id=client_id,
        client_secret=client_secret,
        logger=store.logger,
        bot_only=True,
        cache_enabled=True,
        client=client,
    )
    return store, authorize, AsyncOAuthFlow(client=client, settings=settings)


class OAuthConfig:
    """What distribution needs: the installations port and the app's OAuth credentials."""

    def __init__(
        self,
        installations: Installations,
        *,
        client_id: str,
        client_secret: str,
        scopes: list[str] | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        self.installations = installations
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes or manifest_scopes()
        self.redirect_uri = redirect_uri

    def parts(self) -> dict[str, Any]:
        return {
            "installations": self.installations,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scopes": self.scopes,
            "redirect_uri": self.redirect_uri,
        }
