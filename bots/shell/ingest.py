"""`chatbot ingest`: ingest files, folders and URLs with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bots.shell.shell import LOCAL_USER
from core.app import ChatCore
from core.messages import Platform, WorkspaceRef
from core.stores.base import PermissionDenied


class RichProgress:
    """core.ingest.ProgressCallback drawn as a rich progress bar on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("ingesting", total=None)

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, description: str) -> None:
        name = description.rsplit("/", 1)[-1]
        self.progress.update(self.task, advance=1, description=f"ingesting {name[:40]}")


async def run_ingest(core: ChatCore, sources: Sequence[str], workspace: tuple[str, str]) -> int:
    try:
        ws = WorkspaceRef(Platform(workspace[0]), workspace[1])
    except ValueError:
        print(f"chatbot: unknown platform {workspace[0]!r} (slack, discord or shell)", file=sys.stderr)
        return 2
    err = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        # A bar only on a terminal: piped, stderr keeps just the clear lines below.
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
            report = await core.ingest(ws, LOCAL_USER, sources, RichProgress(progress))
    except PermissionDenied as exc:
        print(f"chatbot: not allowed: {exc}", file=sys.stderr)
        return 1
    for _source, error in report.failed:
        print(f"chatbot: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0
