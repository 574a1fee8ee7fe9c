"""Markdown (what the LLM and the core write) -> Slack mrkdwn (what a section block shows).

Parsed with markdown-it-py (CommonMark + GFM tables and strikethrough) rather than regexes,
so half-written Markdown in the middle of a stream still converts to something sensible.
Slack has no headings or tables: headings become bold lines, tables become aligned code blocks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

_MD = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

# User and channel references survive conversion (the admin replies name people and channels);
# special mentions (<!here>, <!channel>, <!subteam^…>) do not, so an answer can never ping a crowd.
_SLACK_REF = re.compile(r"&lt;([@#][UWBC][A-Z0-9]+(?:\|[^&<>]*)?)&gt;")
_BULLETS = ("•", "◦", "▪")


def escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_REF.sub(r"<\1>", escaped)


def to_mrkdwn(markdown: str) -> str:
    blocks, _ = _blocks(_MD.parse(markdown), 0, None, depth=0)
    return "\n\n".join(b for b in blocks if b).strip("\n")


def has_table(markdown: str) -> bool:
    """Whether the Markdown holds a GFM table (which Slack would not render as one)."""
    return "|" in markdown and any(tok.type == "table_open" for tok in _MD.parse(markdown))


def link(url: str, label: str) -> str:
    """A Slack link; the label is escaped, and `|` / `>` cannot end it early."""
    safe_url = url.replace("&", "&amp;").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
    safe_label = escape(label).replace("|", "¦")
    return f"<{safe_url}|{safe_label}>" if safe_label and label != url else f"<{safe_url}>"


def _blocks(tokens: Sequence[Token], i: int, close: str | None, *, depth: int) -> tuple[list[str], int]:
    out: list[str] = []
    while i < len(tokens):
        tok = tokens[i]
        if close is not None and tok.type == close:
            return out, i + 1
        if tok.type == "paragraph_open":
            out.append(_inline(tokens[i + 1].children or []))
            i += 3
        elif tok.type == "heading_open":
            text = _inline(tokens[i + 1].children or [], plain_strong=True)
            out.append(f"*{text}*" if text.strip() else "")
            i += 3
        elif tok.type in {"fence", "code_block"}:
            out.append(_code(tok.content))
            i += 1
        elif tok.type == "hr":
            out.append("──────────")
            i += 1
        elif tok.type == "blockquote_open":
            inner, i = _blocks(tokens, i + 1, "blockquote_close", depth=depth)
            text = "\n\n".join(inner)
            out.append("\n".join(f"> {line}" if line else ">" for line in text.split("\n")))
        elif tok.type in {"bullet_list_open", "ordered_list_open"}:
            text, i = _list(tokens, i, depth=depth)
            out.append(text)
        elif tok.type == "table_open":
            text, i = _table(tokens, i)
            out.append(text)
        elif tok.type == "html_block":
            out.append(escape(tok.content.rstrip("\n")))
            i += 1
        else:
            i += 1
    return out, i


def _list(tokens: Sequence[Token], i: int, *, depth: int) -> tuple[str, int]:
    opener = tokens[i]
    ordered = opener.type == "ordered_list_open"
    close = "ordered_list_close" if ordered else "bullet_list_close"
    number = int(opener.attrGet("start") or 1) if ordered else 0
    bullet = _BULLETS[min(depth, len(_BULLETS) - 1)]
    lines: list[str] = []
    i += 1
    while i < len(tokens) and tokens[i].type != close:
        if tokens[i].type != "list_item_open":
            i += 1
            continue
        inner, i = _blocks(tokens, i + 1, "list_item_close", depth=depth + 1)
        marker = f"{number}. " if ordered else f"{bullet} "
        number += 1
        body = "\n".join(inner).split("\n") if inner else [""]
        lines.append(marker + body[0])
        lines.extend(("    " + line) if line else "" for line in body[1:])
    return "\n".join(lines), i + 1


def _table(tokens: Sequence[Token], i: int) -> tuple[str, int]:
    """A GFM table as an aligned, monospaced block: Slack renders no tables."""
    rows: list[list[str]] = []
    header_rows = 0
    in_head = False
    i += 1
    while i < len(tokens) and tokens[i].type != "table_close":
        tok = tokens[i]
        if tok.type == "thead_open":
            in_head = True
        elif tok.type == "thead_close":
            in_head = False
        elif tok.type == "tr_open":
            rows.append([])
            header_rows += in_head
        elif tok.type == "inline" and rows:
            rows[-1].append(_plain(tok.children or []))
        i += 1
    width = max((len(r) for r in rows), default=0)
    rows = [r + [""] * (width - len(r)) for r in rows]
    sizes = [max(len(r[c]) for r in rows) for c in range(width)]
    lines = [" | ".join(cell.ljust(sizes[c]) for c, cell in enumerate(row)).rstrip() for row in rows]
    if header_rows and lines:
        lines.insert(header_rows, "-+-".join("-" * s for s in sizes))
    return _code("\n".join(lines)), i + 1


def _code(content: str) -> str:
    body = escape(content.rstrip("\n"))
    return f"```\n{body}\n```"


def _inline(children: Sequence[Token], *, plain_strong: bool = False) -> str:
    out: list[str] = []
    links: list[tuple[str, int]] = []  # (href, position in `out` where the label starts)
    for tok in children:
        kind = tok.type
        if kind == "text":
            out.append(escape(tok.content))
        elif kind in {"softbreak", "hardbreak"}:
            out.append("\n")
        elif kind in {"strong_open", "strong_close"}:
            out.append("" if plain_strong else "*")
        elif kind in {"em_open", "em_close"}:
            out.append("_")
        elif kind in {"s_open", "s_close"}:
            out.append("~")
        elif kind == "code_inline":
            out.append(f"`{escape(tok.content)}`")
        elif kind == "link_open":
            links.append((str(tok.attrGet("href") or ""), len(out)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = _unescape("".join(out[start:]))
            del out[start:]
            out.append(link(href, label) if href else escape(label))
        elif kind == "image":
            alt = _plain(tok.children or []) or "image"
            out.append(link(str(tok.attrGet("src") or ""), alt))
        elif kind in {"html_inline", "html_block"}:
            out.append(escape(tok.content))
    return "".join(out)


def _plain(children: Sequence[Token]) -> str:
    """Text only (for table cells and alt text): code blocks show markers literally."""
    parts: list[str] = []
    for tok in children:
        if tok.type in {"text", "code_inline", "html_inline"}:
            parts.append(tok.content)
        elif tok.type in {"softbreak", "hardbreak"}:
            parts.append(" ")
        elif tok.type == "image":
            parts.append(_plain(tok.children or []))
    return "".join(parts)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
