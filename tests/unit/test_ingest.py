"""Ingestion: loaders, heading-aware chunking, content hashes, and the Ingestor on the embedded parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from core.ingest import (
    IngestError,
    Ingestor,
    LoadedDocument,
    chunk_document,
    chunk_id,
    html_to_text,
    load_file,
    parse_bytes,
    sections,
)
from core.messages import Actor, Platform, PlatformFacts, WorkspaceRef
from core.retrieval.fts import FtsRetriever
from core.stores.base import PermissionDenied
from core.stores.sqlite import SqliteStore
from tests.fakes.loopback import serve

WS = WorkspaceRef(Platform.SLACK, "T-ingest")
CURATOR = Actor("U-admin", PlatformFacts(is_admin=True))


def words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def test_sections_keep_heading_paths_and_ignore_headings_in_code() -> None:
    text = "# Guide\nintro\n## Setup\nsteps\n```\n# not a heading\n```\n### Linux\napt\n## Usage\nrun it"
    found = [(s.heading_path, s.text.splitlines()[0]) for s in sections(text)]
    assert found == [
        (("Guide",), "intro"),
        (("Guide", "Setup"), "steps"),
        (("Guide", "Setup", "Linux"), "apt"),
        (("Guide", "Usage"), "run it"),
    ]


def test_chunks_are_about_200_words_with_overlap_within_a_section() -> None:
    doc = LoadedDocument("file:///g.md", "Guide", f"# Guide\n## Long\n{words(500)}\n## Short\n{words(30, 's')}")
    chunks = chunk_document(doc, WS.key)
    long = [c for c in chunks if c.heading == "Long"]
    assert [len(c.text.split()) for c in long] == [200, 200, 180]
    assert long[0].text.split()[-40:] == long[1].text.split()[:40]  # 40 words of overlap
    short = [c for c in chunks if c.heading == "Short"]
    assert len(short) == 1 and short[0].text.startswith("s0")
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.title == "Guide" for c in chunks)


def test_chunk_ids_are_deterministic_and_scoped() -> None:
    doc = LoadedDocument("file:///g.md", "G", words(300))
    first = [c.id for c in chunk_document(doc, WS.key)]
    assert first == [c.id for c in chunk_document(doc, WS.key)]
    assert first[0] == chunk_id(WS.key, "file:///g.md", 0)
    assert first[0] != chunk_id("slack:other", "file:///g.md", 0)
    assert len(set(first)) == len(first)


def test_content_hash_ignores_trailing_whitespace_but_not_content() -> None:
    a = LoadedDocument("u", "T", "line one  \nline two\n")
    b = LoadedDocument("u", "T", "line one\nline two")
    c = LoadedDocument("u", "T", "line one\nline 2")
    assert a.content_hash == b.content_hash != c.content_hash


def test_html_drops_noise_and_keeps_headings() -> None:
    title, text = html_to_text(
        "<html><head><title>Handbook</title><script>x()</script></head><body><nav>menu</nav>"
        "<h1>Welcome</h1><p>Hello there.</p><h2>Rules</h2><ul><li>Be kind</li></ul></body></html>"
    )
    assert title == "Handbook"
    assert text.splitlines() == ["# Welcome", "", "Hello there.", "", "## Rules", "", "- Be kind"]
    assert "menu" not in text and "x()" not in text


def test_html_keeps_terms_and_code_and_says_nothing_twice() -> None:
    # As Asciidoc renders a manual page: options as a definition list, paragraphs inside list items,
    # and an example whose first line is a shell comment.
    title, text = html_to_text(
        "<html><body><h1>git-config(1)</h1><h2>OPTIONS</h2>"
        "<dl><dt>--no-ff</dt><dd><p>Create a merge commit in all cases.</p></dd></dl>"
        "<ul><li><p>Stage the edits.</p></li></ul>"
        "<h2>EXAMPLES</h2><pre># Core variables\n[core]\n\tfilemode = false</pre><p>After the example.</p>"
        "</body></html>"
    )
    assert title == "git-config(1)"
    assert "--no-ff" in text and text.count("Stage the edits.") == 1
    found = sections(text)
    assert [s.heading_path for s in found] == [
        ("git-config(1)", "OPTIONS"),
        ("git-config(1)", "EXAMPLES"),
    ]
    assert "# Core variables\n[core]\n\tfilemode = false" in found[1].text
    assert "After the example." in found[1].text


def _pdf_with_text(text: str) -> bytes:
    """A minimal one-page PDF whose content stream draws `text` (what pypdf extracts)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_text_is_extracted() -> None:
    doc = parse_bytes(_pdf_with_text("Expense reports are due monthly"), uri="u", name="policy.pdf", kind="pdf")
    assert "Expense reports are due monthly" in doc.text
    assert doc.title == "policy"


