"""One pipeline for every platform: dedup -> authorize -> thread -> retrieve -> prompt -> stream -> persist."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import structlog

from core.access import RoleService
from core.attachments import AttachmentFetcher, prepare
from core.authors import Authors, unresolved
from core.context import HistoryUnavailable, ThreadHistory, ThreadMessage
from core.controls import ReplyControls
from core.errors import Invalid, Unavailable
from core.llm.base import LLM, LLMError
from core.messages import IncomingMessage, MessageRole, ReplyStatus, Source, StoredMessage, Usage, WorkspaceRef
from core.outbox import Outbox
from core.pacing import EditScheduler
from core.prompt import build_prompt, cited_sources, sources_from_hits
from core.recovery import Recovery
from core.retrieval.base import Hit, Retriever
from core.rewrite import QueryRewriter, RecentTurn, search_rewritten
from core.stores.base import Store, StoreUnavailable
from core.stores.controls import ReplyControlsStore
from core.stores.feedback import FeedbackStore
from core.stores.personas import ChannelPersona
from core.stores.usage import BudgetState, Charge
from core.streaming import ReplyStreamer
from core.surface import Placed, Surface
from core.tokens import FILE_TOKENS
from core.usage_report import budget_notice, budget_refusal

log = structlog.get_logger(__name__)

MAX_QUESTION_CHARS = 4000
FILES_ONLY_QUESTION = "(The question is the attached file: please look at it.)"
HISTORY_PAGE = 30
NO_KNOWLEDGE_NOTE = "_I can't reach the knowledge base right now, so this answer does not use it._\n\n"
STORE_DOWN_NOTICE = "I can't reach my memory right now. I've kept your question and will answer when I can."

OutcomeStatus = Literal["answered", "failed", "duplicate", "refused", "ignored", "queued"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus
    text: str = ""
    reason: str = ""
    reply_id: str = ""
    sources: tuple[Source, ...] = ()
    # For metrics and usage: the model's tokens, when the first words were shown (time.monotonic)
    # and how long streamed text waited for each edit.
    usage: Usage = field(default_factory=Usage)
    first_text_at: float | None = None
    lags: tuple[float, ...] = ()
    budgets: tuple[BudgetState, ...] = ()  # budget thresholds this reply's usage crossed first


@dataclass(slots=True)
class Attempt:
    """One question's tries at an answer: whether its event claim is (or may be) its own already."""

    claimed: bool = False
    kept: bool = False  # the question is in the outbox
    retake: str = ""  # set when a live process took the question over from a dead one: a new reply
    held: bool = False  # the claim is held in the store until the answer is posted (QuestionClaims)
    claimant: str = ""  # this attempt's own token in a held claim (its retries win again, twins do not)


class QuestionClaims(Protocol):
    """Claims held in the store until the answer is posted, so a live process answers a dead one's
    questions (core.handover)."""

    def serves(self, message: IncomingMessage) -> bool: ...

    async def claim(self, message: IncomingMessage, place: dict[str, Any], claimant: str) -> bool: ...

    def claimant_of(self, key: str) -> str:
        """The claimant of a hold this process has on the question ("" if none): a kept question's."""
        ...

    def answered(self, key: str) -> None:
        """The answer's first post ended the hold."""
        ...

    async def settled(self, message: IncomingMessage) -> None:
        """Handled without a posted answer: release the hold."""
        ...


class DeltaSink(Protocol):
    """Where reply deltas go while streaming (throttled store writes); see core.stores.deltas."""

    def add(self, message_id: str, text: str, *, workspace: str) -> None: ...

    async def flush_message(self, message_id: str) -> None: ...


class BudgetCheck(Protocol):
    async def budget_exhausted(self, ws: WorkspaceRef, user_id: str, role: str) -> BudgetState | None: ...


class PersonaSource(Protocol):
    async def channel_persona(self, ws: WorkspaceRef, channel_id: str) -> ChannelPersona | None: ...


