"""Prompt assembly within a token budget: system prompt, numbered context, history, question."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace

from core.attachments import FileBlock
from core.context import ThreadMessage
from core.llm.base import Prompt, Turn
from core.messages import MessageRole, ReplyStatus, Source, StoredMessage
from core.retrieval.base import Hit
from core.tokens import FILE_TOKENS, estimate_tokens

BASE_SYSTEM = (
    "You are the team's assistant in a chat workspace. Answer the latest question helpfully and concisely, "
    "in Markdown. When the numbered context passages below are relevant, base your answer on them and cite "
    "them inline like [1] or [2][3]. If they do not contain the answer, say so briefly and answer from "
    "general knowledge only if you are confident, saying that you are doing so. Never invent citations."
)
THREAD_SYSTEM = (
    "The conversation below is the chat thread you were called into. Messages from people are labelled "
    "[name, time UTC]; your own earlier replies are the assistant turns. Answer the latest message, "
    "using the thread where it helps."
)
CITE_MESSAGES = (
    "This is a request to summarize or review the thread: cite the messages you draw on with their links, "
    "as Markdown links like [Ana, 10:02](link)."
)
# Summaries and reviews of the thread ("summarize this", "what's still open here?") cite its messages.
SUMMARY_REQUEST = re.compile(
    r"\b(summar|recap|tl;?dr|catch me up|what(?:'s| is| are)? (?:still )?(?:open|pending|unresolved)"
    r"|what did we (?:agree|decide)|action items|decisions)",
    re.IGNORECASE,
)
# What an explicit summary command asks (Slack's /chatbot summarize, Discord's message menu): the same
# question as typing it, so it takes the same path (SUMMARY_REQUEST matches it).
SUMMARIZE_THREAD = "Summarize this thread: what was discussed, what was decided, and what is still open."
SUMMARIZE_CHANNEL = "Summarize this channel's recent messages: what was discussed, decided, and still open."
MIN_TEXT_FILE_TOKENS = 200  # less room than this left for a text file: it is left out, not cut to a stub
DROPPED_NOTE = "({count} earlier message{s} of this thread {verb} left out to fit.)"
_CITATION = re.compile(r"\[(\d{1,2})\]")

__all__ = ["build_prompt", "cited_sources", "estimate_tokens", "sources_from_hits", "thread_line"]


def sources_from_hits(hits: Sequence[Hit]) -> list[Source]:
    return [
        Source(
            index=i,
            title=hit.chunk.title + (f" › {hit.chunk.heading}" if hit.chunk.heading else ""),
            uri=hit.chunk.document_uri,
            text=hit.chunk.text,
            score=hit.score,
        )
        for i, hit in enumerate(hits, start=1)
    ]


def build_prompt(
    *,
    question: str,
    history: Sequence[StoredMessage],
    sources: Sequence[Source],
    workspace_prompt: str = "",
    channel_prompt: str = "",
    budget_tokens: int = 6000,
    model: str = "",
    max_tokens: int = 1024,
    thread: Sequence[ThreadMessage] | None = None,
    files: Sequence[FileBlock] = (),
    file_budget_tokens: int = FILE_TOKENS,
) -> Prompt:
    """Fit the question, then context, then as much recent history as the budget allows.

    `history` is newest first (as the store pages it). Context passages that do not fit are
    dropped whole, lowest-ranked first, so citations stay numbered 1..n without gaps. `files` are
    counted by their estimated tokens against their own budget (`file_budget_tokens`) and sent while
    they fit, so a document asked about does not crowd out the thread and the knowledge. `thread`
    (the platform's thread, oldest first) replaces the stored history when the adapter read it:
    it holds the bot's replies and everyone else's messages too.
    """
    system = BASE_SYSTEM + (f"\n\nWorkspace instructions:\n{workspace_prompt.strip()}" if workspace_prompt else "")
    if channel_prompt.strip():
        system += f"\n\nChannel instructions:\n{channel_prompt.strip()}"
    cite = thread is not None and bool(SUMMARY_REQUEST.search(question))
    if thread is not None:
        system += "\n\n" + THREAD_SYSTEM + ("\n" + CITE_MESSAGES if cite else "")
    remaining = budget_tokens - estimate_tokens(system) - estimate_tokens(question)
    # Files come next (the question's own first, then the thread's newest), each whole while it fits;
    # the caller names those left out (what the returned prompt does not carry).
    sent: list[FileBlock] = []
    left_for_files = file_budget_tokens
    for file in files:
        if file.tokens > left_for_files and file.kind == "text" and left_for_files >= MIN_TEXT_FILE_TOKENS:
            file = cut_text_file(file, left_for_files)  # the start of a long log beats none of it
        if file.tokens <= left_for_files:
            sent.append(file)
            left_for_files -= file.tokens
    files = sent

    kept_sources: list[Source] = []
    context_budget = max(0, int(remaining * 0.7))
    for source in sources:
        block = _context_block(source)
        if estimate_tokens(block) > context_budget:
            break
        kept_sources.append(source)
        context_budget -= estimate_tokens(block)
        remaining -= estimate_tokens(block)
    instructions, context = system, ""
    if kept_sources:
        context = "\n\nContext passages:\n\n" + "\n\n".join(_context_block(s) for s in kept_sources)
        system += context
    parts = (instructions, context) if context else (instructions,)  # the cacheable prefixes

    turns: list[Turn] = []
    if thread is not None:
        turns = _thread_turns(thread, remaining, links=cite)
        return Prompt(
            system=system,
            turns=_alternating([*turns, Turn("user", question, files=tuple(files))]),
            sources=kept_sources,
            model=model,
            max_tokens=max_tokens,
            system_parts=parts,
        )
    for message in history:
        if message.status is ReplyStatus.STREAMING or not message.text.strip():
            continue
        cost = estimate_tokens(message.text)
        if cost > remaining:
            break
        remaining -= cost
        role: MessageRole = message.role
        turns.append(Turn("user" if role is MessageRole.USER else "assistant", message.text))
    turns.reverse()
    turns = _alternating([*turns, Turn("user", question, files=tuple(files))])
    return Prompt(
        system=system, turns=turns, sources=kept_sources, model=model, max_tokens=max_tokens, system_parts=parts
    )


def cut_text_file(block: FileBlock, tokens: int) -> FileBlock:
    """The start of a text file, within about `tokens`."""
    text = block.data[: max(0, (tokens - 1) * 4)]
    return replace(block, data=text, tokens=estimate_tokens(text))


def _thread_turns(thread: Sequence[ThreadMessage], budget: int, *, links: bool = False) -> list[Turn]:
    """The thread's messages as turns, newest kept first within `budget`; a note says how many were left out."""
    kept: list[Turn] = []
    shown = [m for m in thread if m.text.strip() or m.attachments]
    dropped = 0
    budget -= estimate_tokens(DROPPED_NOTE.format(count=len(shown), s="s", verb="were"))  # room for the note
    for index in range(len(shown) - 1, -1, -1):
        message = shown[index]
        content = message.text if message.from_bot else thread_line(message, link=links)
        cost = estimate_tokens(content)
        if cost > budget:
            dropped = index + 1
            break
        budget -= cost
        kept.append(Turn("assistant" if message.from_bot else "user", content))
    kept.reverse()
    if dropped:
        note = DROPPED_NOTE.format(count=dropped, s="" if dropped == 1 else "s", verb="was" if dropped == 1 else "were")
        kept.insert(0, Turn("user", note))
    return kept


def thread_line(message: ThreadMessage, *, link: bool = False) -> str:
    """Who said what and when: `[Ana, 2026-11-25 10:00] text (attached: log.txt)`, with the message's
    permalink after the time when it is to be cited."""
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.at)) if message.at else "earlier"
    where = f", {message.permalink}" if link and message.permalink else ""
    files = f" (attached: {', '.join(a.name for a in message.attachments)})" if message.attachments else ""
    return f"[{message.author or 'someone'}, {when}{where}] {message.text.strip()}{files}"


def _context_block(source: Source) -> str:
    return f"[{source.index}] {source.title} ({source.uri})\n{source.text}"


def _alternating(turns: list[Turn]) -> list[Turn]:
    """The Messages API wants user/assistant alternation starting with the user: merge runs."""
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, merged[-1].content + "\n\n" + turn.content, merged[-1].files + turn.files)
        else:
            merged.append(turn)
    while merged and merged[0].role != "user":
        merged.pop(0)
    return merged


def cited_sources(answer: str, sources: Sequence[Source]) -> list[Source]:
    """The sources the answer actually cites, in citation-number order."""
    cited = {int(n) for n in _CITATION.findall(answer)}
    return [s for s in sources if s.index in cited]