async def test_binary_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    blob = tmp_path / "photo.jpg"
    blob.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    with pytest.raises(IngestError, match=r"photo\.jpg: looks like a binary file"):
        await load_file(blob)
    latin = tmp_path / "old.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8"):
        await load_file(latin)
    with pytest.raises(IngestError, match="no such file"):
        await load_file(tmp_path / "missing.md")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, FtsRetriever, Ingestor]]:
    store = await SqliteStore.open(tmp_path / "s.sqlite")
    retriever = await FtsRetriever.open(tmp_path / "k.sqlite")
    yield store, retriever, Ingestor(store, retriever)
    await retriever.close()
    await store.close()


async def test_reingest_unchanged_does_nothing_and_changed_replaces(
    parts: tuple[SqliteStore, FtsRetriever, Ingestor], tmp_path: Path
) -> None:
    store, retriever, ingestor = parts
    doc = tmp_path / "vpn.md"
    doc.write_text("# VPN\nThe wireguard profile expires after ninety days.\n")
    first = await ingestor.ingest(WS, CURATOR, [str(doc)])
    assert (len(first.added), first.chunks) == (1, 1)
    again = await ingestor.ingest(WS, CURATOR, [str(doc)])
    assert (len(again.unchanged), again.chunks) == (1, 0)
    doc.write_text("# VPN\nThe openvpn profile never expires.\n")
    changed = await ingestor.ingest(WS, CURATOR, [str(doc)])
    assert len(changed.updated) == 1
    assert await retriever.search(WS, "wireguard", k=3) == []
    assert (await retriever.search(WS, "openvpn", k=3))[0].chunk.title == "VPN"
    record = await store.document(WS, doc.resolve().as_uri())
    assert record is not None and record.status == "ready" and record.chunk_count == 1


async def test_a_member_cannot_ingest_and_nothing_is_written(
    parts: tuple[SqliteStore, FtsRetriever, Ingestor], tmp_path: Path
) -> None:
    store, retriever, ingestor = parts
    doc = tmp_path / "secret.md"
    doc.write_text("# Plan\nthe takeover plan")
    with pytest.raises(PermissionDenied):
        await ingestor.ingest(WS, Actor("U-member"), [str(doc)])
    assert await retriever.search(WS, "takeover plan", k=3) == []
    assert await store.documents(WS) == []


async def test_folders_expand_and_bad_files_are_reported_not_fatal(
    parts: tuple[SqliteStore, FtsRetriever, Ingestor], tmp_path: Path
) -> None:
    _, retriever, ingestor = parts
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("# A\nalpha content")
    (tmp_path / "docs" / "sub" / "b.txt").write_text("beta content")
    (tmp_path / "docs" / "skip.bin").write_bytes(b"\x00\x01")  # not a supported suffix: not picked up
    report = await ingestor.ingest(WS, CURATOR, [str(tmp_path / "docs"), str(tmp_path / "nope.md")])
    assert len(report.added) == 2
    assert [source for source, _ in report.failed] == [str(tmp_path / "nope.md")]
    assert (await retriever.search(WS, "beta", k=1))[0].chunk.title == "b"


async def test_urls_are_fetched_and_typed_by_content_type(parts: tuple[SqliteStore, FtsRetriever, Ingestor]) -> None:
    _, retriever, ingestor = parts

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><title>Wiki</title><body><h1>Wiki</h1><p>The staging cluster lives in Frankfurt.</p></body>",
            content_type="text/html",
        )

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n", content_type="image/png")

    app = web.Application()
    app.router.add_get("/wiki", page)
    app.router.add_get("/logo.png", image)
    runner, base = await serve(app)
    try:
        report = await ingestor.ingest(WS, CURATOR, [f"{base}/wiki", f"{base}/logo.png", f"{base}/missing"])
    finally:
        await runner.cleanup()
    assert report.added == [f"{base}/wiki"]
    errors = dict(report.failed)
    assert "unsupported content type image/png" in errors[f"{base}/logo.png"]
    assert "answered 404" in errors[f"{base}/missing"]
    hit = (await retriever.search(WS, "staging cluster", k=1))[0]
    assert hit.chunk.document_uri == f"{base}/wiki" and hit.chunk.title == "Wiki"
