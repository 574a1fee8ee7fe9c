"""The "Summarize thread" message menu on Discord, end to end over the loopback gateway: the fake sends
the APPLICATION_COMMAND interaction (type 3, a message target) and the chosen message's reply chain
reaches the model as the plain "summarize this thread" question, citing the messages with their links."""

from __future__ import annotations

import json

from bots.discord.summarize import NAME
from tests.discord.test_discord import MEMBER, Harness, harness, interaction  # noqa: F401  (the fixture)
from tests.discord.test_thread_context import ANA, BEN
from tests.fakes.discord import GUILD_ID, snowflake


async def test_summarize_thread_on_a_message_summarizes_its_reply_chain(harness: Harness) -> None:  # noqa: F811
    h = harness
    h.fake.add_member(ANA, "Ana")
    h.fake.add_member(BEN, "Ben")
    first = h.fake.add_message(ANA, "The deploy failed with exit code 137.", mention_bot=False)
    second = h.fake.add_message(BEN, "Probably the memory limit again.", mention_bot=False, reply_to=first["id"])
    h.fake.add_message(ANA, "Unrelated: lunch at noon?", mention_bot=False)
    h.llm.script("The deploy was killed (exit 137), likely the memory limit.")

    target = str(second["id"])
    payload = interaction(MEMBER, (), [], {})
    payload["data"] = {
        "id": snowflake(),
        "name": NAME,
        "type": 3,
        "target_id": target,
        "guild_id": GUILD_ID,
        "resolved": {"messages": {target: second}},
    }
    await h.fake.dispatch("INTERACTION_CREATE", payload)
    await h.settle()

    request = h.llm.last_request
    [turn] = request["messages"]
    content = turn["content"]
    assert content.index("exit code 137") < content.index("memory limit again")  # the chain, in order
    assert "lunch at noon" not in content  # only what the chosen message continues
    assert f"/channels/{GUILD_ID}/" in content and str(first["id"]) in content  # cited with links
    assert "cite the messages you draw on with their links" in json.dumps(request["system"])
    [reply] = h.fake.bot_messages()
    assert "exit 137" in str(reply["content"])
    assert (reply.get("message_reference") or {}).get("message_id") == target  # answers the chosen message
    assert any(c.get("type") == 4 for c in h.fake.callbacks)  # the menu click was acknowledged
