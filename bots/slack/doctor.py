"""`chatbot doctor` for Slack: does Slack accept the bot token (auth.test)?"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.config import Settings, secret
from core.health import Probe


def slack_probes(settings: Settings) -> dict[str, Probe]:
    token = secret(settings.slack_bot_token)
    if not token:
        return {}
    base_url = settings.slack_api_url

    async def auth_test() -> str:
        args: dict[str, Any] = {"base_url": base_url if base_url.endswith("/") else base_url + "/"} if base_url else {}
        client = AsyncWebClient(token=token, **args)
        try:
            identity = await client.auth_test()
        except SlackApiError as exc:
            raise RuntimeError(f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error', 'error')})") from None
        return f"SLACK_BOT_TOKEN: team {identity.get('team_id')}, bot <@{identity.get('user_id')}>"

    return {"slack": auth_test}
