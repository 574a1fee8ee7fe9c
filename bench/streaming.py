"""Streaming benchmark: N concurrent replies against rate-limited loopback Slack and Discord fakes.

    uv run python bench/streaming.py            # 1,000 concurrent conversations
    uv run python bench/streaming.py --chaos    # plus injected 429s and 5xx errors
    uv run python bench/streaming.py --n 200 --json

The fakes (bench/fakes.py) run in a separate process, so CPU and RSS are the bot's own. A fake LLM
in this process streams each answer at a set token rate with jitter; the real `ReplyStreamer` and
`EditScheduler` drive minimal aiohttp surfaces (bench/surfaces.py). Times are measured at the fake
servers (arrival of each request), against the time the fake LLM produced each chunk of text.

Figures:
  ttfv       first LLM token -> first visible text of the answer
  staleness  for every chunk the LLM produced: the time until it was visible on the platform
  pacing     the interval the platform's budget allows this reply at that moment: replies sharing
             the binding scope / its rate (Slack: live replies in the workspace / 44 per minute;
             Discord: max(live replies in the channel / 0.75 per s, live Discord replies / 44 per s))
  excess     staleness - pacing: what the engine adds on top of the platform's own limit
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psutil  # noqa: E402
import structlog  # noqa: E402

from bench.surfaces import (  # noqa: E402
    DISCORD_CHANNEL_RATE,
    DISCORD_GLOBAL_RATE,
    SLACK_UPDATE_RATE,
    DiscordBenchSurface,
    OfflineSurface,
    SlackBenchSurface,
)
from core.markdown import split_parts  # noqa: E402
from core.messages import ReplyStatus  # noqa: E402
from core.pacing import EditScheduler  # noqa: E402
from core.streaming import ReplyStreamer  # noqa: E402

WORDS = (
    *("the", "retrieval", "layer", "answers", "from", "each", "workspace's", "own", "documents", "and"),
    *("cites", "them", "so", "people", "can", "check", "the", "source", "before", "acting", "on", "it"),
    *("while", "the", "reply", "keeps", "growing", "in", "place", "as", "tokens", "arrive", "`code`"),
)


@dataclass
class Conversation:
    index: int
    platform: str
    group: str  # Slack workspace or Discord channel: the binding scope
    surface: SlackBenchSurface | DiscordBenchSurface | OfflineSurface
    start_at: float  # offset from the benchmark start
    think_s: float  # retrieval + time to first token
    chunks: list[str]
    gaps: list[float]
    text: str = ""
    streamer: ReplyStreamer | None = None
    started: float = 0.0
    ended: float = 0.0
    next_chunk: int = 0
    produced: list[tuple[float, int]] = field(default_factory=list)  # (time, total length so far)
    error: str = ""


def make_answer(rng: random.Random, tokens: int, with_code: bool) -> list[str]:
    """An answer as LLM-sized pieces (a word and its space), with paragraphs and maybe a code block."""
    pieces: list[str] = []
    for i in range(tokens):
        word = rng.choice(WORDS)
        if i and i % rng.randint(35, 70) == 0:
            pieces.append(".\n\n")
        pieces.append(word if not pieces or pieces[-1].endswith("\n") else " " + word)
        if with_code and i == tokens // 2:
            pieces.append(":\n\n```python\n")
            pieces.extend(f"value_{j} = compute({j})\n" for j in range(rng.randint(5, 25)))
            pieces.append("```\n\n")
    pieces.append(".")
    return pieces


def build(args: argparse.Namespace, session: aiohttp.ClientSession, urls: dict[str, str]) -> list[Conversation]:
    rng = random.Random(args.seed)
    n_discord = round(args.n * args.discord_share)
    n_slack = args.n - n_discord
    slack_ws = args.slack_workspaces or max(1, n_slack)
    conversations: list[Conversation] = []
    for i in range(args.n):
        surface: SlackBenchSurface | DiscordBenchSurface
        if i < n_slack:
            team = f"T{rng.randrange(slack_ws):05d}"
            channel = f"C{team[1:]}{rng.randrange(args.slack_channels)}"
            surface = SlackBenchSurface(session, urls["slack"], team, channel)
            platform, group = "slack", team
        else:
            guild = rng.randrange(args.discord_guilds)
            channel = f"{guild * 100 + rng.randrange(args.discord_channels)}"
            surface = DiscordBenchSurface(session, urls["discord"], channel)
            platform, group = "discord", channel
        tokens = rng.randint(args.min_tokens, args.max_tokens)
        chunks = make_answer(rng, tokens, with_code=rng.random() < 0.2)
        rate = args.token_rate * rng.uniform(0.7, 1.3)  # this reply's model speed
        # SSE events carry 1-4 pieces; the gaps between them jitter around the mean.
        grouped: list[str] = []
        gaps: list[float] = []
        j = 0
        while j < len(chunks):
            k = rng.randint(1, 4)
            grouped.append("".join(chunks[j : j + k]))
            gaps.append(rng.expovariate(rate / k))
            j += k
        conversations.append(
            Conversation(
                index=i,
                platform=platform,
                group=group,
                surface=surface,
                start_at=rng.uniform(0, args.ramp),
                think_s=rng.uniform(0.3, 1.5),
                chunks=grouped,
                gaps=gaps,
                text="".join(grouped),
            )
        )
    rng.shuffle(conversations)
    return conversations


class NullStreamer:
    """Takes the fake LLM's text and does nothing: the calibration run measures the LLM driver alone."""

    edits = 0
    rate_limited = 0

    def __init__(self, *_: object) -> None:
        self.message_ids: list[str] = []

    async def start(self) -> None:
        return None

    def feed(self, delta: str) -> None:
        return None

    async def finish(self, status: ReplyStatus) -> str:
        return ""


