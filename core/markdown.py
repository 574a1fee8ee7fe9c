"""Splitting Markdown into platform messages, keeping code fences valid across messages.

Surfaces import this without the streaming engine; see `split_parts` for the exact rejoin rule.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Part:
    """One platform message of a split text: `text == reopen + body + close`.

    `body` is a slice of the original text; `reopen` and `close` are the fence lines the splitter
    added so that every message renders its code block on its own.
    """

    body: str
    reopen: str = ""  # "<opening fence line>\n" when the body starts inside a code fence
    close: str = ""  # "<fence>" (body ends with "\n") or "\n<fence>" when the body ends inside one

    @property
    def text(self) -> str:
        return self.reopen + self.body + self.close


@dataclass(frozen=True, slots=True)
class _Fence:
    char: str  # "`" or "~"
    length: int  # length of the marker run
    opener: str  # the opening line, stripped

    @property
    def closer(self) -> str:
        return self.char * self.length


def _fence_line(line: str, open_fence: _Fence | None) -> _Fence | None:
    """The fence state after `line`, given the state before it.

    A line opens a fence when, stripped, it starts with three or more backticks or tildes; it closes
    the open fence when, stripped, it is only that fence's character, at least as many as opened it.
    """
    stripped = line.strip()
    if open_fence is None:
        if stripped.startswith("```") or stripped.startswith("~~~"):
            char = stripped[0]
            run = len(stripped) - len(stripped.lstrip(char))
            return _Fence(char, run, stripped)
        return None
    if len(stripped) >= open_fence.length and stripped == open_fence.char * len(stripped):
        return None
    return open_fence


def _is_fence_line(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("```") or stripped.startswith("~~~")


class _FenceMap:
    """The fence state at every line start of a text, so the state at any cut is a lookup."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        self.before: list[_Fence | None] = [None]
        state: _Fence | None = None
        pos = 0
        while True:
            nl = text.find("\n", pos)
            line = text[pos:] if nl < 0 else text[pos:nl]
            if line.lstrip().startswith(("```", "~~~")) or state is not None:
                state = _fence_line(line, state)
            if nl < 0:
                break
            pos = nl + 1
            self.starts.append(pos)
            self.before.append(state)
        self.end = state  # after the whole text, the last line counted as complete
        self.length = len(text)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def at(self, pos: int) -> _Fence | None:
        """The state at a cut: a line cut in the middle belongs to the part where it ends."""
        if pos >= self.length:
            return self.end
        return self.before[self.line_of(pos)]


def split_parts(text: str, limit: int) -> list[Part]:
    """Split Markdown into platform messages of at most `limit` characters each.

    Cuts fall, in order of preference, after a blank line (in the second half of the window), after
    a line break, after a space (past a quarter of the window), else mid-line. A part that ends
    inside a code fence gets a closing fence line (`close`), and the next part starts with the
    opening line again (`reopen`); the last part is closed too, so a reply cut mid-block renders.

    Rejoin rule (exact, property-tested): ``"".join(p.body for p in parts) == text``, where each
    message is ``p.text == p.reopen + p.body + p.close``. In words: drop from each message the
    leading reopen line (``opener + "\\n"``) and the trailing close (``fence`` after a body that
    ends in a line break, else ``"\\n" + fence``), then concatenate. Line breaks at a cut stay at
    the end of the earlier part, where platforms do not show them.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    if len(text) <= limit and "```" not in text and "~~~" not in text:
        return [Part(text)]
    fences = _FenceMap(text)
    parts: list[Part] = []
    start = 0
    while True:
        open_at_start = fences.at(start) if start > 0 else None
        reopen = _reopen_line(open_at_start, limit)
        budget = limit - len(reopen)
        while True:
            cut = _choose_cut(text, start, budget, fences)
            body = text[start:cut]
            close = _close_for(fences.at(cut), body, limit) if cut > start else ""
            over = len(reopen) + len(body) + len(close) - limit
            if over <= 0:
                break
            budget -= over
            if budget < 1:  # a fence too long to repeat: give up on fences for this part
                reopen, close, budget = "", "", limit
                cut = _choose_cut(text, start, budget, fences)
                body = text[start:cut]
                break
        parts.append(Part(body, reopen, close))
        if cut >= len(text):
            return parts
        start = cut


def _reopen_line(fence: _Fence | None, limit: int) -> str:
    if fence is None:
        return ""
    line = fence.opener if len(fence.opener) <= limit // 4 else fence.closer
    return line + "\n"


def _close_for(fence: _Fence | None, body: str, limit: int) -> str:
    if fence is None:
        return ""
    return fence.closer if body.endswith("\n") else "\n" + fence.closer


def _choose_cut(text: str, start: int, budget: int, fences: _FenceMap) -> int:
    end = start + budget
    if end >= len(text):
        return len(text)
    para = text.rfind("\n\n", start, end)
    if para >= 0 and para + 2 - start > budget // 2:
        return para + 2
    line = text.rfind("\n", start, end)
    if line >= 0 and line + 1 - start > budget // 4:
        return line + 1
    space = text.rfind(" ", start, end)
    cut = space + 1 if space >= 0 and space + 1 - start > budget // 4 else end
    # A mid-line cut must not leave either half looking like a fence line on its own message:
    # never cut inside a fence line, and never so that the rest of the line starts like one.
    index = fences.line_of(cut)
    line_start = fences.starts[index]
    if line_start < cut:
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        if _is_fence_line(text[line_start:line_end]):
            if line_start > start:
                return line_start
        else:
            while cut > start + 1 and cut > line_start and _is_fence_line(text[cut:line_end]):
                cut -= 1
    return cut


def split_markdown(text: str, limit: int) -> list[str]:
    """The message texts of `split_parts` (each at most `limit` characters, fences balanced)."""
    return [part.text for part in split_parts(text, limit)]


def join_parts(parts: Sequence[Part]) -> str:
    """The original text of a split (see the rejoin rule in `split_parts`)."""
    return "".join(part.body for part in parts)
