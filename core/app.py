"""The one place where the parts are wired, from Settings. Adapters ask here for the core."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from core.admin import AdminCommands
from core.attachments import AttachmentFetcher
from core.authors import Authors
from core.budgets import BudgetLessor
from core.config import MissingSetting, Settings, secret
from core.context import ThreadHistory
from core.handover import QuestionHandover
from core.health import CheckResult, Readiness, diagnostics, part_probes, run_check
from core.ingest import Ingestor, IngestReport, ProgressCallback
from core.installations import Installations, SealedInstallations, TokenCipher
from core.intake import KeptQuestions
from core.llm.base import LLM
from core.logs import bind_reply
from core.messages import Actor, IncomingMessage, WorkspaceRef
from core.metrics import Metrics, SchedulerMetrics, TimedLLM, record_outcome, timed
from core.metrics_prometheus import PrometheusMetrics
from core.outbox import Outbox
from core.ownership import ReplyOwnership
from core.pacing import EditScheduler
from core.pipeline import Outcome, Pipeline
from core.recovery import Recovery
from core.retrieval.base import Retriever
from core.rewrite import QueryRewriter
from core.stores.base import Store
from core.stores.controls import ReplyControlsStore
from core.stores.deltas import DeltaWriter
from core.stores.feedback import FeedbackStore
from core.stores.leases import BudgetLeases, StreamLeases
from core.stores.personas import ChannelPersonas
from core.stores.places import ReplyPlaces
from core.stores.questions import QuestionHolds
from core.stores.stops import ReplyStops
from core.stores.usage import UsageLedger
from core.surface import Surface

if TYPE_CHECKING:
    from core.stores.sqlite import SqliteStore

log = structlog.get_logger(__name__)


class ClosablePlaces(ReplyPlaces, Protocol):
    async def close(self) -> None: ...


class ConfigError(Exception):
    """The configuration cannot work; str() is one clear line for the operator."""


class Leases(BudgetLeases, StreamLeases, Protocol):
    """What several processes share through the store (core.stores.leases)."""

    async def close(self) -> None: ...


class Holds(QuestionHolds, Protocol):
    """Claimed questions held until answered, shared by several processes (core.stores.questions)."""

    async def close(self) -> None: ...


class ChatCore:
    """Everything an adapter needs: answer a message, run an admin command, ingest knowledge."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        retriever: Retriever,
        llm: LLM,
        metrics: Metrics | None = None,
        *,
        places: ClosablePlaces | None = None,
        leases: Leases | None = None,
        rewriter: QueryRewriter | None = None,
        outbox: Outbox | None = None,
        holds: Holds | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.retriever = retriever
        self.llm = llm
        # Scale-out: platform budgets leased from the store, shared with the other processes.
        self.leases = leases
        # This process, as the store knows it: the owner of its replies and of its budget demands.
        self.process_id = f"proc-{uuid.uuid4().hex[:12]}"
        self.lessor = BudgetLessor(leases, owner=self.process_id) if leases is not None else None
        self.metrics: Metrics = metrics or PrometheusMetrics()
        self._scheduler_metrics = SchedulerMetrics(self.metrics)
        # The pipeline's parts are timed (the metrics' store, retriever and LLM latency).
        timed_store = timed(store, "store", self.metrics)
        self.deltas = DeltaWriter(timed_store)
        self.personas = personas_for(store)
        self.usage = usage_for(store)
        self.feedback = feedback_for(store)
        self.places = places
        # Adapters register their ReplyPlatform here (recovery.platforms[platform]) before start_recovery().
        self.recovery = Recovery(
            store,
            places,
            orphan_after_s=settings.orphan_after_s,
            interval_s=settings.recovery_interval_s,
        )
        self.pipeline = Pipeline(
            store=timed_store,
            retriever=timed(retriever, "retriever", self.metrics),
            llm=TimedLLM(llm, self.metrics),
            deltas=self.deltas,
            personas=self.personas,
            feedback=self.feedback,
            controls=controls_for(store),
            model=settings.model,
            max_answer_tokens=settings.max_answer_tokens,
            context_tokens=settings.context_token_budget,
            file_tokens=settings.file_token_budget,
            recovery=self.recovery,
            rewriter=rewriter,
            outbox=outbox,
            budgets=self.usage,
        )
        self.outbox = outbox
        self.intake = (
            KeptQuestions(outbox, self.pipeline, self.recovery.platforms, retry_s=settings.outbox_retry_s)
            if outbox is not None
            else None
        )
        # Scale-out: this process's replies are owned in the store; a dead process's are taken over.
        self.ownership = (
            ReplyOwnership(
                leases,
                self.recovery,
                owner=self.process_id,
                heartbeat_s=settings.owner_stale_s / 3,
                stale_s=settings.owner_stale_s,
                # As often as heartbeats: a dead owner's replies are taken soon after they go stale.
                sweep_s=min(settings.recovery_interval_s, settings.owner_stale_s / 3),
                on_stop=self.pipeline.controls.stop_streaming,  # a Stop clicked on another process
            )
            if leases is not None
            else None
        )
        if self.ownership is not None:  # a Stop landing on a process that does not stream the reply
            self.pipeline.controls.stops = stops_for(store)
            self.pipeline.controls.on_stopping = self.ownership.sweep_soon  # its owner may be dead
        # Scale-out: a question claimed here and not yet answered is answered by a live process if this one dies.
        self.holds = holds
        self.handover = (
            QuestionHandover(
                holds,
                self.pipeline,
                self.recovery.platforms,
                owner=self.ownership.owner,
                heartbeat_s=self.ownership.heartbeat_s,
                stale_s=self.ownership.stale_s,
                sweep_s=self.ownership.sweep_s,
            )
            if holds is not None and self.ownership is not None
            else None
        )
        self.ingestor = Ingestor(store, retriever)
        self.controls = self.pipeline.controls  # Stop and Regenerate, for the adapters
        # Adapters whose events lack the author's facts register their lookup here (core.authors).
        self.authors = self.pipeline.authors
        self.admin = AdminCommands(
            store,
            ingestor=_UrlIngestor(self.ingestor),
            personas=self.personas,
            usage=self.usage,
            prices=settings.model_prices,
            feedback=self.feedback,
        )
        self._installations: Installations | None = None
        self.readiness = Readiness(part_probes(store, retriever, llm), ttl_s=settings.ready_cache_s)

    async def answer(
        self,
        message: IncomingMessage,
        surface: Surface,
        scheduler: EditScheduler,
        history: ThreadHistory | None = None,
        files: AttachmentFetcher | None = None,
        authors: Authors | None = None,
    ) -> Outcome:
        if scheduler.observer is None:
            scheduler.observer = self._scheduler_metrics  # the adapter's budgets count into our metrics
        platform = message.workspace.platform.value
        started = time.monotonic()
        self.metrics.reply_started(platform)
        self._start_ownership()  # heartbeats from the first reply on, whichever adapter runs
        outcome_status = "error"
        try:
            with bind_reply(message.event_key):  # every record of this reply carries its key
                outcome = await self.pipeline.answer(message, surface, scheduler, history, files, authors)
            outcome_status = outcome.status
            record_outcome(self.metrics, message.workspace.key, platform, started, outcome)
            return outcome
        finally:
            self.metrics.reply_finished(platform, outcome_status)

    def scheduler(self) -> EditScheduler:
        """A platform's rate budgets (one per adapter): leased from the store when processes share it."""
        scheduler = EditScheduler(shared=self.lessor)
        scheduler.observer = self._scheduler_metrics
        return scheduler

    async def ingest(
        self, ws: WorkspaceRef, actor: Actor, sources: Sequence[str], progress: ProgressCallback | None = None
    ) -> IngestReport:
        return await self.ingestor.ingest(ws, actor, sources, progress)

    async def recover_stale(self, older_than_s: float | None = None) -> int:
        """Finish the replies an earlier run left `streaming`: on the platform where an adapter for it is
        registered (the text so far and an "interrupted" marker), then failed in the store. With several
        processes, the owners' heartbeats say which replies are orphans (a take-over sweep)."""
        if self.ownership is not None:
            count = await self.ownership.sweep()
        else:
            count = await self.recovery.sweep(older_than_s)
        if count:
            log.warning("core.recovered_stale_replies", count=count)
        return count

    def start_recovery(self) -> None:
        """Sweep for orphaned replies and answer kept questions, now and periodically (call once the
        adapter has registered its ReplyPlatform in `recovery.platforms`)."""
        if self.ownership is not None:
            self._start_ownership()  # heartbeats for the replies here, take-overs of dead owners' replies
        else:
            self.recovery.start()
        if self.intake is not None:
            self.intake.start()

    async def doctor(self) -> list[CheckResult]:
        """Check each configured service and say what is wrong: reachable, then the deeper checks."""
        probes = {
            **part_probes(self.store, self.retriever, self.llm),
            **diagnostics({"functions": self.store, "schema": self.retriever}),
        }
        return list(await asyncio.gather(*(run_check(name, probe, 15.0) for name, probe in probes.items())))

    async def installations(self) -> Installations:
        """The workspaces that installed the Slack app and their (sealed) tokens; opened on first use."""
        if self._installations is None:
            sealed = await build_installation_store(self.settings, self.store)
            self._installations = Installations(sealed, TokenCipher(secret(self.settings.token_key)))
        return self._installations

    def _start_ownership(self) -> None:
        if self.ownership is not None:
            self.ownership.start()
        if self.handover is not None:
            self.handover.start()

    async def close(self) -> None:
        await self.recovery.stop()
        if self.handover is not None:
            await self.handover.stop()
        if self.intake is not None:
            await self.intake.stop()
        if self.ownership is not None:
            await self.ownership.stop()
        await self.pipeline.drain(timeout_s=5)
        if self.lessor is not None:
            await self.lessor.close()  # gives back the tokens not spent
        if self.leases is not None:
            await self.leases.close()
        if self.holds is not None:
            await self.holds.close()
        if self._installations is not None:
            closer = getattr(self._installations.store, "close", None)
            if closer is not None:
                await closer()
        await self.deltas.close()
        await self.retriever.close()
        closer = getattr(self.llm, "close", None)
        if closer is not None:
            await closer()
        if self.places is not None:
            await self.places.close()
        if self.outbox is not None:
            await self.outbox.close()
        await self.store.close()


