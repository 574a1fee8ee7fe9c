"""Scale-out benchmark: several bot processes on one Convex, one of them killed mid-run.

    uv run python bench/scaleout.py                  # 300 conversations, 3 Slack + 2 Discord processes
    uv run python bench/scaleout.py --conversations 120 --json

Runs the product itself: `chatbot slack --http` three times behind a small loopback round-robin proxy
(a load balancer that fails over when a process is gone), `chatbot discord --shard-ids N --shard-count 2`
twice, all on one loopback Convex (the real functions) against the loopback Slack, Discord and
Anthropic servers of tests/fakes, which enforce the platforms' limits (bots/*/limits.py). Slack events
come with duplicates: a retry of the same event (X-Slack-Retry-Num) and a `message` twin of each
mention, each to another process. One Slack process is killed with SIGKILL mid-run and restarted.
The same load then runs on one Slack and one Discord process (no kill) for the single-process figure.

Figures (measured at the fakes: what users saw):
  answered_once    conversations with exactly one reply that ended (the answer, or an interrupted marker)
  duplicates       conversations with more than one reply
  lost             conversations whose reply never ended (or that got none)
  r429             429 answers of the fakes, all processes together
  requests_over_limit  requests beyond a platform limit in any of its windows (Discord global and per
                   channel, Slack per method and workspace), counted from the fakes' call logs
  taken_over       replies of the killed process finished by another one with the interrupted marker;
                   takeover_s: the longest time from the kill to a live process taking one of its
                   replies or questions over (its log); interrupted_shown_s: to the marker being shown
                   (it waits its turn in the platform's budget like any final edit)
  staleness_p99_s  for every chunk the model sent: the time until the platform showed it (p99);
                   staleness_p99_uninterrupted_s: the same without the replies the kill interrupted
  questions_taken_over  questions the killed process had claimed but not answered yet, answered by
                   another process (their logs)
  leased_tokens_wasted  tokens the processes leased and let expire unused (their shutdown logs)
  cpu_s            CPU seconds the bot processes used (cpu_s_by_process: each, the killed one's lives together)
  stalest          per platform the chunks shown latest (which conversation, when, how long), then the
                   calls of the stalest Discord conversation's channel and thread: a stall or a slow budget
  lease_rtt_p50_s / lease_rtt_p99_s  the round trip of one budget lease write to the Convex server
                   during the run, probed from this process every 0.25 s (the store's latency under
                   the load of all processes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.columns import print_columns  # noqa: E402
from bots.discord import limits as discord_limits  # noqa: E402
from bots.slack import limits as slack_limits  # noqa: E402
from core.messages import Platform, WorkspaceRef  # noqa: E402
from core.stores.convex import ConvexStore  # noqa: E402
from core.stores.convex_leases import ConvexLeases  # noqa: E402
from core.stores.leases import BudgetRequest  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.discord import BOT_ID as DISCORD_BOT_ID  # noqa: E402
from tests.fakes.discord import GUILD_ID, FakeDiscord  # noqa: E402
from tests.fakes.slack import BOT_TOKEN, BOT_USER_ID, SIGNING_SECRET, FakeSlack, event_body, signed_headers  # noqa: E402
from tests.support.convex_server import running_convex_server  # noqa: E402

OTHER_GUILD = "200000000004194305"  # the second of two shards
CONV = re.compile(r"conv (\d{4})")
FILLER = "about the release process, the on-call rota, the staging database and where the runbooks live"
MARKERS = ("Interrupted", "cut off")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Conversation:
    id: int
    platform: str  # "slack" | "discord"
    channel: str
    at: float  # seconds after the start
    message_id: str = ""  # Slack ts or Discord message id, once sent
    question: str = ""


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    cpu_s: float = 0.0  # of its earlier lives (a killed process's, read just before the kill)

    async def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.cli", *self.args, env=self.env, cwd=ROOT, stdout=out, stderr=out
        )

    def used_cpu_s(self) -> float:
        """CPU seconds of this process's lives so far (Linux /proc; 0 where there is none)."""
        if self.process is None:
            return self.cpu_s
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return self.cpu_s
        return self.cpu_s + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.cpu_s = self.used_cpu_s()
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class Proxy:
    """Round-robin over the Slack processes; a process that is gone is skipped (as a load balancer would)."""

    backends: list[str]
    url: str = ""
    failovers: int = 0
    # Every delivery forwarded: (when, event ts, event type, retry number, backend index, status).
    deliveries: list[tuple[float, str, str, str, int, int]] = field(default_factory=list)
    _next: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/slack/events", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/slack/events"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("x-slack", "content-type"))}
        event = json.loads(body).get("event") or {}
        retry = request.headers.get("X-Slack-Retry-Num", "")
        for _ in range(len(self.backends)):
            index = self._next % len(self.backends)
            self._next += 1
            try:
                async with self._session.post(self.backends[index], data=body, headers=headers) as response:
                    answer = await response.read()
                    self.deliveries.append(
                        (time.monotonic(), str(event.get("ts")), str(event.get("type")), retry, index, response.status)
                    )
                    return web.Response(status=response.status, body=answer)
            except (aiohttp.ClientConnectionError, TimeoutError):
                self.failovers += 1
        return web.Response(status=503)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Run:
    conversations: list[Conversation]
    slack: FakeSlack
    discord: FakeDiscord
    llm: FakeAnthropic
    killed_at: float | None = None
    killed_wall: float = 0.0
    logs: list[Path] = field(default_factory=list)
    processes: int = 0
    failovers: int = 0
    deliveries: list[tuple[float, str, str, str, int, int]] = field(default_factory=list)
    events_sent: int = 0
    deliveries_failed: int = 0  # Slack deliveries not answered 200 within 3 s (each retried, as Slack does)
    lease_rtts: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def plan(n: int, slack_share: float, arrival_s: float, channels: int, seed: int) -> list[Conversation]:
    rng = random.Random(seed)
    n_slack = round(n * slack_share)
    out = []
    for i in range(n):
        platform = "slack" if i < n_slack else "discord"
        if platform == "slack":
            channel = f"C{rng.randrange(10):04d}"
        else:
            guild = rng.randrange(2)
            channel = str((310 if guild == 0 else 320) * 10**15 + rng.randrange(channels))
        out.append(Conversation(i, platform, channel, rng.uniform(0, arrival_s)))
    return sorted(out, key=lambda c: c.at)


