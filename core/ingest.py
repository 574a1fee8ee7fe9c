"""Knowledge ingestion: load files and URLs, chunk by headings, hash, and hand chunks to the retriever.

Documents' metadata lives in the store; their chunks (and vectors) in the retriever. A document
is marked `ingesting` before its chunks are written and `ready` after, so a failure in between
leaves it `failed` with its chunks removed, never half-present.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import structlog
from bs4 import BeautifulSoup

from core.messages import Actor, WorkspaceRef
from core.retrieval.base import Chunk, Retriever, RetrieverUnavailable
from core.stores.base import AuditLog, DocumentRecord, DocumentStore, PermissionDenied

log = structlog.get_logger(__name__)

CHUNK_NAMESPACE = uuid.UUID("6b1f7d3e-2f7a-4c35-9a55-3f0f5b8e9c11")
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_BLOCKS = ("p", "li", "dt", "pre", "td", "blockquote")  # the text-bearing blocks kept from a page


class IngestError(Exception):
    """One source could not be ingested; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    uri: str
    title: str
    text: str  # Markdown-like: headings as `#` lines

    @property
    def content_hash(self) -> str:
        normalized = "\n".join(line.rstrip() for line in self.text.strip().splitlines())
        return hashlib.sha256(f"{self.title}\n{normalized}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Section:
    heading_path: tuple[str, ...]
    text: str


class ProgressCallback(Protocol):
    """How a UI follows ingestion (the CLI draws a rich progress bar); core stays UI-free."""

    def start(self, total: int) -> None: ...

    def advance(self, description: str) -> None: ...


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{self.chunks} chunks written",
        ]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


# -- loading ------------------------------------------------------------------------------------


def html_to_text(html: str) -> tuple[str, str]:
    """(title, Markdown-like text) with headings kept and navigation/script noise dropped."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "aside", "noscript", "form"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    lines: list[str] = []
    body = soup.body or soup
    for node in body.find_all([*_HTML_HEADINGS, *_HTML_BLOCKS]):
        if node.name in _HTML_BLOCKS and node.find_parent(_HTML_BLOCKS) is not None:
            continue  # already in the enclosing block's text (a list item's paragraph, say): not twice
        if node.name == "pre":
            # Fenced with its line breaks kept, so a preformatted "# a comment" line is not a heading.
            code = "\n".join(line.rstrip() for line in node.get_text().strip("\n").splitlines())
            if code.strip():
                lines.append("```\n" + code.replace("```", "'''") + "\n```")
            continue
        text = node.get_text(" ", strip=True)
        if not text:
            continue
        if node.name in _HTML_HEADINGS:
            lines.append(f"{'#' * int(node.name[1:])} {text}")
            title = title or text
        elif node.name == "li":
            lines.append(f"- {text}")
        else:
            lines.append(text)  # a definition list's term (an option's name) too, before its description
    return title, "\n\n".join(lines)


def pdf_to_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def _decode_text(data: bytes, name: str) -> str:
    if b"\x00" in data[:8192]:
        raise IngestError(f"{name}: looks like a binary file, not text (supported: {', '.join(sorted(SUPPORTED))})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(f"{name}: is not UTF-8 text") from None


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return match.group(2)
    return fallback


def parse_bytes(data: bytes, *, uri: str, name: str, kind: str) -> LoadedDocument:
    """`kind` is 'text', 'html' or 'pdf'."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise IngestError(f"{name}: larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
    stem = Path(name).stem or name
    if kind == "pdf":
        if not data.startswith(b"%PDF"):
            raise IngestError(f"{name}: not a PDF file")
        try:
            text = pdf_to_text(data)
        except Exception as exc:
            raise IngestError(f"{name}: could not read the PDF ({exc})") from None
        return LoadedDocument(uri, stem, text)
    decoded = _decode_text(data, name)
    if kind == "html":
        title, text = html_to_text(decoded)
        return LoadedDocument(uri, title or stem, text)
    return LoadedDocument(uri, _markdown_title(decoded, stem), decoded)


def _kind_for_suffix(suffix: str) -> str | None:
    suffix = suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    return None


