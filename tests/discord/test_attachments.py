"""Files on Discord, end to end: attachments on the question reach the model as document and image blocks;
an unsupported one is named under the reply."""

from __future__ import annotations

import base64
import json

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


async def test_files_have_their_own_budget_beside_a_long_thread_and_the_rest_is_named(harness: Harness) -> None:  # noqa: F811
    from tests.discord.test_thread_context import ANA, BEN, settle_in
    from tests.slack.test_attachments import request_tokens
    from tests.unit.test_attachments import pdf_of, png_of

    h = harness
    thread_id = await h.fake.open_thread(ANA)
    for i in range(300):
        h.fake.add_message(
            ANA if i % 2 else BEN, f"message {i}: " + "some discussion " * 6, channel_id=thread_id, mention_bot=False
        )
    files = [
        h.fake.attach("summary.pdf", pdf_of(1), "application/pdf"),
        h.fake.attach("chart.png", png_of(1200, 900), "image/png"),
        h.fake.attach("appendix.pdf", pdf_of(10), "application/pdf"),  # more than the files' budget left
    ]
    h.llm.script("The summary and the chart agree.")
    await h.fake.send_message(ANA, "what do these say?", channel_id=thread_id, attachments=files)
    await settle_in(h, thread_id, 1)

    request = h.llm.last_request
    blocks = request["messages"][-1]["content"]
    assert [b.get("title") for b in blocks if b["type"] == "document"] == ["summary.pdf"]
    assert [b["type"] for b in blocks].count("image") == 1
    text = json.dumps(request["messages"])
    assert "message 299:" in text and "message 0:" not in text and "left out to fit" in text
    text_tokens, file_tokens = request_tokens(request)
    assert text_tokens <= h.core.settings.context_token_budget
    assert file_tokens <= h.core.settings.file_token_budget
    [reply] = h.fake.bot_messages(thread_id)
    assert "Not used: appendix.pdf (too large for what I can read at once (about 30,000 tokens))" in reply["content"]