async def drive(
    run: Run, proxy_url: str, http: aiohttp.ClientSession, *, retries: float, twins: float, seed: int
) -> None:
    rng = random.Random(seed + 1)
    start = time.monotonic()
    pending: list[asyncio.Task[Any]] = []

    async def post(body: str, retry_num: int | None = None) -> None:
        """Deliver as Slack does: a delivery not answered 200 within 3 s is retried (X-Slack-Retry-Num),
        up to 3 times (Slack waits a minute, then five; here 1 s, 2 s, 4 s)."""
        for attempt in range(4):
            number = retry_num if attempt == 0 else (retry_num or 0) + attempt
            headers = signed_headers(body, content_type="application/json", retry_num=number)
            run.events_sent += 1
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(
                    proxy_url, data=body.encode(), headers=headers, timeout=aiohttp.ClientTimeout(total=3)
                ) as response:
                    await response.read()
                    if response.status == 200:
                        return
            run.deliveries_failed += 1
            await asyncio.sleep(2.0**attempt)

    async def slack_conversation(conv: Conversation) -> None:
        event = {
            "type": "app_mention",
            "user": f"U{conv.id:05d}",
            "text": f"<@{BOT_USER_ID}> {conv.question}",
            "ts": conv.message_id,
            "channel": conv.channel,
        }
        run.slack.record_event(event)
        body = event_body(event)
        await post(body)
        if rng.random() < twins:  # the `message` event Slack sends for the same mention
            twin = {**event, "type": "message", "channel_type": "channel"}
            await post(event_body(twin))
        if rng.random() < retries:  # Slack's retry of the same event, after its 3 s timeout
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await post(body, retry_num=1)

    for conv in run.conversations:
        await asyncio.sleep(max(0.0, conv.at - (time.monotonic() - start)))
        conv.question = f"conv {conv.id:04d} {FILLER}"
        if conv.platform == "slack":
            conv.message_id = f"{1_790_000_000 + conv.id}.000100"
            pending.append(asyncio.create_task(slack_conversation(conv)))
        else:
            sent = await run.discord.send_message(f"7{conv.id:017d}", conv.question, channel_id=conv.channel)
            conv.message_id = sent["id"]
    await asyncio.gather(*pending)


