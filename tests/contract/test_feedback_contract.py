"""The FeedbackStore contract, on SQLite and on Convex: anyone rates, curators+ read, newest first, paged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import feedback_for
from core.messages import Actor
from core.roles import Role
from core.stores.base import PermissionDenied, Store, StoreError
from core.stores.feedback import Feedback, FeedbackStore
from tests.contract.conftest import STORES
from tests.contract.test_store_contract import ADMIN, MEMBER, OTHER, WS, actions


@pytest.fixture(params=sorted(STORES))
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, FeedbackStore]]:
    async with STORES[request.param](tmp_path, request) as store:
        yield store, feedback_for(store)


def rating(i: int, rating: str = "down", user: str = "U-member", reason: str = "") -> Feedback:
    return Feedback(f"slack:T:C:{i}", user, rating, f"question {i}", f"answer {i}", (f"https://d/{i}",), "m", reason)  # type: ignore[arg-type]


async def test_ratings_are_kept_with_their_context_and_paged_newest_first(
    stores: tuple[Store, FeedbackStore],
) -> None:
    _, feedback = stores
    for i in range(5):
        await feedback.add_feedback(WS, rating(i))
        await asyncio.sleep(0.01)
    await feedback.add_feedback(WS, rating(9, "up"))
    await feedback.add_feedback(OTHER, rating(7))
    page = await feedback.recent_feedback(WS, ADMIN, limit=3)
    assert [f.question for f in page] == ["question 4", "question 3", "question 2"]
    assert page[0].answer == "answer 4" and page[0].sources == ("https://d/4",) and page[0].model == "m"
    older = await feedback.recent_feedback(WS, ADMIN, limit=3, before=page[-1].at)
    assert [f.question for f in older] == ["question 1", "question 0"]
    assert [f.question for f in await feedback.recent_feedback(WS, ADMIN, rating="up")] == ["question 9"]


async def test_a_second_rating_by_the_same_person_replaces_the_first(stores: tuple[Store, FeedbackStore]) -> None:
    _, feedback = stores
    await feedback.add_feedback(WS, rating(1, "down"))
    await feedback.add_feedback(WS, rating(1, "down", reason="it cited the wrong page"))
    [only] = await feedback.recent_feedback(WS, ADMIN)
    assert only.reason == "it cited the wrong page"
    await feedback.add_feedback(WS, rating(1, "up"))
    assert await feedback.recent_feedback(WS, ADMIN) == []


async def test_members_may_not_read_feedback_and_curators_may(stores: tuple[Store, FeedbackStore]) -> None:
    store, feedback = stores
    await feedback.add_feedback(WS, rating(1))
    with pytest.raises(PermissionDenied):
        await feedback.recent_feedback(WS, MEMBER)
    assert "refused" in await actions(store)
    curator = Actor("U-curator")
    await store.set_role(WS, ADMIN, curator.user_id, Role.CURATOR)
    assert len(await feedback.recent_feedback(WS, curator)) == 1


async def test_bounds(stores: tuple[Store, FeedbackStore]) -> None:
    _, feedback = stores
    with pytest.raises(StoreError):
        await feedback.add_feedback(WS, rating(1, reason="x" * 100_000))
    with pytest.raises(StoreError):
        await feedback.add_feedback(WS, rating(1, "sideways"))
    with pytest.raises(StoreError):
        await feedback.recent_feedback(WS, ADMIN, limit=0)
