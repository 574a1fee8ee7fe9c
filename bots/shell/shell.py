"""The terminal adapter: an interactive REPL, or one piped question streamed to stdout."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from core.app import ChatCore
from core.messages import Actor, IncomingMessage, Platform, PlatformFacts, Source, WorkspaceRef
from core.pacing import EditScheduler
from core.pipeline import Outcome
from core.surface import PLACEHOLDER, Operation, RateScope

LOCAL_WORKSPACE = WorkspaceRef(Platform.SHELL, "local")
# The person at the terminal owns their local workspace.
LOCAL_USER = Actor("local", PlatformFacts(is_owner=True), display_name="you")
# Re-rendering a terminal more than ~20 times a second only burns CPU.
_RENDER_SCOPE = (RateScope("shell:render", per_second=20.0, burst=2.0),)


def format_sources(sources: Sequence[Source]) -> str:
    return "\n".join(f"[{s.index}] {s.title} — {s.uri}" for s in sources)


class StreamSurface:
    """Piped mode: append-only text on stdout, so `chatbot shell | tee` and scripts see the stream."""

    max_chars = 1_000_000

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.printed = ""

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return ()

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        await self.edit("stdout", text, sources=sources)
        return "stdout"

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        if text == PLACEHOLDER:
            return
        if text.startswith(self.printed):
            self.out.write(text[len(self.printed) :])
        else:  # the text was rewritten, not extended: start a fresh line with the whole text
            self.out.write("\n" + text)
        self.printed = text
        if sources:
            self.out.write("\n\nSources:\n" + format_sources(sources))
        self.out.flush()

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def end(self) -> None:
        if self.printed:
            self.out.write("\n")
            self.out.flush()


class LiveSurface:
    """Interactive mode: the reply re-renders as Markdown in place while it streams."""

    max_chars = 1_000_000

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def scopes(self, operation: Operation) -> Sequence[RateScope]:
        return _RENDER_SCOPE

    async def post(self, text: str, *, sources: Sequence[Source] = ()) -> str:
        self.live = Live(Text(text, style="dim"), console=self.console, refresh_per_second=12, transient=False)
        self.live.start()
        return "live"

    async def edit(self, message_id: str, text: str, *, sources: Sequence[Source] = ()) -> None:
        if self.live is None:
            await self.post(text)
        assert self.live is not None
        body = Markdown(text)
        if sources:
            self.live.update(Group(body, Text("\nSources:\n" + format_sources(sources), style="cyan")))
        else:
            self.live.update(body)

    async def thinking(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/yellow]")

    def end(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _message(text: str, thread_id: str) -> IncomingMessage:
    return IncomingMessage(
        workspace=LOCAL_WORKSPACE,
        channel_id="terminal",
        thread_id=thread_id,
        message_id=uuid.uuid4().hex,
        author=LOCAL_USER,
        text=text,
        is_dm=True,
    )


async def ask_once(
    core: ChatCore,
    question: str,
    *,
    thread_id: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> Outcome:
    surface = StreamSurface(out, err)
    outcome = await core.answer(_message(question, thread_id or uuid.uuid4().hex), surface, EditScheduler())
    surface.end()
    return outcome


async def repl(core: ChatCore, thread: str | None = None, console: Console | None = None) -> None:
    console = console or Console()
    scheduler = EditScheduler()
    thread_id = thread or uuid.uuid4().hex
    console.print(
        f"[bold]chatbot[/bold] · answers from [cyan]{type(core.retriever).__name__}[/cyan] with "
        f"[cyan]{core.llm.name}[/cyan]. Type a question; /new starts a new thread, /quit leaves."
    )
    while True:
        try:
            line = await asyncio.to_thread(console.input, "[bold green]you ›[/bold green] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        line = line.strip()
        if not line:
            continue
        if line in {"/quit", "/exit", "/q"}:
            return
        if line == "/new":
            thread_id = uuid.uuid4().hex
            console.print("[dim]New thread.[/dim]")
            continue
        if line in {"/help", "/?"}:
            console.print("/new  start a new thread · /quit  leave · anything else is a question")
            continue
        surface = LiveSurface(console)
        try:
            await core.answer(_message(line, thread_id), surface, scheduler)
        finally:
            surface.end()