def slack_views(slack: FakeSlack) -> dict[int, list[tuple[float, str]]]:
    """Per conversation: (when, the text shown) for every post and update of its reply."""
    views: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for call in slack.calls:
        if call.status != 200 or call.method not in ("chat.postMessage", "chat.update"):
            continue
        text = " ".join(
            b["text"]["text"] for b in _blocks(call.args.get("blocks")) if b.get("type") == "section" and "text" in b
        ) or str(call.args.get("text") or "")
        found = CONV.search(text)
        if found:
            views[int(found.group(1))].append((call.at, text))
    return views


def _blocks(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return raw if isinstance(raw, list) else []


def discord_views(discord: FakeDiscord) -> dict[int, list[tuple[float, str]]]:
    views: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for call in discord.calls:
        if call.status >= 300 or "/messages" not in call.path or call.method not in ("POST", "PATCH"):
            continue
        text = str(call.body.get("content") or "")
        found = CONV.search(text)
        if found:
            views[int(found.group(1))].append((call.at, text))
    return views


def staleness(run: Run, platform: str = "", *, without: frozenset[int] = frozenset()) -> list[float]:
    """For every chunk the model sent (of one platform's conversations, if named; none of the
    conversations `without`): when the platform first showed at least that much of the answer."""
    return [wait for _, _, wait in staleness_samples(run, platform, without=without)]


def stalest(run: Run, n: int = 4) -> list[str]:
    """Per platform, the `n` chunks shown latest: "conversation (platform channel) sent at +T s: waited
    W s", T from the model's first chunk (where a stall sits in the run, and whether the stale chunks
    share one); then the calls of the stalest Discord conversation's channel and thread."""
    samples = staleness_samples(run)
    if not samples:
        return []
    first = min(at for _, at, _ in samples)
    by_id = {c.id: c for c in run.conversations}
    worst = {
        platform: sorted((s for s in samples if by_id[s[0]].platform == platform), key=lambda s: -s[2])[:n]
        for platform in ("slack", "discord")
    }
    lines = [
        f"{conv} ({platform} {by_id[conv].channel}) sent at +{at - first:.1f} s: waited {wait:.1f} s"
        for platform, chunks in worst.items()
        for conv, at, wait in chunks
    ]
    if worst["discord"]:  # the stalest Discord one's channel (and its thread's) calls, from its question on
        conv = by_id[worst["discord"][0][0]]
        places = {conv.channel, conv.message_id}
        calls = [c for c in run.discord.calls if any(f"/channels/{p}/" in c.path for p in places)]
        since = worst["discord"][0][1] - 2.0
        lines += [
            f"  {c.at - first:+.2f} s {c.method} {c.path} {c.status} {str(c.body.get('content') or '')[:50]!r}"
            for c in calls
            if c.at >= since
        ][:120]
    return lines


def staleness_samples(
    run: Run, platform: str = "", *, without: frozenset[int] = frozenset()
) -> list[tuple[int, float, float]]:
    """(conversation, when the model sent the chunk, how long until it was shown), as `staleness`."""
    views = {**slack_views(run.slack), **discord_views(run.discord)}
    if platform:
        views = {c.id: views.get(c.id, []) for c in run.conversations if c.platform == platform}
    views = {conv: seen for conv, seen in views.items() if conv not in without}
    samples: list[tuple[int, float, float]] = []
    for at, answer, sent in run.llm.sent_log:
        found = CONV.search(answer)
        if not found:
            continue
        prefix = answer[:sent]
        conv = int(found.group(1))
        if conv not in views:
            continue
        shown = next((t for t, text in views[conv] if t >= at and prefix in text), None)
        if shown is not None:
            samples.append((conv, at, shown - at))
    return samples


def replies(run: Run) -> dict[int, list[str]]:
    """Per conversation: the final text of each reply the bot posted for it."""
    out: dict[int, list[str]] = defaultdict(list)
    by_question = {c.message_id: c for c in run.conversations}
    for message in run.slack.messages.values():
        conv = by_question.get(message.thread_ts or "")
        if message.user == BOT_USER_ID and conv is not None:
            out[conv.id].append(run.slack.shown_text(message))
    first_parts: dict[str, Conversation] = {}  # a reply's message id -> its conversation (later parts reply to it)
    for posted in sorted(run.discord.messages.values(), key=lambda m: int(m["id"])):
        if posted["author"]["id"] != DISCORD_BOT_ID:
            continue
        reference = str((posted.get("message_reference") or {}).get("message_id"))
        # A reply answers its question, or continues a part, or sits in the thread opened from the
        # question (busy channels move new answers into threads).
        conv = by_question.get(reference) or by_question.get(str(posted["channel_id"]))
        if conv is None and reference in first_parts:
            continue  # a continuation part of a reply already counted
        if conv is not None:
            first_parts[str(posted["id"])] = conv
            out[conv.id].append(str(posted.get("content") or ""))
    return out


def most_over(times: list[float], limit: int, window: float) -> int:
    """How many of these requests arrived while `limit` others had already arrived in the window before."""
    times = sorted(times)
    over, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        if end - start + 1 > limit:
            over += 1
    return over


def over_limit(run: Run) -> int:
    over = 0
    d = run.discord.calls
    over += most_over([c.at for c in d if c.status != 429], discord_limits.GLOBAL.limit, discord_limits.GLOBAL.window_s)
    per_channel: dict[str, list[float]] = defaultdict(list)
    for c in d:
        if c.status != 429 and "/messages" in c.path and c.method in ("POST", "PATCH") and c.path.count("/") == 3:
            per_channel[c.path.split("/")[2]].append(c.at)
    budget = discord_limits.CHANNEL_MESSAGES
    over += sum(most_over(ts, budget.limit, budget.window_s) for ts in per_channel.values())
    per_scope: dict[tuple[str, str], list[float]] = defaultdict(list)
    for call in run.slack.calls:
        spec = slack_limits.METHODS.get(call.method)
        if call.status != 429 and spec is not None:
            per_scope[(call.method, str(call.args.get("channel", "")) if spec.per_channel else "")].append(call.at)
    for (method, _), times in per_scope.items():
        budget = slack_limits.METHODS[method].budget
        over += most_over(times, budget.limit, budget.window_s)
    return over


def _log_lines(logs: list[Path], event: str) -> list[dict[str, Any]]:
    """The records of one event in the processes' JSON logs."""
    records = []
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
    return records


def _log_times(logs: list[Path], event: str) -> list[float]:
    """The wall-clock times of one event in the processes' JSON logs."""
    times = []
    for record in _log_lines(logs, event):
        with contextlib.suppress(ValueError, KeyError):
            times.append(datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp())
    return times


async def probe_leases(convex: Any, into: list[float]) -> None:
    """One lease write every 0.25 s on a bucket of its own: how long the store takes to answer."""
    store = ConvexStore(convex.url, convex.secret)
    leases = ConvexLeases(store)
    request = BudgetRequest("bench:probe", 1000.0, 10.0, 1, 1.0)
    try:
        while True:
            sent = time.monotonic()
            with contextlib.suppress(Exception):
                await leases.lease([request])
                into.append(time.monotonic() - sent)
            await asyncio.sleep(0.25)
    finally:
        await store.close()


def quantile(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 3) if values else None


def summarize(run: Run, label: str) -> dict[str, Any]:
    finals = replies(run)
    expected = {c.id: f"Here is what I found about: {c.question}" for c in run.conversations}
    answered_once = duplicates = lost = taken = 0
    interrupted: set[int] = set()  # conversations whose reply ended with the interrupted marker
    lost_by: dict[str, int] = defaultdict(int)
    for conv in run.conversations:
        texts = finals.get(conv.id, [])
        # The whole answer (the loopback model may add a citation), or the interrupted marker.
        ended = [t for t in texts if expected[conv.id] in t or any(m in t for m in MARKERS)]
        if len(texts) > 1:
            duplicates += 1
        if len(texts) == 1 and ended:
            answered_once += 1
        if not ended:
            lost += 1
            lost_by[conv.platform] += 1
        marked_here = sum(1 for t in ended if any(m in t for m in MARKERS))
        taken += marked_here
        if marked_here:
            interrupted.add(conv.id)
    takeover_s = 0.0
    if run.killed_at is not None:
        marked = [
            at
            for views in (slack_views(run.slack), discord_views(run.discord))
            for entries in views.values()
            for at, text in entries
            if any(m in text for m in MARKERS)
        ]
        takeover_s = max((at - run.killed_at for at in marked), default=0.0)
    # When the live processes took the dead one's replies over (their logs), and finished them there.
    events = ("ownership.taken_over", "handover.questions_taken_over")
    taken_at = [t - run.killed_wall for e in events for t in _log_times(run.logs, e)] if run.killed_at else []
    samples = sorted(staleness(run))
    questions_taken = sum(int(r.get("taken", 0)) for r in _log_lines(run.logs, "handover.questions_taken_over"))
    r429 = sum(1 for c in run.slack.calls if c.status == 429) + len(run.discord.rate_limited)
    return {
        "run": label,
        "processes": run.processes,
        "conversations": len(run.conversations),
        "replies": sum(1 for c in run.conversations if finals.get(c.id)),
        "answered_once": answered_once,
        "duplicates": duplicates,
        "lost": lost,
        "r429": r429,
        "requests_over_limit": over_limit(run),
        "taken_over": taken,
        "questions_taken_over": questions_taken,
        "takeover_s": round(max(taken_at, default=0.0), 2),
        "interrupted_shown_s": round(takeover_s, 2),
        "staleness_p50_s": round(samples[len(samples) // 2], 3) if samples else None,
        "staleness_p99_s": round(samples[int(len(samples) * 0.99)], 3) if samples else None,
        "staleness_p99_by_platform": {p: quantile(staleness(run, p), 0.99) for p in ("slack", "discord")},
        # The same without the replies the kill interrupted (their wait is takeover_s, above).
        "staleness_p99_uninterrupted_s": quantile(staleness(run, without=frozenset(interrupted)), 0.99),
        "stalest": stalest(run),
        "leased_tokens_wasted": sum(int(r.get("wasted", 0)) for r in _log_lines(run.logs, "budgets.leases")),
        "lease_rtt_p50_s": quantile(run.lease_rtts, 0.5),
        "lease_rtt_p99_s": quantile(run.lease_rtts, 0.99),
        "lost_by_platform": dict(lost_by),
        "events_sent": run.events_sent,
        "deliveries_failed": run.deliveries_failed,
        "failovers": run.failovers,
        **run.extra,
    }


async def wait_ports(ports: list[int], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    for port in ports:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no Slack process on port {port}") from None
                await asyncio.sleep(0.2)


async def one_run(args: argparse.Namespace, convex: Any, *, scaled: bool, workdir: Path) -> dict[str, Any]:
    convex.reset()
    conversations = plan(args.conversations, args.slack_share, args.arrival_s, args.channels, args.seed)
    async with FakeSlack() as slack, FakeDiscord() as discord, FakeAnthropic() as llm:
        slack.enforce_limits()
        llm.default_chunk_chars, llm.default_delay_s = 6, args.token_delay_s
        discord.guilds = {
            GUILD_ID: [str(310 * 10**15 + i) for i in range(args.channels)],
            OTHER_GUILD: [str(320 * 10**15 + i) for i in range(args.channels)],
        }
        base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "CONVEX_", "CHATBOT_"))},
            "CONVEX_URL": convex.url,
            "CONVEX_SERVICE_SECRET": convex.secret,
            "ANTHROPIC_API_KEY": "bench",
            "ANTHROPIC_BASE_URL": llm.url,
            "CHATBOT_LOG_LEVEL": args.log_level,
            "CHATBOT_SCALE_OUT": "1",
            "PYTHONUNBUFFERED": "1",  # the killed process's log up to its end
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "DISCORD_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
        }
        label = "scaled" if scaled else "single"
        n_slack, n_discord = (args.slack_processes, 2) if scaled else (1, 1)
        procs: list[Proc] = []
        ports = [free_port() for _ in range(n_slack)]
        for i, port in enumerate(ports):
            data = workdir / f"{label}-slack{i}"
            data.mkdir(parents=True, exist_ok=True)
            env = {**base_env, "CHATBOT_DATA_DIR": str(data)}
            procs.append(
                Proc(f"slack{i}", ["slack", "--http", "--port", str(port)], env, workdir / f"{label}-slack{i}.log")
            )
        for shard in range(n_discord):
            data = workdir / f"{label}-discord{shard}"
            data.mkdir(parents=True, exist_ok=True)
            env = {**base_env, "CHATBOT_DATA_DIR": str(data)}
            shards = ["--shard-ids", str(shard), "--shard-count", str(n_discord)]
            procs.append(Proc(f"discord{shard}", ["discord", *shards], env, workdir / f"{label}-discord{shard}.log"))
        proxy = Proxy([f"http://127.0.0.1:{p}/slack/events" for p in ports])
        await proxy.start()
        run = Run(conversations, slack, discord, llm, processes=len(procs), logs=[p.log for p in procs])
        probe: asyncio.Task[None] | None = None
        try:
            for proc in procs:
                await proc.start()
            await wait_ports(ports, 90)
            deadline = time.monotonic() + 90
            while len(discord.shards_identified) < n_discord:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Discord shards did not connect")
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # guilds loaded
            probe = asyncio.create_task(probe_leases(convex, run.lease_rtts))
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
                driver = asyncio.create_task(
                    drive(run, proxy.url, http, retries=args.retries, twins=args.twins, seed=args.seed)
                )
                if scaled and args.kill_at_s > 0:
                    await asyncio.sleep(args.kill_at_s)
                    victim = procs[1]  # a Slack process with replies in flight
                    victim.kill()
                    run.killed_at, run.killed_wall = time.monotonic(), time.time()
                    await asyncio.sleep(args.restart_after_s)
                    await victim.start()
                await driver
                # Let every reply end: answers stream for a few seconds, takeovers within 30 s.
                deadline = time.monotonic() + args.drain_s
                while time.monotonic() < deadline:
                    if summarize(run, label)["lost"] == 0:
                        break
                    await asyncio.sleep(1.0)
        finally:
            if probe is not None:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
            cpu = {proc.name: round(proc.used_cpu_s(), 1) for proc in procs}
            for proc in procs:
                await proc.stop()
            run.failovers, run.deliveries = proxy.failovers, proxy.deliveries
            await proxy.close()
        result = summarize(run, label)
        result["slack_processes"], result["discord_processes"] = n_slack, n_discord
        result["cpu_s"], result["cpu_s_by_process"] = round(sum(cpu.values()), 1), cpu
        result["lost_in_store"] = await lost_in_store(run, convex)
        result["lost_trace"] = lost_trace(run, args.trace)
        if args.dump:
            finals = replies(run)
            rows = [
                {
                    "id": c.id,
                    "platform": c.platform,
                    "channel": c.channel,
                    "at": round(c.at, 2),
                    "replies": finals.get(c.id, []),
                }
                for c in run.conversations
            ]
            await asyncio.to_thread(
                Path(args.dump).with_suffix(f".{label}.json").write_text, json.dumps(rows, indent=1)
            )
        return result


