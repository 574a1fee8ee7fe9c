"""Files attached to a question (or to messages in its thread) as document and image blocks for the model.

Which files are used, and how much of them, is decided here and only here: the kinds the model reads
(text and Markdown, PDF, PNG/JPEG/GIF/WebP images), the most files per question, bytes per file and in
all, and the download time. The adapter fetches through its platform's own URL with its credentials
(`AttachmentFetcher`). Each block carries its estimated prompt tokens (core.tokens: images by their
pixel size, PDFs by their pages), so the prompt counts files against its budget like any other text;
everything not used (here, or by the prompt for want of room) is named in a note under the reply.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal, Protocol

import httpx
import imagesize
import structlog
from pypdf import PdfReader

from core.context import Attachment
from core.tokens import PDF_MAX_PAGES, estimate_tokens, image_tokens, pdf_tokens

log = structlog.get_logger(__name__)

MAX_FILES = 5  # per question, the question's own files first, then the thread's newest
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # the Messages API's limit per image
MAX_TOTAL_BYTES = 24 * 1024 * 1024  # under the API's 32 MB request limit once base64-encoded
MAX_TEXT_CHARS = 60_000  # a text file beyond this is cut (and the note says so)
DOWNLOAD_TIMEOUT_S = 15.0

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown", "text/csv", "application/json"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".log", ".csv", ".json", ".yaml", ".yml"})
PDF = "application/pdf"

BlockKind = Literal["text", "pdf", "image"]


@dataclass(frozen=True, slots=True)
class FileBlock:
    """One file for the model: text (as is) or base64 data with its media type."""

    kind: BlockKind
    name: str
    media_type: str
    data: str
    tokens: int = 0  # its estimated prompt tokens (core.tokens)


class AttachmentError(Exception):
    """The file could not be downloaded within the limits; the message is safe to show."""


class AttachmentFetcher(Protocol):
    async def fetch(self, attachment: Attachment, *, max_bytes: int) -> bytes:
        """The file's bytes, at most `max_bytes` (AttachmentError beyond, or on any failure)."""
        ...


@dataclass(frozen=True, slots=True)
class Prepared:
    blocks: tuple[FileBlock, ...]
    unused: tuple[tuple[str, str], ...]  # (file name, why not)

    def fitted(self, sent: Sequence[FileBlock]) -> Prepared:
        """What the prompt sent of these blocks (core.prompt fits them to its budget): the rest, and the
        text files it cut short, are named in the note."""
        cut = {b.name: b for b in sent}
        unused = list(self.unused)
        for block in self.blocks:
            if block in sent:
                continue
            if block.name in cut:
                unused.append((block.name, f"only its first {len(cut[block.name].data):,} characters fit"))
            else:
                unused.append((block.name, f"too large for what I can read at once (about {block.tokens:,} tokens)"))
        return replace(self, blocks=tuple(sent), unused=tuple(unused))

    @property
    def note(self) -> str:
        if not self.unused:
            return ""
        names = "; ".join(f"{name} ({why})" for name, why in self.unused)
        return f"\n\n_Not used: {names}._"


def kind_of(attachment: Attachment) -> BlockKind | None:
    media = attachment.media_type.split(";")[0].strip().lower()
    if media in IMAGE_TYPES:
        return "image"
    if media == PDF:
        return "pdf"
    if (
        media in TEXT_TYPES
        or media.startswith("text/")
        or PurePosixPath(attachment.name.lower()).suffix in TEXT_SUFFIXES
    ):
        return "text"
    return None


async def prepare(
    fetcher: AttachmentFetcher | None,
    question_files: Sequence[Attachment],
    thread_files: Sequence[Attachment] = (),
) -> Prepared:
    """Download what fits the limits (concurrently) and turn it into blocks; name the rest."""
    unused: list[tuple[str, str]] = []
    chosen: list[tuple[Attachment, BlockKind, int]] = []
    total = 0
    for attachment in [*question_files, *thread_files]:
        kind = kind_of(attachment)
        limit = MAX_IMAGE_BYTES if kind == "image" else MAX_FILE_BYTES
        if kind is None:
            unused.append((attachment.name, "a file type I can't read"))
        elif fetcher is None:
            unused.append((attachment.name, "files can't be read here"))
        elif attachment.size > limit:
            unused.append((attachment.name, f"over {limit // (1024 * 1024)} MB"))
        elif len(chosen) >= MAX_FILES:
            unused.append((attachment.name, f"only {MAX_FILES} files are read per question"))
        elif total + attachment.size > MAX_TOTAL_BYTES:
            unused.append((attachment.name, "too much in all"))
        else:
            chosen.append((attachment, kind, limit))
            total += attachment.size
    if not chosen or fetcher is None:
        return Prepared((), tuple(unused))
    results = await asyncio.gather(*(_fetch(fetcher, a, limit) for a, _, limit in chosen))
    blocks: list[FileBlock] = []
    for (attachment, kind, _), result in zip(chosen, results, strict=True):
        if isinstance(result, str):
            unused.append((attachment.name, result))
            continue
        if kind == "text":
            text = result.decode("utf-8", errors="replace")
            if len(text) > MAX_TEXT_CHARS:
                text = text[:MAX_TEXT_CHARS]
                unused.append((attachment.name, f"only its first {MAX_TEXT_CHARS:,} characters were read"))
            blocks.append(FileBlock("text", attachment.name, "text/plain", text, estimate_tokens(text)))
            continue
        if kind == "pdf":
            pages = await asyncio.to_thread(pdf_pages, result)
            if pages > PDF_MAX_PAGES:
                unused.append((attachment.name, f"over {PDF_MAX_PAGES} pages"))
                continue
            media, tokens = PDF, pdf_tokens(pages)
        else:
            media = attachment.media_type.split(";")[0].strip().lower()
            tokens = image_tokens(*image_size(result))
        blocks.append(FileBlock(kind, attachment.name, media, base64.b64encode(result).decode("ascii"), tokens))
    return Prepared(tuple(blocks), tuple(unused))


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the image's header; (-1, -1) when it cannot be read."""
    try:
        width, height = imagesize.get(io.BytesIO(data))
    except Exception:  # a truncated or unusual header: counted at the ceiling
        return -1, -1
    return int(width), int(height)


_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_pages(data: bytes) -> int:
    """A PDF's page count (pypdf reads its page tree; a file it cannot read: its page objects counted)."""
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except Exception:  # malformed or unusual: the API judges it; the estimate still needs a number
        return max(1, len(_PAGE.findall(data)))


async def _fetch(fetcher: AttachmentFetcher, attachment: Attachment, limit: int) -> bytes | str:
    """The bytes, or why not (a short reason for the note)."""
    try:
        async with asyncio.timeout(DOWNLOAD_TIMEOUT_S):
            return await fetcher.fetch(attachment, max_bytes=limit)
    except TimeoutError:
        return "the download took too long"
    except AttachmentError as exc:
        log.warning("attachments.fetch_failed", name=attachment.name, error=str(exc))
        return str(exc)


async def download(client: httpx.AsyncClient, url: str, *, headers: dict[str, str], max_bytes: int) -> bytes:
    """GET `url`, streaming, refusing more than `max_bytes`; any failure is an AttachmentError."""
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise AttachmentError(f"the download failed ({response.status_code})")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise AttachmentError(f"over {max_bytes // (1024 * 1024)} MB")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > max_bytes:
                    raise AttachmentError(f"over {max_bytes // (1024 * 1024)} MB")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise AttachmentError("the download failed") from exc