class _UrlIngestor:
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    async def ingest_url(self, ws: WorkspaceRef, actor: Actor, url: str) -> str:
        report = await self.ingestor.ingest(ws, actor, [url], None)
        if report.failed:
            return "Ingestion failed: " + "; ".join(error for _, error in report.failed)
        return f"Ingested {url}: {report.summary()}."


def data_dir(settings: Settings) -> Path:
    path = settings.data_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(f"CHATBOT_DATA_DIR {path} is not a directory")
    if not path.exists():
        if "data_dir" in settings.model_fields_set:
            raise ConfigError(f"CHATBOT_DATA_DIR {path} does not exist; create it or unset CHATBOT_DATA_DIR")
        path.mkdir(parents=True)
    return path


def personas_for(store: Store) -> ChannelPersonas:
    """Channel personas live in the store's own database (their own tables, the store's checks)."""
    from core.stores.convex import ConvexStore
    from core.stores.convex_personas import ConvexPersonas
    from core.stores.sqlite_personas import SqlitePersonas

    return ConvexPersonas(store) if isinstance(store, ConvexStore) else SqlitePersonas(_sqlite(store))


def feedback_for(store: Store) -> FeedbackStore:
    """Feedback lives in the store's own database (its own table, the store's checks)."""
    from core.stores.convex import ConvexStore
    from core.stores.convex_feedback import ConvexFeedback
    from core.stores.sqlite_feedback import SqliteFeedback

    return ConvexFeedback(store) if isinstance(store, ConvexStore) else SqliteFeedback(_sqlite(store))


