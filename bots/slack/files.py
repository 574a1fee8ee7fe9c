"""Downloading files attached on Slack: url_private_download with the bot token (files:read).

The token goes only to Slack's file host (and to the Web API's own host when SLACK_API_URL points
elsewhere, as in tests), never to a URL anywhere else.
"""

from __future__ import annotations

from urllib.parse import urlparse

import httpx

from bots.slack.oauth import team_token
from core.attachments import DOWNLOAD_TIMEOUT_S, AttachmentError, download
from core.messages import Attachment

FILE_HOSTS = frozenset({"files.slack.com"})


class SlackFiles:
    def __init__(self, token: str | None, *, api_url: str | None = None) -> None:
        self.token = token
        self.hosts = FILE_HOSTS | ({urlparse(api_url).netloc} if api_url else set())

    async def fetch(self, attachment: Attachment, *, max_bytes: int) -> bytes:
        url = urlparse(attachment.url)
        if url.scheme not in {"https", "http"} or url.netloc not in self.hosts:
            raise AttachmentError("not a Slack file")
        # With OAuth there is no single token: the workspace being answered lends its own.
        token = team_token.get() or self.token
        if not token:
            raise AttachmentError("no bot token for this workspace")
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=False) as client:
            return await download(
                client, attachment.url, headers={"Authorization": f"Bearer {token}"}, max_bytes=max_bytes
            )
