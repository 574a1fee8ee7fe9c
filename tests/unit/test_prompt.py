from __future__ import annotations

from core.messages import MessageRole, ReplyStatus, Source, StoredMessage
from core.prompt import build_prompt, cited_sources, estimate_tokens


def msg(i: int, role: MessageRole, text: str, status: ReplyStatus = ReplyStatus.COMPLETE) -> StoredMessage:
    return StoredMessage(id=str(i), thread_id="t", role=role, text=text, status=status)


def source(i: int, words: int = 50) -> Source:
    return Source(index=i, title=f"Doc {i}", uri=f"file:doc{i}.md", text=" ".join(["word"] * words))


def test_question_is_the_last_user_turn_and_history_is_chronological() -> None:
    history = [  # newest first, as the store pages it
        msg(4, MessageRole.ASSISTANT, "second answer"),
        msg(3, MessageRole.USER, "second question"),
        msg(2, MessageRole.ASSISTANT, "first answer"),
        msg(1, MessageRole.USER, "first question"),
    ]
    prompt = build_prompt(question="third question", history=history, sources=[])
    assert [(t.role, t.content) for t in prompt.turns] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "second answer"),
        ("user", "third question"),
    ]


def test_budget_keeps_newest_history_and_drops_oldest() -> None:
    history = [
        msg(i, MessageRole.USER if i % 2 else MessageRole.ASSISTANT, f"m{i} " + "x" * 400) for i in range(40, 0, -1)
    ]
    prompt = build_prompt(question="q", history=history, sources=[], budget_tokens=1500)
    contents = [t.content for t in prompt.turns]
    assert contents[-1].endswith("q")
    assert any("m40" in c for c in contents)
    assert not any(c.startswith("m1 ") for c in contents)
    total = estimate_tokens(prompt.system) + sum(estimate_tokens(t.content) for t in prompt.turns)
    assert total <= 1500


def test_context_is_numbered_and_cut_whole_within_budget() -> None:
    sources = [source(i, words=300) for i in range(1, 8)]
    prompt = build_prompt(question="q", history=[], sources=sources, budget_tokens=2000)
    kept = [s.index for s in prompt.sources]
    assert kept == list(range(1, len(kept) + 1))  # no gaps in numbering
    assert 0 < len(kept) < 7
    for s in prompt.sources:
        assert f"[{s.index}] Doc {s.index}" in prompt.system
    assert f"[{len(kept) + 1}] Doc" not in prompt.system


def test_streaming_and_empty_messages_are_not_history() -> None:
    history = [
        msg(3, MessageRole.ASSISTANT, "partial", ReplyStatus.STREAMING),
        msg(2, MessageRole.ASSISTANT, ""),
        msg(1, MessageRole.USER, "earlier"),
    ]
    prompt = build_prompt(question="now", history=history, sources=[])
    assert [t.content for t in prompt.turns] == ["earlier\n\nnow"]  # merged so roles alternate


def test_turns_start_with_the_user() -> None:
    history = [msg(2, MessageRole.USER, "hi"), msg(1, MessageRole.ASSISTANT, "welcome!")]
    prompt = build_prompt(question="q", history=history, sources=[])
    assert prompt.turns[0].role == "user"


def test_workspace_prompt_is_included() -> None:
    prompt = build_prompt(question="q", history=[], sources=[], workspace_prompt="Answer like a pirate.")
    assert "Answer like a pirate." in prompt.system


def test_cited_sources_only_lists_what_the_answer_cites() -> None:
    sources = [source(1), source(2), source(3)]
    assert [s.index for s in cited_sources("See [3] and [1][1].", sources)] == [1, 3]
    assert cited_sources("No citations here.", sources) == []
    assert cited_sources("Cites [9] which does not exist", sources) == []
