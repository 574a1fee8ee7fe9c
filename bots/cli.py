"""`chatbot`: pick an adapter and ask core.app for the wired core."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

from core.app import ChatCore, ConfigError, build_core
from core.config import MissingSetting, Settings
from core.logs import configure_logging
from core.pipeline import MAX_QUESTION_CHARS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
A team chatbot for Slack and Discord that answers from your own knowledge.

With nothing configured it runs on this machine: SQLite for memory, SQLite FTS5 for
retrieval and, without ANTHROPIC_API_KEY, a clearly labelled answer made of the
best-matching passages. Set CONVEX_URL, WEAVIATE_URL and ANTHROPIC_API_KEY to use
Convex, Weaviate and Claude. Settings come from the environment or a .env file."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every command takes --verbose (`chatbot ingest x --verbose` reads more naturally than before the command).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="also write log records to stderr (commands are quiet otherwise)"
    )

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    shell = command("shell", help="talk to the bot in this terminal (or pipe one question in)")
    shell.description = "Interactive chat in the terminal. `echo 'question' | chatbot shell` answers once and exits."
    shell.add_argument("--thread", default=None, help="continue this named thread (default: a new one)")

    ingest = command("ingest", help="add Markdown, text, HTML or PDF files, folders or URLs to the knowledge")
    ingest.add_argument("sources", nargs="+", metavar="PATH|URL")
    ingest.add_argument(
        "--workspace", default="shell:local", help="platform:id, e.g. slack:T0123 (default: %(default)s)"
    )

    slack = command("slack", help="run the Slack app (HTTP events or Socket Mode)")
    mode = slack.add_mutually_exclusive_group()
    mode.add_argument("--http", action="store_true", help="serve the Events API at /slack/events (default)")
    mode.add_argument("--socket", action="store_true", help="connect with Socket Mode (needs SLACK_APP_TOKEN)")
    slack.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")

    discord = command("discord", help="run the Discord bot")
    discord.add_argument(
        "--shard-ids", default=None, metavar="IDS", help="run these shards here, e.g. 0,1 (default: $DISCORD_SHARD_IDS)"
    )
    discord.add_argument(
        "--shard-count", type=int, default=None, metavar="N", help="of this many in all (default: $DISCORD_SHARD_COUNT)"
    )

    roles = command("roles", help="administer roles, settings, usage and budgets locally, as the workspace's owner")
    roles.add_argument("--workspace", default="shell:local", help="platform:id (default: %(default)s)")
    roles.add_argument(
        "words", nargs="+", metavar="ARGS", help="e.g. `list`, `set U123 curator`, `usage 7`, `budget month 2m`"
    )

    command("doctor", help="check each configured service and say what is wrong")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings(**_overrides(args))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f" {first['loc'][0]}" if first["loc"] else "s"
        print(f"chatbot: invalid setting{where}: {first['msg']}", file=sys.stderr)
        return EXIT_USAGE
    # Services log (JSON lines, or console lines on a terminal); commands show only their own lines.
    service = args.command in {"slack", "discord"}
    configure_logging(
        settings.log_level,
        quiet=not (service or args.verbose),
        secrets=[v.get_secret_value() for v in settings.model_dump().values() if isinstance(v, SecretStr)],
    )
    command: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = COMMANDS[args.command]
    try:
        return asyncio.run(command(args, settings))
    except (ConfigError, MissingSetting) as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line options that stand for settings (they win over the environment)."""
    options = {
        "DISCORD_SHARD_IDS": getattr(args, "shard_ids", None),
        "DISCORD_SHARD_COUNT": getattr(args, "shard_count", None),
    }
    return {name: value for name, value in options.items() if value is not None}


async def _with_core(settings: Settings, run: Callable[[ChatCore], Awaitable[int]]) -> int:
    core = await build_core(settings)
    try:
        return await run(core)
    finally:
        await core.close()


async def cmd_shell(args: argparse.Namespace, settings: Settings) -> int:
    from bots.shell.shell import ask_once, repl

    if sys.stdin.isatty():
        return await _with_core(settings, lambda core: _repl(core, repl, args.thread))
    question = (await asyncio.to_thread(sys.stdin.read)).strip()
    if not question:
        print("chatbot: no question on standard input", file=sys.stderr)
        return EXIT_USAGE
    if len(question) > MAX_QUESTION_CHARS:
        print(
            f"chatbot: the question is too long ({len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,})",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def once(core: ChatCore) -> int:
        outcome = await ask_once(core, question, thread_id=args.thread)
        if outcome.status == "failed":
            print(f"chatbot: the answer failed: {outcome.reason}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK if outcome.status == "answered" else EXIT_FAILED

    return await _with_core(settings, once)


async def _repl(core: ChatCore, repl: Callable[[ChatCore, str | None], Awaitable[None]], thread: str | None) -> int:
    await repl(core, thread)
    return EXIT_OK


def parse_workspace(value: str) -> tuple[str, str]:
    platform, _, external = value.partition(":")
    if not external:
        raise ConfigError(f"--workspace must look like platform:id (got {value!r})")
    return platform, external


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from bots.shell.ingest import run_ingest

    return await _with_core(settings, lambda core: run_ingest(core, args.sources, parse_workspace(args.workspace)))


async def cmd_roles(args: argparse.Namespace, settings: Settings) -> int:
    from bots.shell.shell import LOCAL_USER
    from core.messages import Platform, WorkspaceRef

    platform, external = parse_workspace(args.workspace)
    ws = WorkspaceRef(Platform(platform), external)
    words = list(args.words)
    if words[0] != "role" and words[0] not in {"rolemap", "channel", "settings", "audit", "usage", "budget"}:
        words = ["role", *words]

    async def run(core: ChatCore) -> int:
        outcome = await core.admin.execute(ws, LOCAL_USER, " ".join(_quote(w) for w in words))
        print(outcome.text)
        return EXIT_OK if outcome.ok else EXIT_FAILED

    return await _with_core(settings, run)


def _quote(word: str) -> str:
    return shlex.quote(word)


async def cmd_slack(args: argparse.Namespace, settings: Settings) -> int:
    from bots.slack import run_slack
    from bots.slack.server import slack_credentials

    slack_credentials(settings, socket=args.socket)  # fail on missing variables before anything starts
    port = args.port or settings.port

    async def run(core: ChatCore) -> int:  # run_slack finishes the replies an earlier run left (on Slack)
        return await run_slack(settings, core, socket=args.socket, port=port)

    return await _with_core(settings, run)


async def cmd_discord(args: argparse.Namespace, settings: Settings) -> int:
    from bots.discord import run_discord

    async def run(core: ChatCore) -> int:
        await core.recover_stale()
        return await run_discord(settings, core)

    return await _with_core(settings, run)


async def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from bots.discord.doctor import discord_probes
    from bots.slack.doctor import slack_probes
    from core.health import run_check

    async def run(core: ChatCore) -> int:
        platforms = {**slack_probes(settings), **discord_probes(settings)}
        checks = [
            *await core.doctor(),
            *await asyncio.gather(*(run_check(name, probe, 15.0) for name, probe in platforms.items())),
        ]
        for check in checks:
            print(f"{'ok  ' if check.ok else 'FAIL'} {check.name:<10} {check.detail}")
        return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED

    return await _with_core(settings, run)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
    "shell": cmd_shell,
    "ingest": cmd_ingest,
    "slack": cmd_slack,
    "discord": cmd_discord,
    "roles": cmd_roles,
    "doctor": cmd_doctor,
}

if __name__ == "__main__":
    raise SystemExit(main())
