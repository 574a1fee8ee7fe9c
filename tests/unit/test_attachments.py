"""The attachment rules: kinds, size and count limits, and a note naming everything not used."""

from __future__ import annotations

import io
import math
import struct
import zlib

from pypdf import PdfWriter

from core.attachments import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_IMAGE_BYTES,
    MAX_TEXT_CHARS,
    PDF,
    AttachmentError,
    prepare,
)
from core.messages import Attachment
from core.prompt import build_prompt
from core.tokens import IMAGE_MAX_TOKENS, PDF_MAX_PAGES, PDF_PAGE_TOKENS, image_tokens


class Files:
    def __init__(self, content: dict[str, bytes]) -> None:
        self.content = content
        self.fetched: list[str] = []

    async def fetch(self, attachment: Attachment, *, max_bytes: int) -> bytes:
        self.fetched.append(attachment.name)
        data = self.content.get(attachment.name)
        if data is None:
            raise AttachmentError("the download failed (404)")
        return data


def file(name: str, media: str, size: int = 10) -> Attachment:
    return Attachment(name, media, size, f"https://files.example/{name}")


async def test_limits_are_applied_before_any_download_and_every_skipped_file_is_named() -> None:
    files = Files({f"n{i}.md": b"# hi" for i in range(MAX_FILES + 1)} | {"long.txt": b"x" * (MAX_TEXT_CHARS + 5)})
    question = [
        file("huge.pdf", "application/pdf", MAX_FILE_BYTES + 1),
        file("big.png", "image/png", MAX_IMAGE_BYTES + 1),
        file("long.txt", "text/plain"),
        file("missing.md", "text/markdown"),
    ]
    thread = [file(f"n{i}.md", "") for i in range(MAX_FILES + 1)]
    prepared = await prepare(files, question, thread)
    assert "huge.pdf" not in files.fetched and "big.png" not in files.fetched
    assert len(files.fetched) == MAX_FILES
    names = dict(prepared.unused)
    assert names["huge.pdf"] == "over 10 MB" and names["big.png"] == "over 5 MB"
    assert names["missing.md"] == "the download failed (404)"
    assert "first" in names["long.txt"]
    assert names[f"n{MAX_FILES - 2}.md"].startswith("only")
    long = next(b for b in prepared.blocks if b.name == "long.txt")
    assert len(long.data) == MAX_TEXT_CHARS
    assert prepared.note.startswith("\n\n_Not used: huge.pdf (over 10 MB);")


async def test_without_a_fetcher_files_are_named_not_dropped() -> None:
    prepared = await prepare(None, [file("a.pdf", "application/pdf")])
    assert prepared.blocks == () and prepared.unused == (("a.pdf", "files can't be read here"),)


def png_of(width: int, height: int) -> bytes:
    """A PNG's signature and header chunk: enough to say its size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + header
        + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    )


def pdf_of(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_image_tokens_follow_the_pixel_size_as_the_api_scales_it() -> None:
    assert image_tokens(1000, 750) == 1000  # width × height / 750
    assert image_tokens(200, 200) == 54
    assert image_tokens(4000, 3000) == image_tokens(8000, 6000) == IMAGE_MAX_TOKENS  # scaled to ~1.15 MP
    assert image_tokens(3000, 200) == math.ceil(1568 * (200 * 1568 / 3000) / 750)  # long edge to 1,568 px
    assert image_tokens(-1, -1) == IMAGE_MAX_TOKENS  # a size that cannot be read counts as the ceiling


async def test_images_and_pdfs_carry_their_estimated_tokens() -> None:
    files = Files({"shot.png": png_of(1000, 750), "three.pdf": pdf_of(3), "big.pdf": pdf_of(PDF_MAX_PAGES + 1)})
    prepared = await prepare(
        files, [file("shot.png", "image/png"), file("three.pdf", "application/pdf"), file("big.pdf", "application/pdf")]
    )
    tokens = {b.name: b.tokens for b in prepared.blocks}
    assert tokens == {"shot.png": 1000, "three.pdf": 3 * PDF_PAGE_TOKENS}
    assert dict(prepared.unused) == {"big.pdf": f"over {PDF_MAX_PAGES} pages"}


async def test_what_does_not_fit_the_prompt_budget_is_named_in_the_note() -> None:
    log = "line of the build log\n" * 2000
    files = Files(
        {"one.pdf": pdf_of(1), "two.pdf": pdf_of(2), "shot.png": png_of(1000, 750), "build.log": log.encode()}
    )
    question = [file(n, m) for n, m in [("one.pdf", PDF), ("two.pdf", PDF), ("shot.png", "image/png")]]
    prepared = await prepare(files, question, [file("build.log", "text/plain")])
    prompt = build_prompt(
        question="what do these say?",
        history=[],
        sources=[],
        files=prepared.blocks,
        budget_tokens=6000,
        file_budget_tokens=6000,
    )
    sent = [f for t in prompt.turns for f in t.files]
    assert [f.name for f in sent] == ["one.pdf", "shot.png", "build.log"]  # two.pdf (6,000 tokens) would not fit
    assert sum(f.tokens for f in sent) <= 6000
    note = prepared.fitted(sent).note
    assert "two.pdf (too large for what I can read at once (about 6,000 tokens))" in note
    assert "build.log (only its first" in note and "characters fit)" in note
    assert "one.pdf" not in note and "shot.png" not in note


async def test_files_do_not_crowd_out_the_knowledge() -> None:
    """A document asked about is counted against the files' budget, so the passages still fit beside it."""
    from core.messages import Source

    prepared = await prepare(Files({"spec.pdf": pdf_of(5)}), [file("spec.pdf", PDF)])
    sources = [Source(i + 1, f"page {i}", f"kb://{i}", "a passage of the handbook " * 20) for i in range(3)]
    prompt = build_prompt(
        question="is this spec in line with our handbook?",
        history=[],
        sources=sources,
        files=prepared.blocks,
        budget_tokens=6000,
        file_budget_tokens=20_000,
    )
    assert [f.name for t in prompt.turns for f in t.files] == ["spec.pdf"]  # 15,000 tokens, more than 6,000
    assert [s.uri for s in prompt.sources] == ["kb://0", "kb://1", "kb://2"]
