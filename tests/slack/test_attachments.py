"""Files on Slack, end to end: a PDF and an image attached to the question reach the model as document and
image blocks (downloaded with the bot token), a text file in the thread does too, an unsupported file is named."""

from __future__ import annotations

import base64
import json
from typing import Any

from core.attachments import image_size, pdf_pages
from core.tokens import estimate_tokens, image_tokens, pdf_tokens
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import BOT_TOKEN
from tests.slack.conftest import Harness
from tests.slack.test_conversations import answered, mention

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


async def test_a_pdf_and_an_image_reach_the_model_as_blocks_and_the_rest_is_named(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = harness
    files = [
        h.slack.upload("report.pdf", PDF, "application/pdf"),
        h.slack.upload("chart.png", PNG, "image/png"),
        h.slack.upload("bundle.zip", b"PK\x03\x04", "application/zip"),
    ]
    fake_anthropic.script("The report shows growth; the chart agrees.")
    await answered(h, mention("what do these say?", subtype="file_share", files=files))

    [turn] = fake_anthropic.last_request["messages"]
    blocks = turn["content"]
    assert [b["type"] for b in blocks] == ["document", "image", "text"]
    assert blocks[0]["source"] == {
        "type": "base64",
        "media_type": "application/pdf",
        "data": base64.b64encode(PDF).decode(),
    }
    assert blocks[0]["title"] == "report.pdf"
    assert blocks[1]["source"]["media_type"] == "image/png"
    assert base64.b64decode(blocks[1]["source"]["data"]) == PNG
    assert blocks[2]["text"] == "what do these say?"
    assert all(auth == f"Bearer {BOT_TOKEN}" for _, auth in h.slack.downloads) and len(h.slack.downloads) == 2

    [reply] = h.slack.replies_in("C1")
    shown = h.slack.shown_text(reply)
    assert shown.startswith("The report shows growth; the chart agrees.")
    assert "Not used: bundle.zip (a file type I can't read)" in shown


async def test_a_text_file_earlier_in_the_thread_reaches_the_model(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = harness
    log = h.slack.upload("build.log", b"step 3 failed: out of memory\n", "text/plain")
    parent = h.slack.add_message("C1", "the build broke again", user="UANA", files=[log])
    await answered(h, mention("what does this log say?", thread_ts=parent.ts))
    blocks = fake_anthropic.last_request["messages"][-1]["content"]
    doc = next(b for b in blocks if b["type"] == "document")
    assert doc["source"] == {"type": "text", "media_type": "text/plain", "data": "step 3 failed: out of memory\n"}
    assert "(attached: build.log)" in json.dumps(fake_anthropic.last_request["messages"])


async def test_a_file_slack_will_not_serve_is_named_and_the_question_answered(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    h = harness
    gone = h.slack.upload("notes.md", b"# notes", "text/markdown")
    del h.slack.files[gone["id"]]  # deleted before the bot could read it
    fake_anthropic.script("I could not open the notes.")
    await answered(h, mention("summarize my notes", files=[gone]))
    [reply] = h.slack.replies_in("C1")
    assert "Not used: notes.md (the download failed (403))" in h.slack.shown_text(reply)
    assert isinstance(fake_anthropic.last_request["messages"][-1]["content"], str)


def request_tokens(request: dict[str, Any]) -> tuple[int, int]:
    """What a Messages request costs by the prompt's own estimates: its text, and its files apart."""
    system = request["system"]
    text = sum(estimate_tokens(b["text"]) for b in system) if isinstance(system, list) else estimate_tokens(system)
    files = 0
    for turn in request["messages"]:
        parts = turn["content"] if isinstance(turn["content"], list) else [{"type": "text", "text": turn["content"]}]
        for part in parts:
            if part["type"] == "text":
                text += estimate_tokens(part["text"])
            elif part["type"] == "image":
                files += image_tokens(*image_size(base64.b64decode(part["source"]["data"])))
            elif part["source"]["type"] == "text":
                files += estimate_tokens(part["source"]["data"])
            else:
                files += pdf_tokens(pdf_pages(base64.b64decode(part["source"]["data"])))
    return text, files


async def test_files_have_their_own_budget_beside_a_long_thread_and_the_rest_is_named(
    harness: Harness, fake_anthropic: FakeAnthropic
) -> None:
    from tests.slack.test_thread_context import human_thread
    from tests.unit.test_attachments import pdf_of, png_of

    h = harness
    parent_ts = human_thread(h.slack, replies=300)
    files = [
        h.slack.upload("summary.pdf", pdf_of(1), "application/pdf"),
        h.slack.upload("chart.png", png_of(1200, 900), "image/png"),  # 1,440 tokens
        h.slack.upload("appendix.pdf", pdf_of(10), "application/pdf"),  # 30,000 tokens: over the files' budget
    ]
    fake_anthropic.script("The summary and the chart agree.")
    await answered(h, mention("what do these say?", subtype="file_share", files=files, thread_ts=parent_ts))

    request = fake_anthropic.last_request
    blocks = request["messages"][-1]["content"]
    assert [b.get("title") for b in blocks if b["type"] == "document"] == ["summary.pdf"]
    assert [b["type"] for b in blocks].count("image") == 1
    text = json.dumps(request["messages"])
    assert "message 299:" in text and "message 0:" not in text and "left out to fit" in text  # newest first
    text_tokens, file_tokens = request_tokens(request)
    assert text_tokens <= h.bot.core.settings.context_token_budget
    assert file_tokens <= h.bot.core.settings.file_token_budget
    shown = h.slack.shown_text(h.slack.replies_in("C1", parent_ts)[0])
    assert "Not used: appendix.pdf (too large for what I can read at once (about 30,000 tokens))" in shown
