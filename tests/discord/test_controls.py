"""Stop and Regenerate on Discord, end to end: button clicks as component interactions over the gateway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.discord.test_discord import MEMBER, MOD, Harness, bot_process, harness  # noqa: F401  (the fixture)
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord
from tests.slack.test_controls import LONG


async def first_reply_with(h: Harness, label: str, limit_s: float = 20) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        replies = h.fake.bot_messages()
        if replies and any(b.get("label") == label for b in h.fake.buttons(str(replies[0]["id"]))):
            return replies[0]
        assert loop.time() < deadline, f"no reply with a {label} button"
        await asyncio.sleep(0.025)


def custom_id(h: Harness, message: dict[str, object], label: str) -> str:
    return next(str(b["custom_id"]) for b in h.fake.buttons(str(message["id"])) if b.get("label") == label)


async def test_stop_ends_a_streaming_reply_marked_stopped(harness: Harness) -> None:  # noqa: F811
    h = harness
    h.llm.script(LONG, chunk_chars=10, delay_s=0.1)
    await h.fake.send_message(MEMBER, "write me an essay")
    reply = await first_reply_with(h, "Stop")
    stop = custom_id(h, reply, "Stop")

    before = len(h.fake.calls_to("POST", "/webhooks/"))
    await h.fake.click(stop, str(reply["id"]), MOD)  # Manage Guild is admin: may stop anyone's reply
    await h.fake.click(stop, str(reply["id"]), MOD)
    clicked = time.monotonic()
    await first_reply_with(h, "Regenerate")
    took = time.monotonic() - clicked
    print(f"Stop to stopped reply with Regenerate: {took:.3f}s")
    await h.settle()
    content = str(h.fake.bot_messages()[0]["content"])
    assert content.endswith("_(stopped)_") and len(content) < len(LONG)
    # The stopped text and the button swap land in ONE edit (not a second one behind it in the budget).
    patches = [c.body for c in h.fake.calls_to("PATCH", f"/messages/{reply['id']}")]
    swapped = [b for b in patches if "components" in b and "Regenerate" in str(b["components"])]
    assert len(swapped) == 1 and str(swapped[0].get("content", "")).endswith("_(stopped)_"), patches[-2:]
    assert any(c.body.get("type") == 6 for c in h.fake.calls_to("POST", "/callback"))  # acknowledged
    assert len(h.fake.calls_to("POST", "/webhooks/")) == before  # no refusal for either click


async def test_regenerate_replaces_the_answer_and_others_may_not(harness: Harness) -> None:  # noqa: F811
    h = harness
    h.llm.script("The first answer.")
    await h.fake.send_message(MEMBER, "what is our deploy day?")
    reply = await first_reply_with(h, "Regenerate")
    await h.settle()
    regen = custom_id(h, reply, "Regenerate")

    stranger = "700000000000000077"
    await h.fake.click(regen, str(reply["id"]), stranger)  # neither the asker nor a curator
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not h.fake.calls_to("POST", "/webhooks/"):
        assert loop.time() < deadline
        await asyncio.sleep(0.025)
    assert "Only the person who asked" in str(h.fake.calls_to("POST", "/webhooks/")[-1].body["content"])
    assert len(h.llm.requests) == 1

    h.llm.script("A better second answer.")
    await h.fake.click(regen, str(reply["id"]), MEMBER)
    deadline = loop.time() + 20
    while h.fake.bot_messages()[0]["content"] != "A better second answer.":
        assert loop.time() < deadline
        await asyncio.sleep(0.025)
    await h.settle()
    assert len(h.fake.bot_messages()) == 1  # the same message, answered again
    assert len(h.llm.requests) == 2


async def test_thumbs_down_asks_a_reason_and_is_listed_for_curators(harness: Harness) -> None:  # noqa: F811
    from tests.discord.test_discord import _ws_and_owner
    from tests.fakes.discord import CHANNEL_ID

    h = harness
    h.llm.script("Deploys happen on Fridays.")
    await h.fake.send_message(MEMBER, "when do we deploy?")
    reply = await first_reply_with(h, "👎")
    await h.settle()
    await h.fake.click(custom_id(h, reply, "👎"), str(reply["id"]), MEMBER)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not [c for c in h.fake.calls_to("POST", "/callback") if c.body.get("type") == 9]:
        assert loop.time() < deadline, "no modal"
        await asyncio.sleep(0.025)
    modal = [c for c in h.fake.calls_to("POST", "/callback") if c.body.get("type") == 9][-1].body["data"]
    await h.fake.submit_modal(str(modal["custom_id"]), {"reason": "We deploy on Tuesdays."}, MEMBER, CHANNEL_ID)
    ws, owner = _ws_and_owner()
    deadline = loop.time() + 10
    while "Tuesdays" not in (listed := await h.core.admin.run(ws, owner, "feedback")):  # type: ignore[arg-type]
        assert loop.time() < deadline, listed
        await asyncio.sleep(0.05)
    assert "when do we deploy?" in listed and "Deploys happen on Fridays." in listed


async def test_buttons_work_after_a_restart(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    from tests.discord.test_discord import _ws_and_owner

    async with FakeDiscord() as fake:
        fake.add_member(MEMBER, "member")
        fake_anthropic.script("The first answer.")
        async with bot_process(tmp_path, fake_anthropic, fake) as first:
            await first.fake.send_message(MEMBER, "what is our deploy day?")
            reply = await first_reply_with(first, "Regenerate")
            await first.settle()

        async with bot_process(tmp_path, fake_anthropic, fake) as h:  # a new process: nothing in memory
            loop = asyncio.get_running_loop()
            await h.fake.click(custom_id(h, reply, "👎"), str(reply["id"]), MEMBER)
            ws, owner = _ws_and_owner()
            deadline = loop.time() + 10
            while "The first answer." not in (listed := await h.core.admin.run(ws, owner, "feedback")):  # type: ignore[arg-type]
                assert loop.time() < deadline, listed
                await asyncio.sleep(0.05)

            # A Stop left from before the restart (the reply no longer streams) says so.
            stop = custom_id(h, reply, "Regenerate").replace(":regen:", ":stop:")
            await h.fake.click(stop, str(reply["id"]), MEMBER)
            deadline = loop.time() + 10
            while not h.fake.calls_to("POST", "/webhooks/"):
                assert loop.time() < deadline
                await asyncio.sleep(0.025)
            assert "no longer streaming" in str(h.fake.calls_to("POST", "/webhooks/")[-1].body["content"])

            fake_anthropic.script("A better second answer.")
            await h.fake.click(custom_id(h, reply, "Regenerate"), str(reply["id"]), MEMBER)
            deadline = loop.time() + 20
            while h.fake.bot_messages()[0]["content"] != "A better second answer.":
                assert loop.time() < deadline
                await asyncio.sleep(0.025)
            await h.settle()
            assert len(h.fake.bot_messages()) == 1
            assert fake_anthropic.last_request["messages"][-1]["content"] == "what is our deploy day?"