Keep = Callable[[ReplyStatus, str, Sequence[Source]], Awaitable[Sequence[BudgetState]]]


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        retriever: Retriever,
        llm: LLM,
        deltas: DeltaSink | None = None,
        personas: PersonaSource | None = None,
        feedback: FeedbackStore | None = None,
        controls: ReplyControlsStore | None = None,
        model: str = "",
        max_answer_tokens: int = 1024,
        context_tokens: int = 6000,
        file_tokens: int = FILE_TOKENS,
        retrieve_k: int = 5,
        rewriter: QueryRewriter | None = None,
        store_retry_s: tuple[float, ...] = (2, 5, 15, 30, 60, 120, 300),
        recovery: Recovery | None = None,
        outbox: Outbox | None = None,
        budgets: BudgetCheck | None = None,
    ) -> None:
        self.store = store
        self.retriever = retriever
        self.llm = llm
        self.deltas = deltas
        self.personas = personas
        self.roles = RoleService(store)
        self.controls = ReplyControls(self.roles, store, feedback=feedback, kept=controls)
        self.model = model
        self.max_answer_tokens = max_answer_tokens
        self.context_tokens = context_tokens
        self.file_tokens = file_tokens
        self.retrieve_k = retrieve_k
        self.rewriter = rewriter
        self.store_retry_s = store_retry_s
        self.budgets = budgets
        self.recovery = recovery  # knows the replies streaming here and stores where each one is
        self.outbox = outbox  # questions kept while the store is unreachable (answered by core.intake)
        self.on_kept: Callable[[], None] | None = None  # told when a question was kept
        self.questions: QuestionClaims | None = None  # with several processes: claims held until answered
        # Per platform, the adapter's lookup of an author's facts, made once the question is held
        # (core.authors), for questions it did not bring itself (taken over, kept); a platform without
        # one puts the event's own facts on the message.
        self.authors: dict[str, Authors] = {}
        self._pending: set[asyncio.Task[Outcome]] = set()

    async def answer(
        self,
        message: IncomingMessage,
        surface: Surface,
        scheduler: EditScheduler,
        history: ThreadHistory | None = None,
        files: AttachmentFetcher | None = None,
        authors: Authors | None = None,
    ) -> Outcome:
        """Answer one message. `history` reads the platform thread the message is in (if it is in one);
        `files` downloads attachments (the message's and the thread's) through the platform; `authors`
        looks up the author's facts once the question is held (default: the platform's in `self.authors`)."""
        question = message.text.strip() or (FILES_ONLY_QUESTION if message.attachments else "")
        if not question:
            if message.mentioned or message.is_dm:
                await surface.notice("Ask me a question after the mention, and I'll answer in this thread.")
            return Outcome("ignored", reason="empty")
        if len(question) > MAX_QUESTION_CHARS:
            await surface.notice(
                f"That question is too long ({len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,})."
                " Please shorten it or ask about one part at a time."
            )
            return Outcome("refused", reason="too_long")
        attempt = Attempt()
        try:
            outcome = await self._answer(message, question, surface, scheduler, history, files, attempt, authors)
            await self._settled(message, attempt)
            return outcome
        except StoreUnavailable as exc:
            # Nothing has been shown yet: keep the question and answer once the store is back.
            log.error("pipeline.store_unavailable", key=message.event_key, error=str(exc))
            if not attempt.claimed and not message.mentioned and not message.is_dm:
                return Outcome("ignored", reason="store_unavailable")
            # On disk first (answered by core.intake, after a restart too), and only then the promise.
            if not await self._keep(message, surface, attempt):
                self._retry_later(message, question, surface, scheduler, history, files, attempt, authors)
            await _quietly(surface.notice(STORE_DOWN_NOTICE))
            return Outcome("queued", reason="store_unavailable")
        except Invalid as exc:
            # Input the store will never take (a bound broken); saying so beats a silent loss.
            log.error("pipeline.invalid_input", key=message.event_key, error=str(exc))
            await _quietly(surface.notice(f"Sorry, I can't take that message: {exc}."))
            await self._settled(message, attempt)
            return Outcome("refused", reason="invalid")

    async def resume(
        self,
        message: IncomingMessage,
        surface: Surface,
        scheduler: EditScheduler,
        *,
        claimed: bool,
        retake: str = "",
    ) -> Outcome:
        """Answer a question kept in the outbox (or, with `retake`, taken over from a dead process), on a
        freshly reopened surface; "queued" while the store is still unreachable. `claimed`: an earlier
        attempt took (or may have taken) the event's claim."""
        attempt = Attempt(claimed=claimed, kept=not retake, retake=retake, claimant=retake)
        try:
            question = message.text.strip() or (FILES_ONLY_QUESTION if message.attachments else "")
            outcome = await self._answer(message, question, surface, scheduler, None, None, attempt)
            await self._settled(message, attempt)
            return outcome
        except StoreUnavailable as exc:
            log.warning("pipeline.kept_question_waits", key=message.event_key, error=str(exc))
            return Outcome("queued", reason="store_unavailable")
        except Invalid as exc:
            log.error("pipeline.invalid_input", key=message.event_key, error=str(exc))
            await _quietly(surface.notice(f"Sorry, I can't take that message: {exc}."))
            await self._settled(message, attempt)
            return Outcome("refused", reason="invalid")

    async def _settled(self, message: IncomingMessage, attempt: Attempt) -> None:
        """A held claim whose answer was not posted (refused, ignored, a duplicate...) is released."""
        if attempt.held and self.questions is not None:
            await self.questions.settled(message)

    async def _keep(self, message: IncomingMessage, surface: Surface, attempt: Attempt) -> bool:
        """Write the question to the outbox, if a platform adapter here can reopen its surface later."""
        platform = message.workspace.platform.value
        if self.outbox is None or self.recovery is None or platform not in self.recovery.platforms:
            return False
        if not isinstance(surface, Placed):
            return False
        try:
            await self.outbox.keep(message, surface.place(), claimed=attempt.claimed)
        except Exception as exc:  # the local disk too: keep it in memory at least
            log.error("pipeline.outbox_write_failed", key=message.event_key, error=repr(exc))
            return False
        if self.on_kept is not None:
            self.on_kept()
        return True

    async def _answer(
        self,
        message: IncomingMessage,
        question: str,
        surface: Surface,
        scheduler: EditScheduler,
        history: ThreadHistory | None = None,
        files: AttachmentFetcher | None = None,
        attempt: Attempt | None = None,
        authors: Authors | None = None,
    ) -> Outcome:
        attempt = attempt or Attempt()
        ws = message.workspace
        known_thread = None
        if not message.mentioned and not message.is_dm:
            # A cheap look before claiming: most unaddressed channel chatter is none of our business.
            known_thread = await self.store.find_thread(ws, message.channel_id, message.thread_id)
            settings = await self.store.settings(ws)
            if known_thread is None and not settings.answer_without_mention:
                rule = await self.store.channel_rule(ws, message.channel_id)
                if rule is None or not rule.answer_without_mention:
                    return Outcome("ignored", reason="not_addressed")

        # Held claims know their owner (its own retry wins again), so only a plain claim's earlier
        # attempt may count a lost claim as its own.
        questions = self.questions if self.questions is not None and self.questions.serves(message) else None
        attempt.held = questions is not None and isinstance(surface, Placed)
        earlier = attempt.claimed  # an earlier attempt of this question took (or may have taken) the claim
        ours = earlier and not attempt.held
        attempt.claimed = True  # from here on the claim may be ours: a call that failed may have landed
        if questions is not None and isinstance(surface, Placed):
            if not attempt.claimant and earlier:  # a kept question: its first attempt's hold
                attempt.claimant = questions.claimant_of(message.event_key)
            attempt.claimant = attempt.claimant or uuid.uuid4().hex
            won = await questions.claim(message, surface.place(), attempt.claimant)
        else:
            won = await self.store.claim_event(message.event_key)
        attempt.held = attempt.held and won  # a duplicate holds nothing (and must not release the holder's)
        if not won:
            if not ours:
                attempt.claimed = False
                log.info("pipeline.duplicate", key=message.event_key)
                return Outcome("duplicate")
            log.info("pipeline.own_claim", key=message.event_key)  # taken by this question's failed attempt
        if attempt.kept and not ours and self.outbox is not None:
            await self.outbox.mark_claimed(message.event_key)  # before anything else can fail

        # Only now, with the question held, what the platform says about its author (each attempt
        # asks again: a held or kept question's facts are not trusted).
        resolved = await self._author(message, authors or self.authors.get(ws.platform.value))
        if resolved is None:
            log.info("pipeline.ignored", key=message.event_key, reason="not_a_person")
            return Outcome("ignored", reason="not_a_person")
        message = resolved
        settings = await self.store.settings(ws)
        decision = await self.roles.authorize_question(message, settings, in_known_thread=known_thread is not None)
        if decision.silent:
            return Outcome("ignored", reason=decision.code)
        if not decision.allowed:
            return await self._refuse(message, surface, decision.code, decision.reason)
        assert decision.role is not None  # an allowed question has a role
        role = decision.role.label
        if self.budgets is not None:
            # The store's own rule on the totals its usage writes keep (core/stores/usage.py).
            over = await self.budgets.budget_exhausted(ws, message.author.user_id, role)
            if over is not None:
                return await self._refuse(message, surface, "budget", budget_refusal(over), detail=over.scope)
        quota = await self.roles.take_quota(message, settings, decision.role)
        if not quota.allowed:
            return await self._refuse(message, surface, quota.code, quota.reason)

        thread_id = await self.store.thread_for(ws, message.channel_id, message.thread_id)
        page = await self.store.messages(ws, thread_id, limit=HISTORY_PAGE)
        # The user's message is saved before the model is called, so nothing the user said is lost.
        await self.store.add_message(
            ws,
            thread_id,
            MessageRole.USER,
            question,
            author_id=message.author.user_id,
            idempotency_key=f"{message.event_key}:q",
        )
        await _quietly(surface.thinking())

        recent = [
            RecentTurn(m.role.value, m.text)
            for m in reversed(page.items)
            if m.text.strip() and m.status is not ReplyStatus.STREAMING
        ]
        (hits, degraded), thread, persona = await asyncio.gather(
            self._retrieve(message, question, recent), _read_thread(history), self._persona(message)
        )
        if thread is not None:
            thread = _own_replies_as_stored(thread, page.items)
        in_thread = [a for m in reversed(thread or ()) for a in m.attachments]  # the newest first
        attached = await prepare(files, message.attachments, in_thread)
        sources = sources_from_hits(hits)
        model = (persona.model if persona else "") or settings.model or self.model
        prompt = build_prompt(
            question=question,
            history=page.items,
            thread=thread,
            files=attached.blocks,
            sources=sources,
            workspace_prompt=settings.system_prompt,
            channel_prompt=persona.system_prompt if persona else "",
            budget_tokens=self.context_tokens,
            file_budget_tokens=self.file_tokens,
            model=model,
            max_tokens=self.max_answer_tokens,
        )
        attached = attached.fitted([f for turn in prompt.turns for f in turn.files])
        reply_id = await self.store.add_message(
            ws,
            thread_id,
            MessageRole.ASSISTANT,
            "",
            status=ReplyStatus.STREAMING,
            idempotency_key=f"{message.event_key}:a" + (f":{attempt.retake}" if attempt.retake else ""),
        )
        answered_by = prompt.model or getattr(self.llm, "model", "")

        async def keep(status: ReplyStatus, text: str, cited: Sequence[Source]) -> Sequence[BudgetState]:
            # What the finished reply's buttons need (Regenerate, 👍/👎), kept beyond this process.
            await self.controls.ended(message, status, text, tuple(s.uri for s in cited), answered_by)
            return ()

        async with self.controls.streaming(message, reply_id):  # Stop may cancel it from here on
            outcome = await self._stream(
                ws,
                reply_id,
                prompt_sources=list(prompt.sources),
                surface=surface,
                scheduler=scheduler,
                degraded=degraded,
                stream=self.llm.stream(prompt),
                note=attached.note,
                charge=Charge(message.author.user_id, role, model),
                keep=keep,
                answers=message.event_key if attempt.held else "",
            )
        return outcome

    async def _author(self, message: IncomingMessage, authors: Authors | None) -> IncomingMessage | None:
        """The message with its author's platform facts (None: the author is a bot user)."""
        if authors is None:
            return message
        user_id = message.author.user_id
        try:
            actor = await authors.author(message.workspace, user_id)
        except Exception as exc:  # unknown facts are the most restricted ones, never a member's
            log.warning("pipeline.author_unresolved", key=message.event_key, error=repr(exc))
            actor = unresolved(user_id)
        return None if actor is None else replace(message, author=actor)

    async def _persona(self, message: IncomingMessage) -> ChannelPersona | None:
        """The channel's persona; a thread inherits its channel's (Discord threads are channels of their own)."""
        if self.personas is None:
            return None
        persona = await self.personas.channel_persona(message.workspace, message.channel_id)
        if persona is None and message.parent_channel_id:
            persona = await self.personas.channel_persona(message.workspace, message.parent_channel_id)
        return persona

    async def _retrieve(
        self, message: IncomingMessage, question: str, recent: list[RecentTurn]
    ) -> tuple[list[Hit], bool]:
        try:
            hits = await search_rewritten(
                self.retriever, self.rewriter, message.workspace, question, recent, k=self.retrieve_k
            )
            return hits, False
        except Unavailable as exc:  # the search, its embedder or its file: answer without knowledge
            log.warning("pipeline.retriever_unavailable", error=str(exc), cause=repr(exc.__cause__))
            return [], True

    async def _stream(
        self,
        ws: WorkspaceRef,
        reply_id: str,
        *,
        prompt_sources: list[Source],
        surface: Surface,
        scheduler: EditScheduler,
        degraded: bool,
        stream: AsyncIterator[str | Usage],
        note: str = "",
        charge: Charge | None = None,
        keep: Keep | None = None,
        answers: str = "",
    ) -> Outcome:
        """Stream the answer; `note` (files not used) goes under it; its usage is charged to `charge`;
        `keep` records how it ended, for its buttons. `answers`: the event key of a held question (its
        hold ends with the reply's first place)."""
        # Recovery knows where the reply is once it is first posted, and that it is live here meanwhile.
        answered = self.questions.answered if self.questions is not None and answers else None
        placed = (
            self.recovery.placed(surface, ws, reply_id, answers=answers, answered=answered)
            if self.recovery is not None
            else surface
        )
        with self._live(ws, reply_id):
            streamer = ReplyStreamer(placed, scheduler)
            await streamer.start()
            status, reason, usage = ReplyStatus.COMPLETE, "", Usage()

            def feed(text: str) -> None:
                streamer.feed(text)
                if self.deltas is not None:
                    self.deltas.add(reply_id, text, workspace=ws.key)

            if degraded:
                feed(NO_KNOWLEDGE_NOTE)
            try:
                async for item in stream:
                    if isinstance(item, Usage):
                        usage = item
                    else:
                        feed(item)
            except LLMError as exc:
                status, reason = ReplyStatus.FAILED, str(exc)
                log.warning("pipeline.llm_failed", reply=reply_id, error=reason)
            except asyncio.CancelledError:
                status, reason = ReplyStatus.CANCELLED, "cancelled"
                await asyncio.shield(self._finish(ws, reply_id, streamer, status, reason, [], usage, charge, keep))
                raise
            if note:
                feed(note)
            sources = cited_sources(streamer.text, prompt_sources)
            final, crossed = await self._finish(ws, reply_id, streamer, status, reason, sources, usage, charge, keep)
            outcome = Outcome(
                "answered" if status is ReplyStatus.COMPLETE else "failed",
                text=final,
                reason=reason,
                reply_id=reply_id,
                sources=tuple(sources),
                usage=usage,
                first_text_at=streamer.first_text_at,
                lags=tuple(streamer.lags),
                budgets=tuple(crossed),
            )
        highest = {b.scope: b for b in sorted(outcome.budgets, key=lambda b: b.level)}
        for budget in highest.values():
            # Announced once (the store marked it in the usage write, and audited it): the month's in the
            # thread, for admins; a user's own day to that user. Both thresholds at once: the higher one.
            text = budget_notice(budget)
            await _quietly(surface.notice(text) if budget.scope == "day" else surface.post(text))
        return outcome

    @contextmanager
    def _live(self, ws: WorkspaceRef, reply_id: str) -> Iterator[None]:
        if self.recovery is None:
            yield
            return
        self.recovery.live[reply_id] = ws.key
        try:
            yield
        finally:
            self.recovery.live.pop(reply_id, None)
            self.recovery.lost.discard(reply_id)  # (a heartbeat may call a reply that just ended "lost")

    async def _finish(
        self,
        ws: WorkspaceRef,
        reply_id: str,
        streamer: ReplyStreamer,
        status: ReplyStatus,
        reason: str,
        sources: list[Source],
        usage: Usage,
        charge: Charge | None = None,
        keep: Keep | None = None,
    ) -> tuple[str, Sequence[BudgetState]]:
        if self.recovery is not None and reply_id in self.recovery.lost:
            # Another process took this reply over (this one stopped heartbeating) and finished it.
            self.recovery.lost.discard(reply_id)
            await streamer.abandon()
            log.warning("pipeline.reply_taken_over", reply=reply_id)
            return streamer.text, ()
        shown = True
        try:
            final = await streamer.finish(status, sources=sources, reason=reason)
        except Exception as exc:  # the platform refused even the retried final edit: still persist
            log.error("pipeline.final_edit_failed", reply=reply_id, error=repr(exc))
            final, shown = streamer.text, False
        if self.deltas is not None:
            await _quietly(self.deltas.flush_message(reply_id))
        crossed = await self._persist(
            lambda: self.store.complete_message(
                ws,
                reply_id,
                text=final,
                status=status,
                sources=sources,
                usage=usage,
                platform_message_id=streamer.message_ids[0] if streamer.message_ids else "",
                charge=charge,
            )
        )
        if keep is not None:
            await _quietly(self._persist(lambda: keep(status, final, sources)))
        if shown and self.recovery is not None:
            await self.recovery.ended(ws, reply_id)  # a failed final edit keeps the place for recovery
        return final, crossed

    async def _refuse(
        self, message: IncomingMessage, surface: Surface, code: str, reason: str, *, detail: str = ""
    ) -> Outcome:
        """A polite refusal shown to the author alone, and audited."""
        detail = detail or message.channel_id
        await self.store.audit(message.workspace, message.author.user_id, "refused", f"{code}: {detail}")
        await _quietly(surface.notice(reason))
        log.info("pipeline.refused", key=message.event_key, code=code)
        return Outcome("refused", reason=code)

    async def _persist(self, write: Callable[[], Awaitable[Sequence[BudgetState]]]) -> Sequence[BudgetState]:
        """Write now, or keep retrying in the background: a dead store must not lose the reply.
        Returns the budget thresholds the write crossed (none known when it is left to the retries)."""
        try:
            return await write()
        except StoreUnavailable:
            task = asyncio.create_task(self._retry_write(write))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return ()

    async def _retry_write(self, write: Callable[[], Awaitable[object]]) -> Outcome:
        for delay in self.store_retry_s:
            await asyncio.sleep(delay)
            try:
                await write()
                return Outcome("answered")
            except StoreUnavailable:
                continue
        log.error("pipeline.write_lost_after_retries")
        return Outcome("failed", reason="store_unavailable")

    def _retry_later(
        self,
        message: IncomingMessage,
        question: str,
        surface: Surface,
        scheduler: EditScheduler,
        history: ThreadHistory | None,
        files: AttachmentFetcher | None,
        attempt: Attempt,
        authors: Authors | None,
    ) -> None:
        """Without an outbox (or a platform that can reopen the reply): retry in memory on the same surface."""

        async def retry() -> Outcome:
            for delay in self.store_retry_s:
                await asyncio.sleep(delay)
                try:
                    return await self._answer(message, question, surface, scheduler, history, files, attempt, authors)
                except StoreUnavailable:
                    continue
            await _quietly(surface.notice("Sorry, I still can't reach my memory. Please ask again later."))
            return Outcome("failed", reason="store_unavailable")

        task = asyncio.create_task(retry())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for queued retries (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout_s)


async def _read_thread(history: ThreadHistory | None) -> Sequence[ThreadMessage] | None:
    """The platform thread, or None to use the stored history (no thread, or the platform refused)."""
    if history is None:
        return None
    try:
        return await history.read()
    except HistoryUnavailable as exc:
        log.warning("pipeline.thread_history_unavailable", error=str(exc))
        return None


def _own_replies_as_stored(thread: Sequence[ThreadMessage], stored: Sequence[StoredMessage]) -> list[ThreadMessage]:
    """The bot's replies as it wrote them (Markdown, whole) where the store has them, not as the
    platform renders them (converted, perhaps split)."""
    texts = {m.platform_message_id: m.text for m in stored if m.platform_message_id and m.text}
    return [replace(m, text=texts[m.message_id]) if m.from_bot and m.message_id in texts else m for m in thread]


async def _quietly(call: Awaitable[object]) -> None:
    """Best-effort platform niceties (typing, notices) must never break the answer."""
    try:
        await call
    except Exception as exc:
        log.warning("pipeline.best_effort_failed", error=repr(exc))