async def lost_in_store(run: Run, convex: Any) -> dict[str, list[str]]:
    """What the store kept of each lost conversation: its messages as role:status (none: never claimed
    or claimed and dropped before anything was stored)."""
    finals = replies(run)
    store = ConvexStore(convex.url, convex.secret)
    out: dict[str, list[str]] = {}
    try:
        for conv in run.conversations:
            if finals.get(conv.id):
                continue
            if conv.platform == "slack":
                ws = WorkspaceRef(Platform.SLACK, run.slack.team_id)
                thread = await store.find_thread(ws, conv.channel, conv.message_id)
            else:
                ws = WorkspaceRef(Platform.DISCORD, GUILD_ID if conv.channel.startswith("31") else OTHER_GUILD)
                thread = await store.find_thread(ws, conv.channel, conv.message_id)
            items = (await store.messages(ws, thread)).items if thread else []
            out[str(conv.id)] = [f"{m.role.value}:{m.status.value}" for m in items]
    finally:
        await store.close()
    return out


def lost_trace(run: Run, also: list[int]) -> dict[str, list[str]]:
    """For each lost Slack conversation (and those in `also`), what reached the processes and the calls
    made for it, in seconds after the kill (before it: negative): "delivery <type> retry=<n> -> slack<i>
    <status>", "users.info <status>", and the posts in its thread."""
    finals = replies(run)
    origin = run.killed_at if run.killed_at is not None else 0.0
    out: dict[str, list[str]] = {}
    for conv in run.conversations:
        if conv.platform != "slack" or (finals.get(conv.id) and conv.id not in also):
            continue
        user = f"U{conv.id:05d}"
        seen = [
            (at, f"delivery {kind} retry={retry or 0} -> slack{index} {status}")
            for at, ts, kind, retry, index, status in run.deliveries
            if ts == conv.message_id
        ]
        seen += [
            (c.at, f"users.info {c.status}")
            for c in run.slack.calls
            if c.method == "users.info" and c.args.get("user") == user
        ]
        seen += [
            (c.at, f"{c.method} {c.status}") for c in run.slack.calls if c.args.get("thread_ts") == conv.message_id
        ]
        out[str(conv.id)] = [f"{at - origin:+.2f} s {what}" for at, what in sorted(seen)]
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = [
        "processes",
        "conversations",
        "replies",
        "answered_once",
        "duplicates",
        "lost",
        "r429",
        "requests_over_limit",
        "taken_over",
        "questions_taken_over",
        "takeover_s",
        "interrupted_shown_s",
        "staleness_p50_s",
        "staleness_p99_s",
        "staleness_p99_uninterrupted_s",
        "lease_rtt_p50_s",
        "lease_rtt_p99_s",
    ]
    print_columns(rows, "run", keys)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp, running_convex_server(_fail) as convex:
        workdir = Path(tmp)
        scaled = await one_run(args, convex, scaled=True, workdir=workdir)
        rows = [scaled]
        if not args.skip_single:
            rows.append(await one_run(args, convex, scaled=False, workdir=workdir))
        if not args.json:
            print_table(rows)
        single = rows[1] if len(rows) > 1 else {}
        result = {
            **scaled,
            "single_process_staleness_p99_s": single.get("staleness_p99_s"),
            "single_process_staleness_p99_by_platform": single.get("staleness_p99_by_platform"),
            "single_process_cpu_s": single.get("cpu_s"),
            "single_process_stalest": single.get("stalest"),
        }
        if args.keep_logs:
            await asyncio.to_thread(_copy_logs, workdir, Path(args.keep_logs))
        return result


