"""Splitting long replies into platform messages: exact rejoin, limits, code fences (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.markdown import join_parts, split_markdown, split_parts


def fence_open_after(text: str) -> bool:
    """An independent reading of the documented fence rule: a line opens a fence when, stripped, it
    starts with 3+ backticks or tildes; the open fence closes on a line that is only that character,
    at least as many times."""
    marker: tuple[str, int] | None = None
    for line in text.split("\n"):
        s = line.strip()
        if marker is None:
            if s.startswith("```") or s.startswith("~~~"):
                marker = (s[0], len(s) - len(s.lstrip(s[0])))
        elif len(s) >= marker[1] and s == marker[0] * len(s):
            marker = None
    return marker is not None


ATOMS = st.sampled_from(
    [
        "word ",
        "longerword",
        " ",
        "\n",
        "\n\n",
        "```python\n",
        "```\n",
        "~~~\n",
        "````js\n",
        "````\n",
        "  ```\n",
        "`inline` ",
        "x = 1\n",
        "a" * 37,
        "é🙂 ",
        "- item\n",
        "# Heading\n",
    ]
)
MARKDOWN = st.lists(ATOMS, max_size=120).map("".join)
ANY_TEXT = st.one_of(MARKDOWN, st.text(max_size=600), st.text(alphabet="`~\n a", max_size=400))


@settings(max_examples=400, deadline=None)
@given(text=ANY_TEXT, limit=st.integers(min_value=16, max_value=300))
def test_any_text_rejoins_exactly_and_every_part_fits(text: str, limit: int) -> None:
    parts = split_parts(text, limit)
    assert join_parts(parts) == text
    assert split_markdown(text, limit) == [p.text for p in parts]
    for part in parts:
        assert len(part.text) <= limit
        assert part.body or len(parts) == 1  # no empty messages
        # What the splitter added is only fence lines, exactly as the rejoin rule says.
        if part.reopen:
            assert part.reopen.endswith("\n") and part.reopen.lstrip()[:3] in ("```", "~~~")
        if part.close:
            marker = part.close.lstrip("\n")
            assert marker and set(marker) <= {"`", "~"}
            assert part.close == (marker if part.body.endswith("\n") else "\n" + marker)


@settings(max_examples=400, deadline=None)
@given(text=MARKDOWN, limit=st.integers(min_value=40, max_value=400))
def test_code_fences_are_balanced_in_every_part(text: str, limit: int) -> None:
    for message in split_markdown(text, limit):
        assert not fence_open_after(message), message


def test_prefers_paragraph_then_line_boundaries() -> None:
    text = "First paragraph here.\n\nSecond paragraph is longer.\nWith a second line."
    assert split_markdown(text, 40) == [
        "First paragraph here.\n\n",
        "Second paragraph is longer.\n",
        "With a second line.",
    ]


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "".join(f"line{i}\n" for i in range(12))
    text = "Intro\n\n```python\n" + code + "```\nAfter."
    messages = split_markdown(text, 48)
    assert messages[0].startswith("Intro")
    assert all(not fence_open_after(m) for m in messages)
    reopened = [m for m in messages[1:] if m.startswith("```python\n")]
    assert reopened, messages
    assert messages[-1].endswith("After.")


def test_short_text_is_one_part_and_an_unclosed_fence_gets_closed() -> None:
    assert split_markdown("hello", 100) == ["hello"]
    assert split_markdown("see:\n```py\nx = 1", 100) == ["see:\n```py\nx = 1\n```"]