async def run_load(
    conversations: list[Conversation], schedulers: dict[str, EditScheduler], streamer_type: Any = ReplyStreamer
) -> float:
    """One driver task plays every conversation: starts, LLM events, finishes. Returns the wall time."""
    t0 = time.monotonic()
    heap: list[tuple[float, int, int]] = []  # (due, kind 0=start 1=chunk, index)
    for conv in conversations:
        heapq.heappush(heap, (t0 + conv.start_at, 0, conv.index))
    by_index = {c.index: c for c in conversations}
    pending = len(conversations)
    all_done = asyncio.Event()
    finishers: set[asyncio.Task[None]] = set()

    async def finish(conv: Conversation) -> None:
        nonlocal pending
        assert conv.streamer is not None
        try:
            await conv.streamer.finish(ReplyStatus.COMPLETE)
        except Exception as exc:
            conv.error = repr(exc)
        conv.ended = time.monotonic()
        pending -= 1
        if pending == 0:
            all_done.set()

    while heap:
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, kind, index = heapq.heappop(heap)
            conv = by_index[index]
            if kind == 0:
                conv.streamer = streamer_type(conv.surface, schedulers.get(conv.platform))
                conv.started = now
                await conv.streamer.start()
                heapq.heappush(heap, (now + conv.think_s, 1, index))
                continue
            assert conv.streamer is not None
            chunk = conv.chunks[conv.next_chunk]
            conv.streamer.feed(chunk)
            total = (conv.produced[-1][1] if conv.produced else 0) + len(chunk)
            conv.produced.append((now, total))
            conv.next_chunk += 1
            if conv.next_chunk < len(conv.chunks):
                heapq.heappush(heap, (now + conv.gaps[conv.next_chunk], 1, index))
            else:
                task = asyncio.create_task(finish(conv))
                finishers.add(task)
                task.add_done_callback(finishers.discard)
        if heap:
            await asyncio.sleep(max(0.0, heap[0][0] - time.monotonic()))
    await asyncio.wait_for(all_done.wait(), timeout=300)
    return time.monotonic() - t0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def locate(answer: str, shown: str, lower: int) -> tuple[int, int] | None:
    """Where the slice of the answer that a message shows lies in the answer: (start, end)."""
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
        if not body:
            continue
        start = answer.find(body, lower)
        if start >= 0 and (best is None or start + len(body) > best[1]):
            best = (start, start + len(body))
    return best


