"""How an interrupted Discord reply's last part is finished: its share of the text so far and the
marker, within Discord's 2,000 characters, never showing less than it already shows."""

from __future__ import annotations

from bots.discord.replies import last_part
from bots.discord.surface import MAX_CONTENT
from core.markdown import split_markdown
from core.recovery import INTERRUPTED_MARKER

WORDS = "".join(f"word{i} " for i in range(700)).strip()  # ~5,600 characters: three messages' worth


def test_the_last_part_is_its_share_of_the_text_then_the_marker() -> None:
    shares = split_markdown(WORDS, MAX_CONTENT)
    assert len(shares) == 3
    content = last_part(WORDS + INTERRUPTED_MARKER, 3)
    assert content == shares[2] + INTERRUPTED_MARKER


def test_text_longer_than_the_parts_hold_is_cut_so_the_marker_ends_the_last_part() -> None:
    content = last_part(WORDS + INTERRUPTED_MARKER, 2)  # three messages' worth, two parts posted
    share = split_markdown(WORDS, MAX_CONTENT)[1]
    assert len(content) <= MAX_CONTENT and content.endswith(INTERRUPTED_MARKER)
    body = content.removesuffix(INTERRUPTED_MARKER)
    assert share.startswith(body) and len(body) > MAX_CONTENT - len(INTERRUPTED_MARKER) - 20
    assert not body.endswith(" ") and body.split()[-1] in share.split()  # cut between words


def test_what_the_part_already_shows_beyond_the_stored_text_is_kept() -> None:
    stored = WORDS[:300]
    shown = WORDS[:420]  # the last delta write trailed what was shown
    assert last_part(stored + INTERRUPTED_MARKER, 1, shown) == shown + INTERRUPTED_MARKER
    # Something else shown there (not the same text) is replaced by the text so far.
    assert last_part(stored + INTERRUPTED_MARKER, 1, "other" * 200) == stored + INTERRUPTED_MARKER


def test_the_last_part_goes_on_from_where_the_stream_cut_it() -> None:
    shown = WORDS[1990:2400]  # the stream's own cut, a few words before a split of the whole text's
    content = last_part(WORDS[:3000] + INTERRUPTED_MARKER, 2, shown)
    assert content == WORDS[1990:3000] + INTERRUPTED_MARKER


def test_a_text_already_finished_is_shown_as_it_is() -> None:
    failed = "The answer so far." + INTERRUPTED_MARKER
    assert last_part(failed, 1, failed) == failed