def _read_file(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    return path.read_bytes(), path.resolve().as_uri()


async def load_file(path: Path) -> LoadedDocument:
    data, uri = await asyncio.to_thread(_read_file, path)
    kind = _kind_for_suffix(path.suffix)
    if kind is None:
        if data.startswith(b"%PDF"):
            kind = "pdf"
        else:
            _decode_text(data, path.name)  # refuses binaries with a clear message
            kind = "text"
    return await asyncio.to_thread(parse_bytes, data, uri=uri, name=path.name, kind=kind)


async def load_url(url: str, client: httpx.AsyncClient) -> LoadedDocument:
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise IngestError(f"{url}: the server answered {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for piece in response.aiter_bytes():
                size += len(piece)
                if size > MAX_DOCUMENT_BYTES:
                    raise IngestError(f"{url}: larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
                chunks.append(piece)
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    except httpx.HTTPError as exc:
        raise IngestError(f"{url}: could not fetch it ({exc.__class__.__name__})") from None
    data = b"".join(chunks)
    name = url.rstrip("/").rsplit("/", 1)[-1] or url
    if content_type == "application/pdf" or data.startswith(b"%PDF"):
        kind = "pdf"
    elif content_type in {"text/html", "application/xhtml+xml"}:
        kind = "html"
    elif content_type.startswith("text/") or content_type in {"application/json", ""}:
        kind = _kind_for_suffix(Path(name).suffix) or "text"
    else:
        raise IngestError(f"{url}: unsupported content type {content_type}")
    return await asyncio.to_thread(parse_bytes, data, uri=url, name=name, kind=kind)


def expand_sources(sources: Sequence[str]) -> list[str]:
    """Folders become the supported files below them, in a stable order; URLs pass through."""
    expanded: list[str] = []
    for source in sources:
        if re.match(r"^https?://", source):
            expanded.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            expanded.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUPPORTED)
        else:
            expanded.append(source)
    return expanded


# -- chunking -----------------------------------------------------------------------------------


def sections(text: str) -> list[Section]:
    """Split Markdown-like text at headings, keeping each section's heading path."""
    path: list[tuple[int, str]] = []
    result: list[Section] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            result.append(Section(tuple(h for _, h in path), body))
        buffer.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level]
            path.append((level, match.group(2)))
        else:
            buffer.append(line)
    flush()
    return result


def chunk_id(workspace_key: str, document_uri: str, index: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{workspace_key}|{document_uri}|{index}"))


def chunk_document(
    doc: LoadedDocument, workspace_key: str, *, words_per_chunk: int = 200, overlap: int = 40
) -> list[Chunk]:
    """About `words_per_chunk` words a chunk, overlapping by `overlap`, never across a section,
    each carrying its heading path (the title is kept separately on every chunk)."""
    chunks: list[Chunk] = []
    step = max(1, words_per_chunk - overlap)
    for section in sections(doc.text):
        heading = " > ".join(h for h in section.heading_path if h != doc.title)
        words = section.text.split()
        start = 0
        while start < len(words):
            window = words[start : start + words_per_chunk]
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(workspace_key, doc.uri, index),
                    document_uri=doc.uri,
                    title=doc.title,
                    heading=heading,
                    text=" ".join(window),
                    index=index,
                )
            )
            if start + words_per_chunk >= len(words):
                break
            start += step
    return chunks


# -- the ingestor -------------------------------------------------------------------------------


class IngestStore(DocumentStore, AuditLog, Protocol):
    pass


class Ingestor:
    def __init__(self, store: IngestStore, retriever: Retriever, *, timeout_s: float = 30.0) -> None:
        self.store = store
        self.retriever = retriever
        self.timeout_s = timeout_s

    async def ingest(
        self,
        ws: WorkspaceRef,
        actor: Actor,
        sources: Sequence[str],
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        report = IngestReport()
        items = await asyncio.to_thread(expand_sources, sources)
        if progress is not None:
            progress.start(len(items))
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for source in items:
                try:
                    await self._one(ws, actor, source, client, report)
                except IngestError as exc:
                    report.failed.append((source, str(exc)))
                    log.warning("ingest.failed", source=source, error=str(exc))
                if progress is not None:
                    progress.advance(source)
        return report

    async def _one(
        self, ws: WorkspaceRef, actor: Actor, source: str, client: httpx.AsyncClient, report: IngestReport
    ) -> None:
        is_url = bool(re.match(r"^https?://", source))
        doc = await (load_url(source, client) if is_url else load_file(Path(source)))
        digest = doc.content_hash
        existing = await self.store.document(ws, doc.uri)
        if existing is not None and existing.content_hash == digest and existing.status == "ready":
            report.unchanged.append(doc.uri)
            return
        chunks = chunk_document(doc, ws.key)
        record = DocumentRecord(doc.uri, doc.title[:500], digest, len(chunks), "ingesting")
        # The store checks manage_knowledge here, before any chunk is written.
        await self.store.put_document(ws, actor, record)
        try:
            await self.retriever.replace_document(ws, doc.uri, chunks)
        except (RetrieverUnavailable, Exception) as exc:
            if isinstance(exc, PermissionDenied):
                raise
            try:
                await self.retriever.delete_document(ws, doc.uri)
            except Exception as cleanup:
                log.warning("ingest.cleanup_failed", uri=doc.uri, error=repr(cleanup))
            await self.store.put_document(ws, actor, DocumentRecord(doc.uri, record.title, "", 0, "failed"))
            raise IngestError(f"{source}: the knowledge store failed while writing ({exc})") from exc
        await self.store.put_document(ws, actor, DocumentRecord(doc.uri, record.title, digest, len(chunks), "ready"))
        (report.updated if existing is not None else report.added).append(doc.uri)
        report.chunks += len(chunks)

    async def remove(self, ws: WorkspaceRef, actor: Actor, uri: str) -> None:
        await self.store.delete_document(ws, actor, uri)
        await self.retriever.delete_document(ws, uri)