def controls_for(store: Store) -> ReplyControlsStore:
    """What reply buttons need lives in the store's own database (its own table, the store's checks)."""
    from core.stores.convex import ConvexStore
    from core.stores.convex_controls import ConvexControls
    from core.stores.sqlite_controls import SqliteControls

    return ConvexControls(store) if isinstance(store, ConvexStore) else SqliteControls(_sqlite(store))


def stops_for(store: Store) -> ReplyStops:
    """Stops for replies streamed by another process, judged in the store's own database."""
    from core.stores.convex import ConvexStore
    from core.stores.convex_stops import ConvexStops
    from core.stores.sqlite_stops import SqliteStops

    return ConvexStops(store) if isinstance(store, ConvexStore) else SqliteStops(_sqlite(store))


def _sqlite(store: Store) -> SqliteStore:
    from core.stores.sqlite import SqliteStore

    if not isinstance(store, SqliteStore):
        raise ConfigError(f"no side tables for {type(store).__name__}")
    return store


def usage_for(store: Store) -> UsageLedger:
    """The token ledger and budgets live in the store's own database (charged by its usage write)."""
    from core.stores.convex import ConvexStore

    if isinstance(store, ConvexStore):
        from core.stores.convex_usage import ConvexUsage

        return ConvexUsage(store)
    from core.stores.sqlite import SqliteStore
    from core.stores.sqlite_usage import SqliteUsage

    if not isinstance(store, SqliteStore):
        raise ConfigError(f"no usage ledger for {type(store).__name__}")
    return SqliteUsage(store)


async def build_store(settings: Settings) -> Store:
    if settings.convex_url:
        from core.stores.convex import ConvexStore

        key = secret(settings.convex_service_secret)
        if not key:
            raise MissingSetting("CONVEX_SERVICE_SECRET", purpose="needed with CONVEX_URL")
        return ConvexStore(settings.convex_url, key)
    from core.stores.sqlite import SqliteStore

    return await SqliteStore.open(data_dir(settings) / "chatbot.sqlite")


