"""users.info facts, cached with expiry."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.users import UserDirectory
from core.pacing import EditScheduler
from tests.fakes.slack import BOT_TOKEN, FakeSlack


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def directory(slack: FakeSlack, clock: Clock) -> UserDirectory:
    return UserDirectory(AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url), ttl_s=600, clock=clock)


async def test_facts_map_owner_admin_and_guest(slack: FakeSlack) -> None:
    slack.add_user("UP", is_primary_owner=True)
    slack.add_user("UO", is_owner=True)
    slack.add_user("UA", is_admin=True, name="Ada")
    slack.add_user("UG", is_restricted=True)
    slack.add_user("UM")
    users = directory(slack, Clock())
    primary, owner, admin, guest, member = [await users.get("T", u) for u in ("UP", "UO", "UA", "UG", "UM")]
    assert primary.facts.is_owner and owner.facts.is_owner
    assert admin.facts.is_admin and not admin.facts.is_owner and admin.display_name == "Ada"
    assert guest.is_guest and not guest.facts.is_admin
    assert not member.facts.is_owner and not member.facts.is_admin
    assert (await users.actor("T", "UA")).user_id == "UA"


async def test_cached_until_expiry_then_looked_up_again(slack: FakeSlack) -> None:
    slack.add_user("U1")
    clock = Clock()
    users = directory(slack, clock)
    await users.get("T", "U1")
    await users.get("T", "U1")
    assert len(slack.calls_to("users.info")) == 1
    slack.add_user("U1", is_admin=True)  # promoted in Slack
    clock.t += 601
    assert (await users.get("T", "U1")).facts.is_admin
    assert len(slack.calls_to("users.info")) == 2


async def test_concurrent_lookups_share_one_request(slack: FakeSlack) -> None:
    slack.add_user("U1")
    slack.latency_s = 0.05
    users = directory(slack, Clock())
    results = await asyncio.gather(*(users.get("T", "U1") for _ in range(10)))
    assert {r.user_id for r in results} == {"U1"}
    assert len(slack.calls_to("users.info")) == 1


async def test_a_failed_lookup_gives_no_privileges_and_is_retried_soon(slack: FakeSlack) -> None:
    slack.add_user("U1", is_owner=True)
    slack.fail("users.info", error="internal_error", status=500)
    clock = Clock()
    users = directory(slack, clock)
    first = await users.get("T", "U1")
    assert not first.facts.is_owner and first.facts.is_guest  # unknown: the most restricted, not a member
    clock.t += 31
    assert (await users.get("T", "U1")).facts.is_owner


async def test_a_rate_limited_lookup_waits_in_the_methods_budget_and_is_retried(slack: FakeSlack) -> None:
    slack.add_user("U1", is_owner=True)
    slack.storm("users.info", times=1, retry_after=0.2)
    scheduler = EditScheduler()
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    users = UserDirectory(client, ttl_s=600, clock=Clock(), scheduler=scheduler)
    assert (await users.get("T", "U1")).facts.is_owner  # the 429 was waited out, not taken as "no facts"
    assert len(slack.calls_to("users.info", ok_only=False)) == 2
    assert scheduler.rate_limited == 1 and scheduler.granted == 2
    assert scheduler.rate(limits.scope("users.info", "T").key) is not None  # spent from the table's budget
