"""Streaming benchmark on the real adapters: replies as users see them on loopback Slack and Discord.

    uv run python bench/streaming.py                       # the five scenarios
    uv run python bench/streaming.py --scenario one        # one of them (see --help)
    uv run python bench/streaming.py --scenario slack200   # 200 mentions, 20 channels, 40 people, 2 s

This process runs the product's adapters: the discord.py client over the loopback gateway
(ChatbotClient, DiscordSurface, its budgets) and, per Slack workspace, the Bolt app behind its
Events API endpoint with slack_sdk's AsyncWebClient (SlackBot, SlackSurface: chat.update in
channel threads, native streaming in DM threads), all sharing one EditScheduler per platform as one
process would. Behind them runs the product's core as core/app.py wires it (`build_core`: the
pipeline over the embedded SQLite store, hybrid retrieval over each workspace's ingested README, the
Anthropic SDK), so storage, retrieval and the SDK's stream parsing are measured too. The platforms
are tests/fakes, in a process of their own (bench/platforms.py), with the limits of
bots/<platform>/limits.py enforced and 100 ms per request; the same process runs the loopback
Anthropic API, which streams each question's answer in a model's rhythm (~2,400 characters at ~50
tokens/s, jittered, after 0.3-1.0 s of thinking), and plays the people who ask.

Figures, measured from what the platform servers stored and when:
  staleness   sampled every 10 ms from a reply's first token until its whole text is shown: the
              age of the oldest token the model has sent (as the loopback API logged it) that the
              platform does not show yet
  ttfv        first token -> first visible text
  final lag   last token -> the whole text visible
  attached    every part of a reply replies to the part before it (the first to the question), or
              sits in the question's own thread
  floor       Slack: what the workspace's Tier 3 budget allows the replies sharing it, as the
              interval between two edits of one reply (live replies in the workspace / edits per s)
  windows     per method and scope, the most calls in any window of the platform's limit
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import discord  # noqa: E402
import psutil  # noqa: E402
import structlog  # noqa: E402
import yarl  # noqa: E402

from bots.discord import limits as discord_limits  # noqa: E402
from bots.discord.client import ChatbotClient  # noqa: E402
from bots.slack import limits as slack_limits  # noqa: E402
from bots.slack.app import EVENTS_PATH, SlackBot  # noqa: E402
from core.app import ChatCore, build_core  # noqa: E402
from core.config import Settings  # noqa: E402
from core.messages import Actor, IncomingMessage, Platform, PlatformFacts, WorkspaceRef  # noqa: E402
from core.pipeline import Outcome  # noqa: E402
from core.surface import Placed, Surface  # noqa: E402
from tests.fakes.discord import GUILD_ID as DISCORD_GUILD_ID  # noqa: E402
from tests.fakes.loopback import serve  # noqa: E402
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET  # noqa: E402

WORDS = (
    *("the", "retrieval", "layer", "answers", "from", "each", "workspace's", "own", "documents", "and"),
    *("cites", "them", "so", "people", "can", "check", "the", "source", "before", "acting", "on", "it"),
    *("while", "the", "reply", "keeps", "growing", "in", "place", "as", "tokens", "arrive", "`code`"),
)
KNOWLEDGE = ("README.md",)  # ingested into every workspace before its questions
DISCORD_BASE_CHANNEL = 310000000000000000
DISCORD_MEMBER_BASE = 710000000000000000

SCENARIOS = {
    "one": "1 reply on Discord",
    "discord20": "20 replies in 20 Discord channels",
    "channel20": "20 replies in one Discord channel",
    "discord100": "100 replies in 100 Discord channels",
    "mixed1000": "900 Slack replies across 10 workspaces + 100 Discord replies at once",
    "slack200": "200 Slack mentions from 40 people in 20 channels within 2 s",
}
DEFAULT_SCENARIOS = ("one", "discord20", "channel20", "discord100", "mixed1000")


# -- the questions and the model's answers ----------------------------------------------------------


@dataclass
class Question:
    id: str
    platform: str
    at: float  # when it is asked, after the start
    channel: str
    user: str
    team: int = 0  # Slack workspace index
    kind: str = "mention"  # Slack: "mention" (a channel thread: chat.update) or "dm_thread" (native)
    ts: str = ""
    thread_ts: str = ""
    text: str = ""


@dataclass
class Answer:
    think_s: float
    chunks: list[str]
    gaps: list[float]
    text: str = ""
    produced: list[tuple[float, int]] = field(default_factory=list)  # (time, characters so far)
    message_ids: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    error: str = ""
    native: bool = False


def make_answer(rng: random.Random, tokens: int, token_rate: float) -> Answer:
    """An answer as LLM-sized pieces (a word and its space, paragraphs, sometimes a code block),
    grouped 1-4 per streamed event with exponential gaps around the model's token rate."""
    pieces: list[str] = []
    with_code = rng.random() < 0.2
    for i in range(tokens):
        word = rng.choice(WORDS)
        if i and i % rng.randint(35, 70) == 0:
            pieces.append(".\n\n")
        pieces.append(word if not pieces or pieces[-1].endswith("\n") else " " + word)
        if with_code and i == tokens // 2:
            pieces.append(":\n\n```\n")  # no language: Slack's mrkdwn would drop it, and the text would differ
            pieces.extend(f"value_{j} = compute({j})\n" for j in range(rng.randint(5, 15)))
            pieces.append("```\n\n")
    pieces.append(".")
    rate = token_rate * rng.uniform(0.7, 1.3)
    chunks: list[str] = []
    gaps: list[float] = []
    j = 0
    while j < len(pieces):
        k = rng.randint(1, 4)
        chunks.append("".join(pieces[j : j + k]))
        gaps.append(rng.expovariate(rate / k))
        j += k
    return Answer(think_s=rng.uniform(0.3, 1.0), chunks=chunks, gaps=gaps, text="".join(chunks))


