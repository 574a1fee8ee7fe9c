"""A question kept in the outbox comes back whole: its files' metadata included, as Attachments."""

from __future__ import annotations

from pathlib import Path

from core.attachments import prepare
from core.messages import Actor, Attachment, IncomingMessage, Platform, WorkspaceRef
from core.outbox import Outbox


async def test_a_kept_question_keeps_its_attachments(tmp_path: Path) -> None:
    files = (Attachment("deploy.png", "image/png", 2048, "https://files.example/deploy.png"),)
    message = IncomingMessage(
        WorkspaceRef(Platform.DISCORD, "G1"), "C1", "M1", "M1", Actor("U1"), "what is this?", attachments=files
    )
    outbox = await Outbox.open(tmp_path / "outbox.sqlite")
    try:
        await outbox.keep(message, {"channel": "C1", "ids": []}, claimed=True)
        [kept] = await outbox.pending()
    finally:
        await outbox.close()
    assert kept.message == message and kept.message.attachments == files
    # Replayed without the platform's fetcher: the file is named as not read, not silently dropped.
    prepared = await prepare(None, kept.message.attachments)
    assert [name for name, _ in prepared.unused] == ["deploy.png"]