def _copy_logs(workdir: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        (into / log.name).write_bytes(log.read_bytes())


def _fail(message: str) -> Any:
    raise SystemExit(f"bench/scaleout.py: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--slack-share", type=float, default=0.15, help="of the conversations (Tier 3 is 50/min)")
    parser.add_argument("--slack-processes", type=int, default=3)
    parser.add_argument("--channels", type=int, default=30, help="Discord channels per guild")
    parser.add_argument("--arrival-s", type=float, default=40.0, help="conversations arrive over this long")
    parser.add_argument("--token-delay-s", type=float, default=0.08, help="between the model's chunks")
    parser.add_argument("--retries", type=float, default=0.3, help="share of Slack events retried")
    parser.add_argument("--twins", type=float, default=0.5, help="share of Slack mentions with a message twin")
    parser.add_argument("--kill-at-s", type=float, default=12.0)
    parser.add_argument("--restart-after-s", type=float, default=3.0)
    parser.add_argument("--drain-s", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-single", action="store_true", help="no single-process run")
    parser.add_argument("--keep-logs", default="", help="copy the processes' logs into this folder")
    parser.add_argument("--log-level", default="WARNING", help="of the bot processes (--keep-logs keeps them)")
    parser.add_argument("--trace", type=int, action="append", default=[], help="a Slack conversation to trace")
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--dump", default="", help="write every conversation's replies to this JSON file")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