def build(name: str, rng: random.Random, args: argparse.Namespace) -> tuple[list[Question], int, list[str]]:
    """(questions, Slack workspaces, extra Discord channels) for a scenario."""
    questions: list[Question] = []
    channels: list[str] = []

    def discord_q(i: int, channel: str, at: float) -> None:
        questions.append(Question(f"q{len(questions)}", "discord", at, channel, str(DISCORD_MEMBER_BASE + i)))

    def discord_channel(i: int) -> str:
        channel = str(DISCORD_BASE_CHANNEL + i)
        if channel not in channels:
            channels.append(channel)
        return channel

    teams = 0
    if name == "one":
        discord_q(0, discord_channel(0), 0.0)
    elif name in ("discord20", "discord100"):
        n = 20 if name == "discord20" else 100
        for i in range(n):
            discord_q(i, discord_channel(i), rng.uniform(0, 1.0))
    elif name == "channel20":
        channel = discord_channel(0)
        for i in range(20):
            discord_q(i, channel, rng.uniform(0, 1.0))
    elif name == "mixed1000":
        teams = 10
        for i in range(900):
            team = i % teams
            kind = "dm_thread" if rng.random() < 0.2 else "mention"
            channel = f"D{team}{i:04d}" if kind == "dm_thread" else f"C{team}{rng.randrange(10)}"
            slack_q(questions, team, channel, f"U{team}{rng.randrange(100):03d}", kind, rng.uniform(0, args.ramp))
        for i in range(100):
            discord_q(i, discord_channel(i), rng.uniform(0, args.ramp))
    elif name == "slack200":
        teams = 1
        for _ in range(200):
            channel = f"C0{rng.randrange(20):02d}"
            slack_q(questions, 0, channel, f"U0{rng.randrange(40):03d}", "mention", rng.uniform(0, 2.0))
    return questions, teams, channels


