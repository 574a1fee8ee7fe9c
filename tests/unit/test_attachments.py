"""The attachment rules: kinds, size and count limits, and a note naming everything not used."""

from __future__ import annotations

from core.attachments import MAX_FILE_BYTES, MAX_FILES, MAX_IMAGE_BYTES, MAX_TEXT_CHARS, AttachmentError, prepare
from core.messages import Attachment


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
