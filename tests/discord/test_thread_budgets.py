"""A reply moved into a thread waits in the thread's budget, not the busy channel's, and every request
is paid in the budget of the channel it goes to, whatever the `threads` setting decides when the thread
is opened. The real client against the loopback Discord (which enforces 5 writes per 5 s per channel
and 50 requests per second)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import pytest

from bots.discord.threads import BUSY_NOTICE
from core.pacing import EditScheduler, SchedulerObserver, TokenBucket
from core.surface import RateScope
from tests.discord.test_busy_threads import wait_for
from tests.discord.test_discord import MEMBER, Harness, _ws_and_owner, harness  # noqa: F401  (the fixture)
from tests.fakes.discord import CHANNEL_ID, FakeDiscord

LONG = " ".join(f"word{i}" for i in range(90))  # streams for about 5 s at 3 characters every 20 ms


class Paid:
    """What the bot paid for, per budget scope: grants, less the tokens given back (a grant not used, or
    granted to a wait cancelled meanwhile)."""

    def __init__(self, scheduler: EditScheduler, monkeypatch: pytest.MonkeyPatch) -> None:
        self.granted_by: Counter[str] = Counter()
        self.refunded_by: Counter[str] = Counter()
        self._inner: SchedulerObserver | None = scheduler.observer
        scheduler.observer = self
        refund = TokenBucket.refund

        def refunded(bucket: TokenBucket, now: float) -> None:
            self.refunded_by[bucket.key] += 1
            refund(bucket, now)

        monkeypatch.setattr(TokenBucket, "refund", refunded)

    def granted(self, scopes: Sequence[RateScope]) -> None:
        self.granted_by.update(s.key for s in scopes)
        if self._inner is not None:
            self._inner.granted(scopes)

    def rate_limited(self, scope: RateScope) -> None:
        if self._inner is not None:
            self._inner.rate_limited(scope)

    def messages(self, channel_id: str) -> int:
        """Message writes (creates and edits) paid in a channel's (or thread's) budget."""
        key = f"discord:channel:{channel_id}"
        return self.granted_by[key] - self.refunded_by[key]


@pytest.fixture
def paid(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Paid:  # noqa: F811
    return Paid(harness.client.scheduler, monkeypatch)


def writes(fake: FakeDiscord) -> Counter[str]:
    """Message creates and edits the loopback Discord received, per channel (or thread)."""
    sent: Counter[str] = Counter()
    for call in fake.calls:
        parts = call.path.strip("/").split("/")
        if parts[0] == "channels" and len(parts) in (3, 4) and parts[2] == "messages" and call.method != "GET":
            sent[parts[1]] += 1
    return sent


def assert_each_write_paid_where_it_went(paid: Paid, fake: FakeDiscord) -> None:
    sent = writes(fake)
    assert sent, "no writes"
    assert {c: paid.messages(c) for c in sent} == dict(sent)


async def test_a_question_moved_out_of_a_busy_channel_is_answered_without_waiting_for_that_channel(
    harness: Harness,  # noqa: F811
    paid: Paid,
) -> None:
    fake, client = harness.fake, harness.client
    client.busy.smooth = 3  # three replies stream in the channel and keep its bucket (0.8 writes/s) busy
    harness.llm.script_for("streaming", LONG, chunk_chars=3, delay_s=0.02)
    harness.llm.script_for("moved", "Answered in a thread of its own.", chunk_chars=8, delay_s=0.02)
    for i in range(3):
        await fake.send_message(MEMBER, f"streaming question {i}?")
    await wait_for(lambda: len(fake.bot_messages()) == 3)  # every one of them shows in the channel
    asked = time.monotonic()
    moved = [await fake.send_message(MEMBER, f"moved question {i}?") for i in range(2)]
    await wait_for(lambda: all(fake.bot_messages(q["id"]) for q in moved))
    await wait_for(lambda: not client._tasks)

    assert sorted(t["id"] for t in fake.threads) == sorted(q["id"] for q in moved)
    in_channel = [m["content"] for m in fake.bot_messages()]
    assert in_channel.count(BUSY_NOTICE) == 1  # once per busy spell, in the channel
    assert len(in_channel) == 4 and all(m.endswith("word89") for m in in_channel if m != BUSY_NOTICE)
    for question in moved:
        [reply] = fake.bot_messages(question["id"])
        assert reply["content"] == "Answered in a thread of its own."
    # Each moved reply waited in its thread's budget, not the busy channel's: every write, the first post
    # too, was paid where it went. And the first post did not wait for the channel's busy notice.
    assert_each_write_paid_where_it_went(paid, fake)
    first_posts = [
        next(i for i, c in enumerate(fake.calls) if c.method == "POST" and c.path == f"/channels/{q['id']}/messages")
        for q in moved
    ]
    notice = next(
        i for i, c in enumerate(fake.calls) if isinstance(c.body, dict) and c.body.get("content") == BUSY_NOTICE
    )
    assert notice > min(first_posts)  # the notice went on the side, in the busy channel's budget
    assert fake.rate_limited == []  # nothing went over a limit
    landed = ", ".join(f"{fake.calls[i].at - asked:.2f} s" for i in first_posts)
    print(
        f"first posts in their threads {landed} after the questions; the notice {fake.calls[notice].at - asked:.2f} s"
    )


async def test_a_question_expected_in_a_thread_is_answered_in_its_channel_in_the_channels_budget_with_threads_never(
    harness: Harness,  # noqa: F811
    paid: Paid,
) -> None:
    fake, client = harness.fake, harness.client
    harness.llm.script_for("streaming", LONG, chunk_chars=3, delay_s=0.02)
    first = await fake.send_message(MEMBER, "streaming question?")
    await wait_for(lambda: fake.bot_messages())  # posted: the setting (auto) has been read
    await harness.core.admin.run(*_ws_and_owner(), "settings set threads never")  # type: ignore[arg-type]
    harness.llm.script_for("second", "Answered in the channel after all.")
    second = await fake.send_message(MEMBER, "second question, while the channel is busy?")
    await wait_for(lambda: len(fake.bot_messages()) == 2 and not client._tasks)

    assert fake.threads == [] and client.busy.moved == 0
    replies = {m["message_reference"]["message_id"]: m["content"] for m in fake.bot_messages()}
    assert replies == {first["id"]: LONG, second["id"]: "Answered in the channel after all."}
    # The second reply's first post waited in the budget of the thread it was expected to open, gave that
    # grant back when no thread came, and was paid in the channel's budget instead.
    assert paid.granted_by[f"discord:channel:{second['id']}"] >= 1
    assert paid.messages(second["id"]) == 0
    assert_each_write_paid_where_it_went(paid, fake)
    assert fake.rate_limited == []


async def test_with_threads_always_the_first_question_is_paid_in_its_thread_though_the_setting_was_not_read_yet(
    harness: Harness,  # noqa: F811
    paid: Paid,
) -> None:
    fake, client = harness.fake, harness.client
    await harness.core.admin.run(*_ws_and_owner(), "settings set threads always")  # type: ignore[arg-type]
    questions = []
    for i in range(2):  # the first before the setting was read here, the second after
        questions.append(await fake.send_message(MEMBER, f"question {i}?"))
        await wait_for(lambda: fake.bot_messages(questions[-1]["id"]) and not client._tasks)

    assert [t["id"] for t in fake.threads] == [q["id"] for q in questions]
    assert fake.bot_messages() == []  # nothing in the channel itself
    assert writes(fake)[CHANNEL_ID] == 0 and paid.messages(CHANNEL_ID) == 0
    # Only the first reply expected the channel (its grant there given back); the second, its thread.
    assert paid.granted_by[f"discord:channel:{CHANNEL_ID}"] == 1
    assert_each_write_paid_where_it_went(paid, fake)
    assert fake.rate_limited == []