def slack_q(questions: list[Question], team: int, channel: str, user: str, kind: str, at: float) -> None:
    n = len(questions)
    ts = f"{1_690_000_000 + n}.{n:06d}"
    thread_ts = f"{1_680_000_000 + n}.000100" if kind == "dm_thread" else ""
    questions.append(Question(f"q{n}", "slack", at, channel, user, team, kind, ts, thread_ts))


# -- the product's core, measured ------------------------------------------------------------------


class MeasuredCore:
    """The product's ChatCore (core/app.py: the pipeline over the embedded SQLite store, retrieval and
    the Anthropic SDK against the loopback model), noting when each answer starts and ends and which
    messages show it. Everything else is the core's own."""

    def __init__(self, core: ChatCore, answers: dict[str, Answer]) -> None:
        self.core = core
        self.answers = answers
        self.finished = 0
        self.all_done = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    async def answer(self, message: IncomingMessage, surface: Surface, *args: Any, **kwargs: Any) -> Outcome:
        found = re.search(r"\bq\d+\b", message.text)
        answer = self.answers.get(found.group(0)) if found else None
        if answer is None:
            return await self.core.answer(message, surface, *args, **kwargs)
        answer.native = bool(getattr(surface, "native_streaming", False))
        answer.started = time.monotonic()
        try:
            outcome = await self.core.answer(message, surface, *args, **kwargs)
            if outcome.status != "answered":
                answer.error = f"{outcome.status}: {outcome.reason}"
            return outcome
        except Exception as exc:
            answer.error = repr(exc)
            raise
        finally:
            answer.ended = time.monotonic()
            answer.message_ids = list(surface.place()["ids"]) if isinstance(surface, Placed) else []
            self.finished += 1
            if self.finished == len(self.answers):
                self.all_done.set()


# -- one scenario -------------------------------------------------------------------------------------


