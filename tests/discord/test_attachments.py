"""Files on Discord, end to end: attachments on the question reach the model as document and image blocks;
an unsupported one is named under the reply."""

from __future__ import annotations

import base64

from tests.discord.test_discord import MEMBER, Harness
from tests.discord.test_thread_context import harness  # noqa: F401  (the fixture: Message Content granted)
from tests.slack.test_attachments import PDF, PNG


async def test_a_pdf_and_an_image_reach_the_model_as_blocks_and_the_rest_is_named(harness: Harness) -> None:  # noqa: F811
    h = harness
    files = [
        h.fake.attach("report.pdf", PDF, "application/pdf"),
        h.fake.attach("chart.png", PNG, "image/png"),
        h.fake.attach("tool.exe", b"MZ", "application/x-msdownload"),
    ]
    h.llm.script("Growth, says the report.")
    await h.fake.send_message(MEMBER, "what do these say?", attachments=files)
    await h.settle()
    blocks = h.llm.last_request["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["document", "image", "text"]
    assert base64.b64decode(blocks[0]["source"]["data"]) == PDF
    assert base64.b64decode(blocks[1]["source"]["data"]) == PNG
    [reply] = h.fake.bot_messages()
    assert reply["content"].startswith("Growth, says the report.")
    assert "Not used: tool.exe (a file type I can't read)" in reply["content"]
