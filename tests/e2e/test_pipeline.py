"""The pipeline in-process on the embedded defaults, the real Anthropic SDK against the loopback fake."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.shell.shell import StreamSurface
from core.app import ChatCore, build_core
from core.config import Settings
from core.messages import Actor, IncomingMessage, MessageRole, Platform, PlatformFacts, ReplyStatus, WorkspaceRef
from core.pacing import EditScheduler
from core.roles import Role
from core.stores.base import ChannelMode, Delta
from tests.fakes.anthropic import FakeAnthropic

WS = WorkspaceRef(Platform.SLACK, "T1")
OWNER = Actor("UOWNER", PlatformFacts(is_owner=True))
ADMIN = Actor("UADMIN", PlatformFacts(is_admin=True))
MEMBER = Actor("UMEMBER")


@pytest.fixture
async def core(data_dir: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[ChatCore]:
    settings = Settings(CHATBOT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=fake_anthropic.url)
    chat = await build_core(settings)
    yield chat
    await chat.close()


def question(
    text: str,
    *,
    author: Actor = MEMBER,
    thread: str = "1700000000.000100",
    channel: str = "C1",
    message_id: str | None = None,
    mentioned: bool = True,
    is_dm: bool = False,
) -> IncomingMessage:
    return IncomingMessage(
        workspace=WS,
        channel_id=channel,
        thread_id=thread,
        message_id=message_id or uuid.uuid4().hex,
        author=author,
        text=text,
        is_dm=is_dm,
        mentioned=mentioned,
    )


class Screen:
    """A real surface (the shell's) writing to memory, so tests read what a user would see."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.surface = StreamSurface(self.out, self.err)


async def ask(core: ChatCore, message: IncomingMessage) -> tuple[str, Screen]:
    screen = Screen()
    outcome = await core.answer(message, screen.surface, EditScheduler())
    return outcome.status, screen


async def test_a_duplicate_delivery_is_answered_once(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    message = question("What is our VPN?", message_id="1700000000.000200")
    results = await asyncio.gather(ask(core, message), ask(core, message), ask(core, message))
    statuses = sorted(status for status, _ in results)
    assert statuses == ["answered", "duplicate", "duplicate"]
    assert len(fake_anthropic.requests) == 1


async def test_thread_history_reaches_the_model(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("Paris is the capital of France.")
    await ask(core, question("What is the capital of France?", thread="T-A"))
    fake_anthropic.script("About 2.1 million people.")
    status, _ = await ask(core, question("How many people live there?", thread="T-A", mentioned=False))
    assert status == "answered"  # a follow-up in a thread the bot is in needs no mention
    turns = fake_anthropic.last_request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"] == "What is the capital of France?"
    assert turns[1]["content"] == "Paris is the capital of France."


async def test_unaddressed_chatter_is_ignored_without_a_trace(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    status, screen = await ask(core, question("lunch anyone?", thread="T-unknown", mentioned=False))
    assert status == "ignored"
    assert screen.out.getvalue() == screen.err.getvalue() == ""
    assert fake_anthropic.requests == []
    assert await core.store.find_thread(WS, "C1", "T-unknown") is None


async def test_blocked_user_is_refused_politely_and_audited(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    await core.store.set_blocked(WS, ADMIN, "UBAD", True)
    status, screen = await ask(core, question("hi", author=Actor("UBAD")))
    assert status == "refused"
    assert "can't ask me" in screen.err.getvalue()
    assert fake_anthropic.requests == []
    entries = await core.store.audit_entries(WS, ADMIN, limit=5)
    assert entries[0].action == "refused" and entries[0].actor_id == "UBAD"


async def test_guests_ask_only_where_the_workspace_allows(core: ChatCore) -> None:
    await core.store.update_settings(WS, ADMIN, {"default_role": Role.GUEST})
    status, screen = await ask(core, question("may I?", author=Actor("UGUEST")))
    assert status == "refused" and "guest" in screen.err.getvalue()
    await core.store.update_settings(WS, ADMIN, {"guests_may_ask": True})
    status, _ = await ask(core, question("may I now?", author=Actor("UGUEST")))
    assert status == "answered"
    status, screen = await ask(core, question("and in a DM?", author=Actor("UGUEST"), is_dm=True))
    assert status == "refused"  # DMs stay for members and up


async def test_denied_and_allow_listed_channels(core: ChatCore) -> None:
    await core.admin.set_channel(WS, ADMIN, "C-DENY", ChannelMode.DENY)
    status, screen = await ask(core, question("hello?", channel="C-DENY"))
    assert status == "refused" and "not answering" in screen.err.getvalue()
    await core.admin.set_channel(WS, ADMIN, "C-OK", ChannelMode.ALLOW)
    status, screen = await ask(core, question("hello?", channel="C-OTHER"))
    assert status == "refused" and "C-OK" in screen.err.getvalue()
    status, _ = await ask(core, question("hello?", channel="C-OK"))
    assert status == "answered"


async def test_quota_stops_a_user_for_the_hour(core: ChatCore) -> None:
    await core.admin.update_settings(WS, ADMIN, "quota.member", "2")
    results = [await ask(core, question(f"q{i}")) for i in range(3)]
    assert [status for status, _ in results] == ["answered", "answered", "refused"]
    assert "limit of 2 questions" in results[2][1].err.getvalue()


async def test_a_question_refused_for_the_budget_uses_no_quota_slot(core: ChatCore) -> None:
    await core.admin.update_settings(WS, ADMIN, "quota.member", "2")
    assert (await ask(core, question("q0")))[0] == "answered"  # slot 1 of 2, and some tokens used
    assert "now 1 token" in await core.admin.run(WS, ADMIN, "budget month 1")
    refused = [await ask(core, question(f"over budget {i}")) for i in range(3)]
    assert all(status == "refused" and "token budget" in s.err.getvalue() for status, s in refused)
    await core.admin.run(WS, ADMIN, "budget month 10m")
    results = [await ask(core, question(f"q{i}")) for i in (1, 2)]
    assert [status for status, _ in results] == ["answered", "refused"]  # slot 2 was still free
    assert "limit of 2 questions" in results[1][1].err.getvalue()


async def test_failed_stream_is_saved_with_a_marker(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail_after(20, "Half of this answer arrives and then the stream breaks.")
    status, screen = await ask(core, question("tell me", thread="T-F"))
    assert status == "failed"
    assert "cut off" in screen.out.getvalue()
    thread = await core.store.find_thread(WS, "C1", "T-F")
    assert thread is not None
    page = await core.store.messages(WS, thread, limit=10)
    reply = page.items[0]
    assert reply.role is MessageRole.ASSISTANT and reply.status is ReplyStatus.FAILED
    assert reply.text.startswith("Half of this answer") and "cut off" in reply.text


async def test_admin_commands_respect_roles(core: ChatCore) -> None:
    refused = await core.admin.run(WS, MEMBER, "role set <@U9> curator")
    assert refused.startswith("Not allowed")
    granted = await core.admin.run(WS, ADMIN, "role set <@U9|nine> curator")
    assert "curator" in granted
    membership = await core.store.membership(WS, "U9")
    assert membership is not None and membership.role is Role.CURATOR
    above = await core.admin.run(WS, ADMIN, "role set <@U9> admin")
    assert above.startswith("Not allowed")
    assert "unknown role" in await core.admin.run(WS, ADMIN, "role set U9 emperor")
    assert "Commands" in await core.admin.run(WS, ADMIN, "help")
    assert "Commands" in await core.admin.run(WS, ADMIN, "frobnicate")
    listing = await core.admin.run(WS, ADMIN, "role list")
    assert "<@U9>: curator" in listing
    audit = await core.admin.run(WS, ADMIN, "audit")
    assert "refused" in audit
    assert (await core.admin.run(WS, MEMBER, "audit")).startswith("Not allowed")


async def test_replies_left_streaming_by_a_crash_are_marked_failed(core: ChatCore) -> None:
    thread = await core.store.thread_for(WS, "C1", "T-crash")
    reply = await core.store.add_message(WS, thread, MessageRole.ASSISTANT, "", status=ReplyStatus.STREAMING)
    await core.deltas.store.append_deltas([Delta(reply, 0, "Half an ans", WS.key)])
    await asyncio.sleep(0.05)
    assert await core.recover_stale(older_than_s=0.01) == 1
    message = await core.store.message(WS, reply)
    assert message is not None and message.status is ReplyStatus.FAILED
    assert message.text.startswith("Half an ans") and "restarted" in message.text
    assert await core.recover_stale(older_than_s=0.01) == 0


async def test_the_stored_reply_grows_while_streaming(core: ChatCore, fake_anthropic: FakeAnthropic) -> None:
    answer = "One two three four five six seven eight nine ten eleven twelve."
    fake_anthropic.script(answer, chunk_chars=4, delay_s=0.1)
    task = asyncio.create_task(ask(core, question("count for me", thread="T-grow")))
    seen: list[str] = []
    for _ in range(40):
        await asyncio.sleep(0.1)
        thread = await core.store.find_thread(WS, "C1", "T-grow")
        if thread is None:
            continue
        page = await core.store.messages(WS, thread, limit=1)
        if page.items and page.items[0].role is MessageRole.ASSISTANT:
            seen.append(page.items[0].text)
        if task.done():
            break
    status, _ = await task
    assert status == "answered"
    partial = [t for t in seen if t and t != answer]
    assert partial, "a subscriber saw the reply grow before it completed"
    assert all(answer.startswith(t) for t in partial)
    assert seen[-1] == answer
