"""Splitting Markdown into platform messages, keeping code fences valid across messages.

Surfaces import this without the streaming engine; see `split_parts` for the exact rejoin rule.
"""

from __future__ import annotations

import bisect
import itertools
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
    return _split_from(text, _FenceMap(text), 0, limit, floor=0)


def _split_from(text: str, fences: _FenceMap, start: int, limit: int, *, floor: int) -> list[Part]:
    """The parts of text[start:], the first cut at `floor` or later."""
    parts: list[Part] = []
    while True:
        open_at_start = fences.at(start) if start > 0 else None
        reopen = _reopen_line(open_at_start, limit)
        budget = limit - len(reopen)
        while True:
            cut = _choose_cut(text, start, budget, fences, floor)
            body = text[start:cut]
            close = _close_for(fences.at(cut), body, limit) if cut > start else ""
            over = len(reopen) + len(body) + len(close) - limit
            if over <= 0 or cut <= floor:
                break
            budget -= over
            if budget < 1:  # a fence too long to repeat: give up on fences for this part
                reopen, close, budget = "", "", limit
                cut = _choose_cut(text, start, budget, fences, floor)
                body = text[start:cut]
                break
        parts.append(Part(body, reopen, close))
        if cut >= len(text):
            return parts
        start, floor = cut, 0


def _part(text: str, fences: _FenceMap, start: int, end: int, limit: int) -> Part:
    body = text[start:end]
    reopen = _reopen_line(fences.at(start), limit) if start > 0 else ""
    return Part(body, reopen, _close_for(fences.at(end), body, limit) if end > start else "")


def split_growing(text: str, limit: int, starts: Sequence[int], floor: int, *, hold_back: bool) -> list[Part]:
    """Split a text that is being shown as it grows, so that shown text never moves or shrinks.

    `starts` are where the messages already posted begin in `text` (their cuts are kept), and
    `floor` is how far the last of them already shows: its cut falls there or later, even where
    `split_parts` would cut earlier. With `hold_back`, a last part within a tenth of the limit
    shows only up to its last space or line break, so the cut can fall at a word boundary that
    was never shown past. Rejoining works as for `split_parts`.
    """
    if not starts:
        starts = [0]
    fences = _FenceMap(text)
    parts = [_part(text, fences, a, b, limit) for a, b in itertools.pairwise(starts)]
    start = min(starts[-1], len(text))
    tail = _split_from(text, fences, start, limit, floor=max(start, floor))
    parts.extend(tail)
    if hold_back and len(parts[-1].text) > limit - max(1, limit // 10):
        last_start = len(text) - len(parts[-1].body)
        low = max(last_start, floor if len(tail) == 1 else last_start)
        # The last word may still grow: show up to the break before it.
        brk = max(text.rfind(" ", low, len(text)), text.rfind("\n", low, len(text)))
        if brk >= low:
            parts[-1] = _part(text, fences, last_start, brk + 1, limit)
    return parts


def _reopen_line(fence: _Fence | None, limit: int) -> str:
    if fence is None:
        return ""
    line = fence.opener if len(fence.opener) <= limit // 4 else fence.closer
    return line + "\n"


def _close_for(fence: _Fence | None, body: str, limit: int) -> str:
    if fence is None:
        return ""
    return fence.closer if body.endswith("\n") else "\n" + fence.closer


def _choose_cut(text: str, start: int, budget: int, fences: _FenceMap, floor: int = 0) -> int:
    """Where the part from `start` ends; never before `floor` (text already shown there)."""
    end = start + budget
    if end >= len(text):
        return len(text)
    if floor > start:
        if floor - start >= budget - 2 * max(1, budget // 10):
            # The message already shows nearly all it can hold, held back at a word boundary: cut
            # right there, so it needs no further edit and the next message starts at once.
            return floor
        return max(floor, _best_cut(text, start, budget, fences, low=floor))
    return _best_cut(text, start, budget, fences, low=start)


def _best_cut(text: str, start: int, budget: int, fences: _FenceMap, *, low: int) -> int:
    end = start + budget
    para = text.rfind("\n\n", max(start, low - 2), end)
    if para >= 0 and para + 2 - start > budget // 2:
        return para + 2
    line = text.rfind("\n", max(start, low - 1), end)
    if line >= 0 and line + 1 - start > budget // 4:
        return line + 1
    space = text.rfind(" ", max(start, low - 1), end)
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
