"""Markdown -> Slack mrkdwn."""

from __future__ import annotations

from bots.slack.mrkdwn import escape, to_mrkdwn


def test_inline_styles() -> None:
    assert to_mrkdwn("**bold**, *italic*, __bold__, _it_, ~~gone~~") == "*bold*, _italic_, *bold*, _it_, ~gone~"


def test_links_and_autolinks() -> None:
    assert to_mrkdwn("[the docs](https://example.com/a?b=1&c=2)") == "<https://example.com/a?b=1&amp;c=2|the docs>"
    assert to_mrkdwn("<https://example.com>") == "<https://example.com>"
    assert to_mrkdwn("[a | b](https://x.test)") == "<https://x.test|a ¦ b>"


def test_unsafe_link_schemes_are_not_links() -> None:
    assert "<javascript" not in to_mrkdwn("[click](javascript:alert(1))")


def test_headings_become_bold_lines() -> None:
    assert to_mrkdwn("# Setup **now**\n\nText") == "*Setup now*\n\nText"


def test_lists_nested_and_ordered() -> None:
    md = "- one\n- two\n  - inner\n\n1. first\n2. second"
    assert to_mrkdwn(md) == "• one\n• two\n    ◦ inner\n\n1. first\n2. second"
    assert to_mrkdwn("3. three\n4. four") == "3. three\n4. four"


def test_code_is_kept_verbatim_but_escaped() -> None:
    md = "Run `a<b` then:\n\n```python\nif x < 1 and y > 2:\n    print('*not bold*')\n```"
    assert to_mrkdwn(md) == "Run `a&lt;b` then:\n\n```\nif x &lt; 1 and y &gt; 2:\n    print('*not bold*')\n```"


def test_tables_become_aligned_code_blocks() -> None:
    md = "| name | role |\n|---|---|\n| **Ada** | owner |\n| Bob | `member` |"
    assert to_mrkdwn(md) == "```\nname | role\n-----+-------\nAda  | owner\nBob  | member\n```"


def test_blockquote_and_rule() -> None:
    assert to_mrkdwn("> quoted\n> twice\n\n---\n\nafter") == "> quoted\n> twice\n\n──────────\n\nafter"


def test_control_characters_are_escaped() -> None:
    assert to_mrkdwn("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert escape("<b>") == "&lt;b&gt;"


def test_user_and_channel_references_survive_but_broadcasts_do_not() -> None:
    out = to_mrkdwn("Ask <@U123ABC> in <#C999|ops>, not <!channel> or <!here> or <!subteam^S1>")
    assert "<@U123ABC>" in out and "<#C999|ops>" in out
    assert "<!" not in out


def test_half_written_markdown_streams_sensibly() -> None:
    assert to_mrkdwn("Start **bold and") == "Start **bold and"
    # An unclosed fence is code until the end, as in the finished message.
    assert to_mrkdwn("Look:\n\n```\nline 1\nline 2") == "Look:\n\n```\nline 1\nline 2\n```"


def test_admin_text_keeps_mentions_and_bullets() -> None:
    md = "*Roles* (default: member)\n• <@U1>: admin\n• <@U2>: default (blocked)"
    assert to_mrkdwn(md) == "_Roles_ (default: member)\n• <@U1>: admin\n• <@U2>: default (blocked)"
