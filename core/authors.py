"""The Authors port: an author's platform facts, looked up only once their question is held.

A platform may acknowledge an event before the bot has done anything with it (Slack's Events API
is answered 200 at once and never redelivers an acknowledged event). Whatever the adapter awaits
between that ack and the held claim (core.handover) is a window in which a dying process loses the
question. So an adapter builds the question from what the event itself carries (the author's id,
the text, the place) with UNRESOLVED facts, the pipeline claims and holds it, and only then asks the
adapter's `Authors` for the author's facts (Slack: users.info, which waits in a shared rate budget).
A process that takes a held question over asks again itself: what was held is never trusted for
privileges. Until the platform has said otherwise, an author is the most restricted kind there is.
"""

from __future__ import annotations

from typing import Protocol

from core.messages import Actor, PlatformFacts, WorkspaceRef

# Facts not known (yet, or the lookup failed): never more than a guest (core.roles caps a guest's default).
UNRESOLVED = PlatformFacts(is_guest=True)


class Authors(Protocol):
    async def author(self, ws: WorkspaceRef, user_id: str) -> Actor | None:
        """The author with the platform's facts about them; None when the author is no person to
        answer (a bot user). A failed lookup gives UNRESOLVED facts, never more."""
        ...


def unresolved(user_id: str) -> Actor:
    """The author of a question whose facts the pipeline looks up after holding it."""
    return Actor(user_id, UNRESOLVED)