class Platforms:
    """bench/platforms.py in its own process, spoken to in JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, config: dict[str, Any]) -> tuple[Platforms, dict[str, Any]]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.platforms", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        platforms = cls(process)
        return platforms, await platforms.ask(config)

    async def ask(self, data: dict[str, Any], *, timeout_s: float = 600) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(data) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    questions, teams, channels = build(name, rng, args)
    answers = {
        q.id: make_answer(rng, rng.randint(args.min_tokens, args.max_tokens), args.token_rate) for q in questions
    }
    team_ids = [f"T{i:02d}BENCH" for i in range(teams)]
    model = {qid: {"pieces": a.chunks, "gaps": a.gaps, "think_s": a.think_s} for qid, a in answers.items()}
    platforms, urls = await Platforms.start(
        {"latency_s": args.latency, "discord_channels": channels, "slack_teams": team_ids, "answers": model}
    )
    data = tempfile.TemporaryDirectory()  # the core's SQLite store and knowledge
    settings = Settings(
        CHATBOT_DATA_DIR=Path(data.name),
        ANTHROPIC_API_KEY="bench",
        ANTHROPIC_BASE_URL=urls["anthropic"],
        CHATBOT_RETRIEVAL=args.retrieval,
    )
    core = await build_core(settings)
    # Each workspace's own documents, so every question is answered from a real search.
    curator = Actor("bench-curator", PlatformFacts(is_admin=True))
    places = [WorkspaceRef(Platform.SLACK, t) for t in team_ids]
    if channels:
        places.append(WorkspaceRef(Platform.DISCORD, DISCORD_GUILD_ID))
    for ws in places:
        await core.ingest(ws, curator, [str(ROOT / doc) for doc in KNOWLEDGE])
    measured = MeasuredCore(core, answers)
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    cpu0 = time.process_time()
    peak_rss = rss_before
    peak_live = 0
    client: ChatbotClient | None = None
    runner_task: asyncio.Task[None] | None = None
    bots: list[SlackBot] = []
    runners = []
    try:
        if any(q.platform == "discord" for q in questions):
            discord.http.Route.BASE = urls["discord_api"].rstrip("/")
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(urls["discord_gateway"])
            client = ChatbotClient(measured)  # type: ignore[arg-type]
            runner_task = asyncio.create_task(client.start(urls["discord_token"]))
            await asyncio.wait_for(client.wait_until_ready(), 30)
        slack_scheduler = core.scheduler()  # one Slack budget for every workspace's bot, as in one process
        slack_urls: list[str] = []
        for api in urls["slack_api"]:
            bot = SlackBot(
                measured,  # type: ignore[arg-type]  # the real core, timed
                token=BOT_TOKEN,
                signing_secret=SIGNING_SECRET,
                api_url=api,
                scheduler=slack_scheduler,
            )
            runner, url = await serve(bot.web_app())
            bots.append(bot)
            runners.append(runner)
            slack_urls.append(url + EVENTS_PATH)
        for q in questions:
            q.text = f"{q.id} please explain how the reply streams"
        plan = [{**q.__dict__, "team_id": team_ids[q.team] if q.platform == "slack" else ""} for q in questions]
        t_start = time.monotonic()

        async def sample() -> None:
            nonlocal peak_rss, peak_live
            while True:
                peak_rss = max(peak_rss, proc.memory_info().rss)
                peak_live = max(peak_live, sum(1 for a in answers.values() if a.started and not a.ended))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        sent = await platforms.ask({"questions": plan, "slack_urls": slack_urls})
        await asyncio.wait_for(measured.all_done.wait(), args.timeout)
        for bot in bots:
            await bot.drain(timeout_s=60)
        if client is not None:
            await client.drain(60)
        wall = time.monotonic() - t_start
        cpu = time.process_time() - cpu0
        sampler.cancel()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "platforms.json"
            await platforms.ask({"path": str(path)})
            seen = json.loads(path.read_text())
        for qid, produced in seen["model"].items():
            answers[qid].produced = [(at, count) for at, count in produced]
    finally:
        for bot in bots:
            await bot.close()
        for runner in runners:
            await runner.cleanup()
        if client is not None:
            await client.close()
        if runner_task is not None:
            runner_task.cancel()
        await core.close()
        data.cleanup()
        await platforms.stop()
    result = analyze(name, questions, answers, seen, team_ids, sent.get("sent", 0))
    result.update(
        wall_s=wall,
        bot_cpu_s=cpu,
        cpu_ms_per_reply=1000 * cpu / max(1, len(questions)),
        peak_rss_mb=peak_rss / 2**20,
        peak_live_replies=peak_live,
        threads_opened=len(seen["discord"]["threads"]),
    )
    return result


# -- what users saw -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def locate(answer: str, shown: str, lower: int) -> tuple[int, int] | None:
    """Where the slice of the answer that a message shows lies in the answer (fence lines the splitter
    added at either end left out): (start, end), or None if it is not a slice of the answer."""
    candidates = [shown]
    lines = shown.split("\n")
    if len(lines) > 1 and lines[0].lstrip()[:3] in ("```", "~~~"):
        candidates.append("\n".join(lines[1:]))  # a reopened fence
    for body in list(candidates):
        tail = body.rsplit("\n", 1)
        if len(tail) == 2 and tail[1] and set(tail[1]) <= {"`", "~"}:
            candidates.append(tail[0])  # a closed fence (the newline may be the answer's own)
            candidates.append(tail[0] + "\n")
        elif body and set(body.rsplit("\n", 1)[-1]) <= {"`", "~"}:
            candidates.append(body.rstrip("`~"))
    best: tuple[int, int] | None = None
    for body in candidates:
        if not body or body == "…":
            continue
        start = answer.find(body, lower)
        if start >= 0 and (best is None or start + len(body) > best[1]):
            best = (start, start + len(body))
    return best


def visible_timeline(answer: Answer, versions: list[tuple[float, str]], keys: list[str]) -> list[tuple[float, int]]:
    """(time, how much of the answer is visible without a gap) after every version of its messages."""
    spans: dict[int, tuple[int, int]] = {}
    timeline: list[tuple[float, int]] = []
    for at, index, text in sorted((at, keys.index(k), text) for at, k, text in versions):  # type: ignore[misc]
        lower = spans[index - 1][0] if index - 1 in spans else 0
        span = locate(answer.text, text, lower)
        if span is not None:
            spans[index] = span
        covered = 0
        for i in range(len(keys)):
            if i not in spans or spans[i][0] > covered:
                break
            covered = max(covered, spans[i][1])
        timeline.append((at, covered))
    return timeline


def staleness_samples(answer: Answer, timeline: list[tuple[float, int]], step: float = 0.01) -> list[float]:
    """Every 10 ms from the first token until all is visible: the age of the oldest unshown token."""
    if not answer.produced:
        return []
    produced_times = [t for t, _ in answer.produced]
    produced_len = [n for _, n in answer.produced]
    full = len(answer.text)
    end = next((at for at, n in timeline if n >= full), None)
    end = end if end is not None else (timeline[-1][0] if timeline else answer.produced[-1][0])
    samples: list[float] = []
    t = answer.produced[0][0]
    vi = 0
    visible = 0
    while t <= end + 1e-9:
        while vi < len(timeline) and timeline[vi][0] <= t:
            visible = max(visible, timeline[vi][1])
            vi += 1
        sent = produced_len[bisect.bisect_right(produced_times, t) - 1]
        if visible >= sent:
            samples.append(0.0)
        else:
            # The oldest unshown character is at `visible`: the event that produced it.
            k = bisect.bisect_right(produced_len, visible)
            samples.append(t - produced_times[k])
        t += step
    return samples


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0)


def analyze(
    name: str,
    questions: list[Question],
    answers: dict[str, Answer],
    seen: dict[str, Any],
    team_ids: list[str],
    sent: int,
) -> dict[str, Any]:
    by_key: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for at, _channel, mid, text in seen["discord"]["versions"]:
        by_key[f"d:{mid}"].append((at, f"d:{mid}", text))
    for team, slack in zip(team_ids, seen["slack"], strict=True):
        for at, channel, ts, text in slack["versions"]:
            by_key[f"s:{team}:{channel}:{ts}"].append((at, f"s:{team}:{channel}:{ts}", text))
    d_messages = seen["discord"]["messages"]
    d_threads = seen["discord"]["threads"]
    platforms: dict[str, dict[str, Any]] = {}
    for platform in ("discord", "slack"):
        qs = [q for q in questions if q.platform == platform]
        if not qs:
            continue
        stale: list[float] = []
        floors: list[float] = []
        ttfv: list[float] = []
        final_lag: list[float] = []
        equal = attached = native = 0
        live_update: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for q in qs:
            a = answers[q.id]
            if platform == "slack" and not a.native:
                live_update[q.team].append((a.started, a.ended))
        update_rate = slack_limits.METHODS["chat.update"].budget.per_second
        for q in qs:
            a = answers[q.id]
            native += a.native
            if platform == "discord":
                keys = [f"d:{m}" for m in a.message_ids]
            else:
                keys = [f"s:{team_ids[q.team]}:{q.channel}:{m}" for m in a.message_ids]
            versions = [v for k in keys for v in by_key.get(k, [])]
            timeline = visible_timeline(a, versions, keys)  # type: ignore[arg-type]
            full = len(a.text)
            if not a.error and timeline and max(n for _, n in timeline) >= full:
                last = {k: max(v for v in by_key[k])[2] for k in keys if by_key.get(k)}
                ok = len(last) == len(keys) and all(locate(a.text, t, 0) is not None for t in last.values())
                equal += ok
            samples = staleness_samples(a, timeline)
            stale.extend(samples)
            if platform == "slack" and not a.native:
                spans = live_update[q.team]
                t = a.produced[0][0] if a.produced else 0.0
                for _ in samples:
                    live = sum(1 for s, e in spans if s <= t <= e)
                    floors.append(live / update_rate)
                    t += 0.01
            first = next((at for at, n in timeline if n > 0), None)
            if first is not None and a.produced:
                ttfv.append(first - a.produced[0][0])
            whole = next((at for at, n in timeline if n >= full), None)
            if whole is not None and a.produced:
                final_lag.append(max(0.0, whole - a.produced[-1][0]))
            attached += is_attached(platform, q, a, d_messages, d_threads, seen, team_ids, seen["sent"])
        platforms[platform] = {
            "replies": len(qs),
            "final_text_equal": equal,
            "attached": attached,
            "native_streams": native,
            "staleness_p50_s": percentile(stale, 0.5),
            "staleness_p99_s": percentile(stale, 0.99),
            "tier3_floor_p99_s": percentile(floors, 0.99) if floors else None,
            "ttfv_p50_s": percentile(ttfv, 0.5),
            "ttfv_p99_s": percentile(ttfv, 0.99),
            "final_lag_p50_s": percentile(final_lag, 0.5),
            "final_lag_p99_s": percentile(final_lag, 0.99),
            "errors": sum(1 for q in qs if answers[q.id].error),
        }
    return {
        "scenario": name,
        "description": SCENARIOS[name],
        "questions_delivered": sent,
        "responses_429": sum(count_429(seen).values()),
        "responses_429_by_route": count_429(seen),
        "streams_left_open": sum(1 for s in seen["slack"] for _, streaming in s["messages"].values() if streaming),
        "windows": windows(seen, team_ids),
        "platforms": platforms,
    }


def is_attached(
    platform: str, q: Question, a: Answer, d_messages: dict[str, Any], d_threads: dict[str, str],
    seen: dict[str, Any], team_ids: list[str], sent: dict[str, Any],
) -> bool:  # fmt: skip
    if not a.message_ids:
        return False
    if platform == "discord":
        question_id = sent.get(q.id, {}).get("message_id")
        first_channel = d_messages.get(a.message_ids[0], [None])[0]
        if first_channel in d_threads:  # answered in the thread started from the question
            return first_channel == question_id and all(d_messages[m][0] == first_channel for m in a.message_ids)
        expected = [question_id, *a.message_ids[:-1]]
        return [d_messages.get(m, [None, None])[1] for m in a.message_ids] == expected
    slack = seen["slack"][q.team]["messages"]
    thread = q.thread_ts or q.ts
    return all(slack.get(f"{q.channel}:{m}", [None])[0] == thread for m in a.message_ids)


def count_429(seen: dict[str, Any]) -> dict[str, int]:
    """429 responses by platform and route or method."""
    counts: dict[str, int] = defaultdict(int)
    for method, path, _at, status in seen["discord"]["calls"]:
        if status == 429:
            parts = path.strip("/").split("/")
            route = "/".join(p if not p.isdigit() else "{id}" for p in parts)
            counts[f"discord {method} /{route}"] += 1
    for slack in seen["slack"]:
        for method, _at, status, _channel in slack["calls"]:
            if status == 429:
                counts[f"slack {method}"] += 1
    return dict(counts)


def windows(seen: dict[str, Any], team_ids: list[str]) -> list[dict[str, Any]]:
    """Per method (and scope): the most calls any workspace/channel made in one window, vs the limit."""
    rows: list[dict[str, Any]] = []
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    for slack in seen["slack"]:
        for method, at, _status, channel in slack["calls"]:
            spec = slack_limits.METHODS.get(method)
            if spec is not None:
                per[(method, f"{slack['team']}:{channel}" if spec.per_channel else slack["team"])].append(at)
    best: dict[str, int] = defaultdict(int)
    for (method, _scope), times in per.items():
        best[method] = max(best[method], max_in_window(times, slack_limits.METHODS[method].budget.window_s))
    for method, count in sorted(best.items()):
        budget = slack_limits.METHODS[method].budget
        rows.append({"platform": "slack", "method": method, "max_in_window": count, "limit": budget.limit,
                     "window_s": budget.window_s})  # fmt: skip
    channel_times: dict[str, list[float]] = defaultdict(list)
    all_times: list[float] = []
    for method, path, at, _status in seen["discord"]["calls"]:
        all_times.append(at)
        parts = path.strip("/").split("/")
        is_message = len(parts) in (3, 4) and parts[0] == "channels" and parts[2] == "messages"
        if is_message and method in ("POST", "PATCH"):
            channel_times[parts[1]].append(at)
    if all_times:
        msg = discord_limits.CHANNEL_MESSAGES
        rows.append({"platform": "discord", "method": "channel messages (POST+PATCH)",
                     "max_in_window": max((max_in_window(t, msg.window_s) for t in channel_times.values()), default=0),
                     "limit": msg.limit, "window_s": msg.window_s})  # fmt: skip
        glob = discord_limits.GLOBAL
        rows.append({"platform": "discord", "method": "global (every request)",
                     "max_in_window": max_in_window(all_times, glob.window_s), "limit": glob.limit,
                     "window_s": glob.window_s})  # fmt: skip
    return rows


# -- output -------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = ["scenario", "platform", "replies", "429s", "text ok", "attached", "stale p50/p99 s",
              "Tier3 floor p99 s", "ttfv p50/p99 s", "final lag p50/p99 s", "CPU ms/reply", "peak RSS MB"]  # fmt: skip
    rows = [header]
    for r in results:
        for platform, p in r["platforms"].items():
            rows.append(
                [
                    r["scenario"], platform, str(p["replies"]), str(r["responses_429"]),
                    f"{p['final_text_equal']}/{p['replies']}", f"{p['attached']}/{p['replies']}",
                    f"{fmt(p['staleness_p50_s'])}/{fmt(p['staleness_p99_s'])}", fmt(p["tier3_floor_p99_s"]),
                    f"{fmt(p['ttfv_p50_s'])}/{fmt(p['ttfv_p99_s'])}",
                    f"{fmt(p['final_lag_p50_s'])}/{fmt(p['final_lag_p99_s'])}",
                    f"{r['cpu_ms_per_reply']:.1f}", f"{r['peak_rss_mb']:.0f}",
                ]
            )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print()
    for r in results:
        over = [w for w in r["windows"] if w["max_in_window"] > w["limit"]]
        shown = ", ".join(
            f"{w['method']} {w['max_in_window']}/{w['limit']} per {w['window_s']:g}s" for w in r["windows"]
        )
        print(f"{r['scenario']}: most calls in any window: {shown}; over a limit: {len(over)}; "
              f"threads opened: {r['threads_opened']}; native streams left open: {r['streams_left_open']}")  # fmt: skip


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for name in args.scenario or DEFAULT_SCENARIOS:
        result = await run_scenario(name, args)
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Streaming benchmark on the real Slack and Discord adapters.")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these (repeatable)")
    parser.add_argument("--token-rate", type=float, default=50.0, help="mean model tokens per second (50)")
    parser.add_argument("--min-tokens", type=int, default=360)
    parser.add_argument("--max-tokens", type=int, default=440)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the 1,000 start (2)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per platform request (0.1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a scenario may take (900)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--retrieval", choices=("hybrid", "keyword"), default="hybrid", help="the core retrieval (hybrid)"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    import logging

    logging.getLogger("discord").setLevel(logging.ERROR)
    results = asyncio.run(main_async(args))
    print()
    print_table(results)


if __name__ == "__main__":
    main()
