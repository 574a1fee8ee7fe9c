"""`chatbot slack`: serve the Events API over HTTP (/slack/events) or connect with Socket Mode."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError

from bots.ops import OpsServer
from bots.slack.app import EVENTS_PATH, SlackBot
from bots.slack.oauth import INSTALL_PATH, OAuthConfig
from core.config import MissingSetting, Settings, secret

if TYPE_CHECKING:
    from core.app import ChatCore

log = structlog.get_logger(__name__)

WHY = {
    "SLACK_BOT_TOKEN": "the app's Bot User OAuth Token, xoxb-…, under OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "verifies that requests come from Slack, under Basic Information › App Credentials",
    "SLACK_APP_TOKEN": "an app-level token, xapp-…, with connections:write, needed for --socket",
    "SLACK_CLIENT_SECRET": "the app's Client Secret (Basic Information › App Credentials), needed with SLACK_CLIENT_ID",
    "CHATBOT_TOKEN_KEY": "a Fernet key that seals the workspaces' bot tokens, needed with SLACK_CLIENT_ID",
}


class MissingSlackSettings(MissingSetting):
    """One clear line per missing variable (the CLI prefixes the first with `chatbot: `)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(*names, purpose="Slack")
        self.args = ("\nchatbot: ".join(f"{name} is not set ({WHY[name]})" for name in names),)


def slack_credentials(settings: Settings, *, socket: bool) -> tuple[str | None, str | None, str | None]:
    """(bot token, signing secret, app token); raises MissingSlackSettings naming every missing one.

    With SLACK_CLIENT_ID (distribution) there is no single bot token: each workspace's comes from
    its installation, so the client secret and the key that seals the tokens are needed instead.
    """
    values = {
        "SLACK_BOT_TOKEN": secret(settings.slack_bot_token),
        "SLACK_SIGNING_SECRET": secret(settings.slack_signing_secret),
        "SLACK_APP_TOKEN": secret(settings.slack_app_token),
        "SLACK_CLIENT_SECRET": secret(settings.slack_client_secret),
        "CHATBOT_TOKEN_KEY": secret(settings.token_key),
    }
    distributed = bool(settings.slack_client_id)
    needed = ["SLACK_CLIENT_SECRET", "CHATBOT_TOKEN_KEY"] if distributed else ["SLACK_BOT_TOKEN"]
    needed.insert(1 if not distributed else 0, "SLACK_APP_TOKEN" if socket else "SLACK_SIGNING_SECRET")
    missing = [name for name in needed if not values[name]]
    if missing:
        raise MissingSlackSettings(missing)
    return None if distributed else values["SLACK_BOT_TOKEN"], values["SLACK_SIGNING_SECRET"], values["SLACK_APP_TOKEN"]


async def run_slack(
    settings: Settings,
    core: ChatCore,
    *,
    socket: bool = False,
    http: bool | None = None,
    port: int | None = None,
    host: str = "0.0.0.0",
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Run the Slack app until SIGTERM/SIGINT (or `stop` is set); returns the exit code.

    HTTP is the default (`http` is accepted for symmetry with the CLI flags); `socket=True` uses
    Socket Mode with SLACK_APP_TOKEN. Replies in flight are finished before returning.
    """
    from core.app import ConfigError  # the wired core exists by now; keep `import bots.slack` light

    if http and socket:
        raise ConfigError("choose one of --http and --socket")
    token, signing_secret, app_token = slack_credentials(settings, socket=socket)
    oauth = None
    if settings.slack_client_id:
        oauth = OAuthConfig(
            await core.installations(),
            client_id=settings.slack_client_id,
            client_secret=secret(settings.slack_client_secret) or "",
            scopes=settings.slack_scopes.split(",") if settings.slack_scopes else None,
            redirect_uri=settings.slack_redirect_uri,
        )
    bot = SlackBot(
        core,
        token=token,
        signing_secret=None if socket else signing_secret,
        api_url=settings.slack_api_url,
        native_streaming=settings.slack_native_streaming,
        history_limited=settings.slack_history_limited,
        oauth=oauth,
    )
    if token is None:
        identity: dict[str, Any] = {}
        who = f"any workspace that installs it at {INSTALL_PATH}"
    else:
        try:
            identity = dict((await bot.client.auth_test()).data)  # type: ignore[arg-type]
        except SlackApiError as exc:
            raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack: {exc.response.get('error', exc)}") from exc
        who = f"team {identity.get('team_id')}, bot <@{identity.get('user_id')}>"

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass

    runner: web.AppRunner | None = None
    handler: AsyncSocketModeHandler | None = None
    ops: OpsServer | None = None
    try:
        if socket:
            if settings.health_port is not None:  # no web server of its own: a small one for the endpoints
                ops = OpsServer(core, port=settings.health_port, host=host)
                await ops.start()
            handler = AsyncSocketModeHandler(bot.app, app_token, web_client=bot.client)
            await handler.connect_async()  # type: ignore[no-untyped-call]
            where = "Socket Mode"
        else:
            runner = web.AppRunner(bot.web_app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, settings.port if port is None else port)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port  # the real port when asked for 0
            where = f"http://{host}:{bound}{EVENTS_PATH}"
        # Replies an earlier run left half-shown are finished on Slack, kept questions answered: now, then periodically.
        bot.attach_recovery()
        core.start_recovery()
        print(f"chatbot: Slack app ready on {where} ({who})", file=sys.stderr, flush=True)
        log.info("slack.ready", where=where, team=identity.get("team_id"))
        if on_ready is not None:
            on_ready(where)
        await stop.wait()
        log.info("slack.stopping", in_flight=bot.in_flight)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        if ops is not None:
            await ops.close()
        if runner is not None:
            await runner.cleanup()
        await bot.close()
    return 0
