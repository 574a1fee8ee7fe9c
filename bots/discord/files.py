"""Downloading files attached on Discord: the attachment's CDN URL (no credentials needed or sent)."""

from __future__ import annotations

from urllib.parse import urlparse

import discord
import httpx

from core.attachments import DOWNLOAD_TIMEOUT_S, AttachmentError, download
from core.messages import Attachment

CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


class DiscordFiles:
    async def fetch(self, attachment: Attachment, *, max_bytes: int) -> bytes:
        url = urlparse(attachment.url)
        # Discord's CDN, or the API host discord.py is pointed at (DISCORD_API_URL, as in tests).
        hosts = CDN_HOSTS | {urlparse(discord.http.Route.BASE).netloc}
        if url.scheme not in {"https", "http"} or url.netloc not in hosts:
            raise AttachmentError("not a Discord attachment")
        async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=False) as client:
            return await download(client, attachment.url, headers={}, max_bytes=max_bytes)
