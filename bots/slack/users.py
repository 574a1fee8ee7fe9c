"""users.info, cached with expiry: the author's Slack facts (owner, admin) for the role model.

Every question and admin command needs them, and users.info is rate limited (Tier 4), so
facts are kept for `ttl_s`; concurrent lookups of one user share a single request, which waits for
its grant in the method's budget (bots/slack/limits.py) like every other call. A question's author
is looked up only once the question is held (core.authors). A failed lookup gives the most
restricted facts (a guest's, core.authors.UNRESOLVED) and is retried after a short while, never
cached long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import limits
from bots.slack.surface import call_slack
from core.authors import UNRESOLVED
from core.messages import Actor, PlatformFacts, WorkspaceRef
from core.pacing import EditScheduler, within_budget

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SlackUser:
    user_id: str
    facts: PlatformFacts
    display_name: str = ""
    is_bot: bool = False
    is_guest: bool = False  # Slack single- or multi-channel guest (is_restricted / is_ultra_restricted)

    def actor(self) -> Actor:
        return Actor(self.user_id, self.facts, display_name=self.display_name)


class UserDirectory:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl_s: float = 600.0,
        failure_ttl_s: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        scheduler: EditScheduler | None = None,
    ) -> None:
        self.client = client
        self.scheduler = scheduler or EditScheduler()  # the adapter's budgets (its own, in tests)
        self.ttl_s = ttl_s
        self.failure_ttl_s = failure_ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, SlackUser]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[SlackUser]] = {}
        self.lookups = 0  # users.info calls made, for tests and logs

    async def get(self, team_id: str, user_id: str) -> SlackUser:
        key = (team_id, user_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[SlackUser] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            user, ttl = await self._lookup(team_id, user_id)
            self._remember(key, user, ttl)
            future.set_result(user)
            return user
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]

    async def actor(self, team_id: str, user_id: str) -> Actor:
        return (await self.get(team_id, user_id)).actor()

    async def author(self, ws: WorkspaceRef, user_id: str) -> Actor | None:
        """A held question's author (core.authors.Authors): None for a bot user."""
        user = await self.get(ws.external_id, user_id)
        return None if user.is_bot else user.actor()

    async def facts(self, ws: WorkspaceRef, user_id: str) -> PlatformFacts:
        """The target lookup of admin commands (core.admin.UserFacts): a role change's target's facts."""
        return (await self.get(ws.external_id, user_id)).facts

    def forget(self, team_id: str, user_id: str) -> None:
        """Drop a cached user (e.g. on a user_change event)."""
        self._cache.pop((team_id, user_id), None)

    async def _lookup(self, team_id: str, user_id: str) -> tuple[SlackUser, float]:
        self.lookups += 1
        try:
            scope = limits.scope("users.info", team_id)
            response = await within_budget(
                self.scheduler,
                (scope,),
                lambda: call_slack(self.client, "users_info", scope.key, user=user_id),
                final=False,
                deadline_s=30.0,
            )
        except SlackApiError as exc:
            log.warning("slack.users_info_failed", user=user_id, error=str(exc.response.get("error", exc)))
            return SlackUser(user_id, UNRESOLVED, is_guest=True), self.failure_ttl_s
        except Exception as exc:  # transport trouble: answer as a guest rather than not at all
            log.warning("slack.users_info_failed", user=user_id, error=repr(exc))
            return SlackUser(user_id, UNRESOLVED, is_guest=True), self.failure_ttl_s
        data = response.get("user") or {}
        profile = data.get("profile") or {}
        is_guest = bool(data.get("is_restricted") or data.get("is_ultra_restricted"))
        facts = PlatformFacts(
            is_owner=bool(data.get("is_owner") or data.get("is_primary_owner")),
            is_admin=bool(data.get("is_admin")),
            is_guest=is_guest,
        )
        name = str(profile.get("display_name") or profile.get("real_name") or data.get("name") or "")
        user = SlackUser(
            user_id,
            facts,
            display_name=name,
            is_bot=bool(data.get("is_bot")),
            is_guest=is_guest,
        )
        return user, self.ttl_s

    def _remember(self, key: tuple[str, str], user: SlackUser, ttl: float) -> None:
        now = self.clock()
        if len(self._cache) >= self.max_entries:
            # Expired entries first; if none, the oldest inserted (dicts keep insertion order).
            for stale in [k for k, (exp, _) in self._cache.items() if exp <= now] or [next(iter(self._cache))]:
                del self._cache[stale]
        self._cache.pop(key, None)
        self._cache[key] = (now + ttl, user)