async def build_leases(settings: Settings, store: Store) -> Leases | None:
    """With several processes on one store (CHATBOT_SCALE_OUT; on with Convex): the shared leases."""
    if not (settings.scale_out if settings.scale_out is not None else bool(settings.convex_url)):
        return None
    from core.stores.convex import ConvexStore

    if isinstance(store, ConvexStore):
        from core.stores.convex_leases import ConvexLeases

        return ConvexLeases(store)
    from core.stores.sqlite_leases import SqliteLeases

    return await SqliteLeases.open(data_dir(settings) / "chatbot.sqlite")  # the store's file


async def build_holds(settings: Settings, store: Store) -> Holds | None:
    """With the shared leases: claimed questions held in the store until answered (core.handover)."""
    from core.stores.convex import ConvexStore

    if isinstance(store, ConvexStore):
        from core.stores.convex_questions import ConvexQuestions

        return ConvexQuestions(store)
    from core.stores.sqlite_questions import SqliteQuestions

    return await SqliteQuestions.open(data_dir(settings) / "chatbot.sqlite")  # beside the store's claims


async def build_installation_store(settings: Settings, store: Store) -> SealedInstallations:
    from core.stores.convex import ConvexStore

    if isinstance(store, ConvexStore):
        from core.stores.installations_convex import ConvexInstallations

        return ConvexInstallations(store)
    from core.stores.installations_sqlite import SqliteInstallations

    return await SqliteInstallations.open(data_dir(settings) / "chatbot.sqlite")


async def build_retriever(settings: Settings) -> Retriever:
    from core.retrieval.embedders import build_embedder, local_embedder_installed

    if settings.weaviate_url:
        from core.retrieval.weaviate import WeaviateRetriever

        return WeaviateRetriever(
            url=settings.weaviate_url,
            grpc_port=settings.weaviate_grpc_port,
            api_key=secret(settings.weaviate_api_key),
            embedder=build_embedder(settings),
        )
    path = data_dir(settings) / "knowledge.sqlite"
    if settings.retrieval not in ("hybrid", "keyword"):
        raise MissingSetting("CHATBOT_RETRIEVAL", purpose=f"must be 'hybrid' or 'keyword', not {settings.retrieval!r}")
    if settings.retrieval == "keyword" or (settings.embedder == "local" and not local_embedder_installed()):
        from core.retrieval.fts import FtsRetriever

        if settings.retrieval == "hybrid":
            log.warning("core.keyword_retrieval_only", reason="the local embedding model is not installed")
        return await FtsRetriever.open(path)
    from core.retrieval.hybrid import HybridRetriever

    return await HybridRetriever.open(path, build_embedder(settings))


def build_llm(settings: Settings) -> LLM:
    key = secret(settings.anthropic_api_key)
    if key:
        from core.llm.anthropic import AnthropicLLM

        return AnthropicLLM(
            api_key=key,
            model=settings.model,
            base_url=settings.anthropic_base_url,
            idle_timeout_s=settings.llm_idle_timeout_s,
        )
    from core.llm.extractive import ExtractiveLLM

    return ExtractiveLLM()


def build_rewriter(settings: Settings, llm: LLM) -> QueryRewriter | None:
    """Rewriting needs a language model: none with the extractive fallback."""
    if not secret(settings.anthropic_api_key):
        return None
    return QueryRewriter(llm, model=settings.rewrite_model, timeout_s=settings.rewrite_timeout_s)


async def build_core(settings: Settings | None = None) -> ChatCore:
    settings = settings or Settings()
    store = await build_store(settings)
    try:
        retriever = await build_retriever(settings)
    except BaseException:
        await store.close()
        raise
    llm = build_llm(settings)
    places = await build_places(settings, store)
    leases = await build_leases(settings, store)
    holds = await build_holds(settings, store) if leases is not None else None
    rewriter = build_rewriter(settings, llm)
    outbox = await Outbox.open(data_dir(settings) / "outbox.sqlite")  # local even with Convex
    log.info(
        "core.ready",
        store=type(store).__name__,
        retriever=type(retriever).__name__,
        llm=llm.name,
        scale_out=leases is not None,
        rewriting=rewriter is not None,
    )
    return ChatCore(
        settings, store, retriever, llm, places=places, leases=leases, rewriter=rewriter, outbox=outbox, holds=holds
    )


async def build_places(settings: Settings, store: Store) -> ClosablePlaces | None:
    """Where replies are on their platforms, next to the store (Convex: any process can find them)."""
    from core.stores.convex import ConvexStore

    if isinstance(store, ConvexStore):
        from core.stores.convex_places import ConvexPlaces

        return ConvexPlaces(store)
    from core.stores.sqlite_places import SqlitePlaces

    return await SqlitePlaces.open(data_dir(settings) / "chatbot.sqlite")
