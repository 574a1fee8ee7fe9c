"""Discord's Markdown is close to ours; tables are not, so they become code blocks."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.messages import Source

_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def tables_to_code(text: str) -> str:
    """Markdown tables (a header row, a --- separator, rows) become aligned monospace blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and _TABLE_ROW.match(line) and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            rows = [line]
            j = i + 2
            while j < len(lines) and _TABLE_ROW.match(lines[j]):
                rows.append(lines[j])
                j += 1
            cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
            widths = [max(len(r[k]) if k < len(r) else 0 for r in cells) for k in range(max(map(len, cells)))]
            out.append("```")
            for n, row in enumerate(cells):
                out.append("  ".join(cell.ljust(widths[k]) for k, cell in enumerate(row)).rstrip())
                if n == 0:
                    out.append("  ".join("-" * w for w in widths))
            out.append("```")
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def sources_text(sources: Sequence[Source], *, limit: int = 4096) -> str:
    """Sources as Markdown links; <> around a URL keeps Discord from unfurling it."""
    lines = []
    for s in sources:
        target = f"[{s.title}](<{s.uri}>)" if s.uri.startswith(("http://", "https://")) else f"{s.title} ({s.uri})"
        lines.append(f"[{s.index}] {target}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"