def common_prefix(a: str, b: str) -> int:
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # the longest equal prefix, by halving (slice compares run in C)
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class LiveCounter:
    """How many replies of a group were live (started, not finished) at a time."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {}
        self.ends: dict[str, list[float]] = {}

    def add(self, group: str, start: float, end: float) -> None:
        self.starts.setdefault(group, []).append(start)
        self.ends.setdefault(group, []).append(end)

    def freeze(self) -> None:
        for values in (*self.starts.values(), *self.ends.values()):
            values.sort()

    def at(self, group: str, t: float) -> int:
        return bisect.bisect_right(self.starts.get(group, []), t) - bisect.bisect_right(self.ends.get(group, []), t)


def analyze(conversations: list[Conversation], server_log: list[list[Any]]) -> dict[str, dict[str, Any]]:
    events: dict[str, list[tuple[float, str]]] = {}
    for at, key, text in server_log:
        events.setdefault(key, []).append((at, text))
    live = LiveCounter()
    for conv in conversations:
        live.add(f"{conv.platform}:{conv.group}", conv.started, conv.ended)
        live.add(conv.platform, conv.started, conv.ended)
    live.freeze()

    results: dict[str, dict[str, Any]] = {}
    for platform in ("slack", "discord"):
        convs = [c for c in conversations if c.platform == platform]
        if not convs:
            continue
        ttfv: list[float] = []
        stale: list[float] = []
        pacing: list[float] = []
        excess: list[float] = []
        equal = requests = limited = 0
        for conv in convs:
            streamer = conv.streamer
            assert streamer is not None
            requests += streamer.edits
            limited += streamer.rate_limited
            parts = split_parts(conv.text, conv.surface.max_chars)
            keys = [conv.surface.log_key(m) for m in streamer.message_ids]
            finals = [events[k][-1][1] if k in events else None for k in keys]
            if not conv.error and finals == [p.text for p in parts]:
                equal += 1
            # Visible prefix of the answer over time, as the fake servers saw it: each message shows
            # one slice of the answer (plus the fence lines the splitter added); the visible prefix is
            # how far those slices cover the answer without a gap.
            timeline = sorted((at, keys.index(key), text) for key in keys for at, text in events.get(key, []))
            spans: dict[int, tuple[int, int]] = {}
            visible: list[tuple[float, int]] = []
            for at, index, text in timeline:
                lower = spans[index - 1][0] if index > 0 and index - 1 in spans else 0
                span = locate(conv.text, text, lower)
                if span is not None:
                    spans[index] = span
                covered = 0
                for i in range(len(keys)):
                    if i not in spans or spans[i][0] > covered:
                        break
                    covered = max(covered, spans[i][1])
                visible.append((at, covered))
            first_visible = next((at for at, length in visible if length > 0), None)
            if first_visible is not None and conv.produced:
                ttfv.append(first_visible - conv.produced[0][0])
            cursor = 0
            for produced_at, total in conv.produced:
                while cursor < len(visible) and visible[cursor][1] < total:
                    cursor += 1
                if cursor == len(visible):
                    break
                seen_at = max(visible[cursor][0], produced_at)
                stale.append(seen_at - produced_at)
                if platform == "slack":
                    interval = live.at(f"slack:{conv.group}", produced_at) / SLACK_UPDATE_RATE
                else:
                    interval = max(
                        live.at(f"discord:{conv.group}", produced_at) / DISCORD_CHANNEL_RATE,
                        live.at("discord", produced_at) / DISCORD_GLOBAL_RATE,
                    )
                pacing.append(interval)
                excess.append(seen_at - produced_at - interval)
        results[platform] = {
            "replies": len(convs),
            "ttfv_p50_s": percentile(ttfv, 0.5),
            "ttfv_p99_s": percentile(ttfv, 0.99),
            "staleness_p50_s": percentile(stale, 0.5),
            "staleness_p99_s": percentile(stale, 0.99),
            "pacing_p50_s": percentile(pacing, 0.5),
            "pacing_p99_s": percentile(pacing, 0.99),
            "excess_p50_s": percentile(excess, 0.5),
            "excess_p99_s": percentile(excess, 0.99),
            "requests_per_reply": requests / len(convs),
            "rate_limited_429s": limited,
            "final_text_equal_pct": 100.0 * equal / len(convs),
            "errors": sum(1 for c in convs if c.error),
        }
    return results


async def fetch_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as resp:
        data: dict[str, Any] = await resp.json(content_type=None)
        return data


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    fakes = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fakes",
        "--chaos",
        str(args.chaos_p if args.chaos else 0.0),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert fakes.stdout is not None
        ports = json.loads(await asyncio.wait_for(fakes.stdout.readline(), timeout=30))
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        llm_cpu = engine_cpu = 0.0
        engine_requests = 0
        if args.calibrate:
            # The same conversations with a streamer that does nothing: the CPU of the fake LLM driver,
            # which is the benchmark's own cost, not the bot's.
            async with aiohttp.ClientSession() as idle:
                calibration = build(args, idle, urls)
                cpu0 = time.process_time()
                await run_load(calibration, {}, NullStreamer)
                llm_cpu = time.process_time() - cpu0
                del calibration
        connector = aiohttp.TCPConnector(limit=args.connections, ttl_dns_cache=None)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            conversations = build(args, session, urls)
            schedulers = {"slack": EditScheduler(), "discord": EditScheduler()}
            proc = psutil.Process()
            peak_rss = proc.memory_info().rss
            peak_live = 0
            sampling = True

            async def sample() -> None:
                nonlocal peak_rss, peak_live
                while sampling:
                    peak_rss = max(peak_rss, proc.memory_info().rss)
                    peak_live = max(peak_live, sum(1 for c in conversations if c.started and not c.ended))
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            cpu0 = time.process_time()
            wall = await run_load(conversations, schedulers)
            cpu = time.process_time() - cpu0
            sampling = False
            await sampler
            server = await fetch_json(session, f"{urls['slack']}/_log")  # one log for both fakes
            log: list[list[Any]] = server["log"]
        if args.calibrate:
            # The real engine on surfaces that make no HTTP calls: the engine's own CPU (after the
            # measured run, so its memory does not count in the bot's peak RSS).
            async with aiohttp.ClientSession() as idle:
                offline = build(args, idle, urls)
            for conv in offline:
                assert not isinstance(conv.surface, OfflineSurface)
                conv.surface = OfflineSurface(conv.surface)
            cpu0 = time.process_time()
            await run_load(offline, {"slack": EditScheduler(), "discord": EditScheduler()})
            engine_cpu = time.process_time() - cpu0 - llm_cpu
            engine_requests = sum(c.streamer.edits for c in offline if c.streamer is not None)
    finally:
        if fakes.stdin is not None:
            fakes.stdin.close()
        try:
            await asyncio.wait_for(fakes.wait(), timeout=10)
        except TimeoutError:
            fakes.kill()
            await fakes.wait()
    platforms = analyze(conversations, log)
    requests = sum(c.streamer.edits for c in conversations if c.streamer is not None)
    return {
        "command": " ".join(["bench/streaming.py", *sys.argv[1:]]),
        "conversations": args.n,
        "peak_concurrent_replies": peak_live,
        "chaos": args.chaos_p if args.chaos else 0.0,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak_rss / 2**20,
        "requests": requests,
        "cpu_ms_per_request": 1000 * cpu / max(1, requests),
        "fake_llm_cpu_s": llm_cpu,
        "cpu_ms_per_request_without_fake_llm": 1000 * (cpu - llm_cpu) / max(1, requests) if llm_cpu else None,
        "engine_cpu_ms_per_request": 1000 * engine_cpu / engine_requests if engine_requests else None,
        "engine_requests": engine_requests,
        "server_429s_for_exceeded_limits": server["limited"],
        "server_injected_faults": server["injected"],
        "platforms": platforms,
    }


def print_table(result: dict[str, Any]) -> None:
    columns = [
        ("replies", "replies", "{:d}"),
        ("ttfv p50/p99 s", ("ttfv_p50_s", "ttfv_p99_s"), "{:.2f}/{:.2f}"),
        ("stale p50/p99 s", ("staleness_p50_s", "staleness_p99_s"), "{:.2f}/{:.2f}"),
        ("pacing p50/p99 s", ("pacing_p50_s", "pacing_p99_s"), "{:.2f}/{:.2f}"),
        ("excess p50/p99 s", ("excess_p50_s", "excess_p99_s"), "{:.2f}/{:.2f}"),
        ("req/reply", "requests_per_reply", "{:.1f}"),
        ("429s", "rate_limited_429s", "{:d}"),
        ("final equal", "final_text_equal_pct", "{:.1f}%"),
    ]
    header = ["platform", *[c[0] for c in columns]]
    rows = [header]
    for platform, figures in result["platforms"].items():
        row = [platform]
        for _, key, fmt in columns:
            values = [figures[k] for k in key] if isinstance(key, tuple) else [figures[key]]
            row.append(fmt.format(*values))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"\n{result['conversations']} conversations (peak {result['peak_concurrent_replies']} live), "
        f"wall {result['wall_s']:.1f} s, bot CPU {result['cpu_s']:.2f} s, "
        f"{result['cpu_ms_per_request']:.3f} ms CPU per request ({result['requests']} requests; "
        f"{result['cpu_ms_per_request_without_fake_llm'] or float('nan'):.3f} ms without the fake LLM's "
        f"{result['fake_llm_cpu_s']:.2f} s; the engine alone, without HTTP: "
        f"{result['engine_cpu_ms_per_request'] or float('nan'):.3f} ms), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB; 429s for exceeded limits at the servers: "
        f"{result['server_429s_for_exceeded_limits']}; injected faults: {result['server_injected_faults']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Streaming benchmark: N concurrent replies against rate-limited Slack and Discord fakes.",
        epilog="Figures are measured at the fake servers; see the module docstring for definitions.",
    )
    parser.add_argument("--n", type=int, default=1000, help="concurrent conversations (default 1000)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--chaos", action="store_true", help="inject random 429s and 5xx errors at the fakes")
    parser.add_argument("--chaos-p", type=float, default=0.03, help="probability of each injected fault (0.03)")
    parser.add_argument("--discord-share", type=float, default=0.1, help="share of conversations on Discord (0.1)")
    parser.add_argument("--slack-workspaces", type=int, default=0, help="Slack workspaces (default: one per reply)")
    parser.add_argument("--slack-channels", type=int, default=4, help="channels per Slack workspace (4)")
    parser.add_argument("--discord-guilds", type=int, default=25, help="Discord guilds (25)")
    parser.add_argument("--discord-channels", type=int, default=4, help="channels per Discord guild (4)")
    parser.add_argument("--token-rate", type=float, default=50.0, help="mean LLM tokens per second (50)")
    parser.add_argument("--min-tokens", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds over which conversations start (4)")
    parser.add_argument("--connections", type=int, default=256, help="HTTP connections to the fakes (256)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false", help="skip the run that measures the fake LLM's CPU"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_table(result)
    print()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
