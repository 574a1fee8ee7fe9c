"""The Slack app: a slack-bolt AsyncApp that turns Slack events into IncomingMessages for the core.

Events are acknowledged at once (Bolt answers 200 before any listener work) and answered in
tracked background tasks. Dedup is the core's: the message id is the event's `ts`, so a retried
delivery (X-Slack-Retry-Num) and the app_mention + message pair of one message share one key.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler

from bots.ops import ops_routes
from bots.slack import limits, summarize
from bots.slack.edge import EVENT_FIELDS, SlackEdge
from bots.slack.files import SlackFiles
from bots.slack.history import SlackChannelRecent, SlackThreadReader, slack_files
from bots.slack.mrkdwn import to_mrkdwn
from bots.slack.oauth import INSTALL_PATH, REDIRECT_PATH, OAuthConfig, TeamRoutedClient, oauth_parts, team_token
from bots.slack.replies import SlackReplies
from bots.slack.surface import (
    DOWN_ACTION,
    REASON_ACTION,
    REGENERATE_ACTION,
    STOP_ACTION,
    UP_ACTION,
    SlackSurface,
    StreamRefusals,
    call_slack,
)
from bots.slack.users import UserDirectory
from core.authors import unresolved
from core.context import ThreadHistory
from core.controls import REFUSALS, asked_message_id, reply_ref
from core.messages import IncomingMessage, Platform, WorkspaceRef
from core.pacing import EditScheduler, within_budget
from core.prompt import SUMMARIZE_CHANNEL, SUMMARIZE_THREAD

if TYPE_CHECKING:
    from core.app import ChatCore

log = structlog.get_logger(__name__)

EVENTS_PATH = "/slack/events"
# Message subtypes that are still a person writing to the bot; all others (edits, deletions,
# joins, bot messages, ...) are ignored.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
ASSISTANT_GREETING = "Hi! Ask me anything about this team's knowledge, and I'll answer with sources."
SUGGESTED_PROMPTS: list[dict[str, str]] = [
    {"title": "What can you do?", "message": "What can you help me with, and where does your knowledge come from?"},
    {"title": "Find a how-to", "message": "How do I get started as a new member of this team?"},
]


def strip_mention(text: str, bot_user_id: str | None) -> tuple[str, bool]:
    """The text without the bot's mention tokens, and whether the bot was mentioned."""
    if not bot_user_id:
        return text.strip(), False
    pattern = re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")
    stripped, count = pattern.subn("", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip(), count > 0


class SlackBot:
    """One Slack app process: the Bolt app, the Web API client, the user cache, the edit budgets."""

    def __init__(
        self,
        core: ChatCore,
        *,
        token: str | None,
        signing_secret: str | None,
        api_url: str | None = None,
        oauth: OAuthConfig | None = None,
        scheduler: EditScheduler | None = None,
        users_ttl_s: float = 600.0,
        native_streaming: bool = True,
        history_limited: bool = False,
    ) -> None:
        self.core = core
        self.native_streaming = native_streaming
        self.stream_refusals = StreamRefusals()
        client_args: dict[str, Any] = {}
        if api_url:
            client_args["base_url"] = api_url if api_url.endswith("/") else api_url + "/"
        # No RateLimitErrorRetryHandler: a 429 must reach the EditScheduler, which decides who waits.
        # Each call carries the token of the workspace being answered (many workspaces with `oauth`).
        self.client = TeamRoutedClient(
            token=token, retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1)], **client_args
        )
        self.scheduler = scheduler or core.scheduler()
        self.users = UserDirectory(self.client, ttl_s=users_ttl_s, scheduler=self.scheduler)
        self._installations = oauth.installations if oauth is not None else None
        self.files = SlackFiles(token, api_url=api_url)
        # Reopens kept questions' replies and finishes replies an earlier run left (attach_recovery).
        self.replies = SlackReplies(
            self.client,
            self.scheduler,
            token_for=self._installed_token if oauth is not None else None,
            native_streaming=native_streaming,
            refusals=self.stream_refusals,
        )
        self.history = SlackThreadReader(self.client, self.users, self.scheduler, limited=history_limited)
        # Over HTTP the edge verifies, de-duplicates and validates every request before Bolt parses
        # it (Bolt's own check ran after parsing); Socket Mode has no signatures to check.
        self.edge = SlackEdge(signing_secret) if signing_secret else None
        distribution: dict[str, Any] = {}
        self.oauth_flow: AsyncOAuthFlow | None = None
        if oauth is not None:  # many workspaces: installs through OAuth, a token per workspace
            store, authorize, self.oauth_flow = oauth_parts(client=self.client, **oauth.parts())
            distribution = {"installation_store": store, "authorize": authorize, "oauth_flow": self.oauth_flow}
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret or "",
            request_verification_enabled=False,
            process_before_response=False,
            **distribution,
        )
        if oauth is not None:
            self.app.enable_token_revocation_listeners()  # app_uninstalled, tokens_revoked: forget the token
        self._tasks: set[asyncio.Task[Any]] = set()
        self.errors: deque[BaseException] = deque(maxlen=100)  # recent failures of background work
        self._register()

    # -- wiring -------------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        assistant = AsyncAssistant()
        assistant.thread_started(self._on_assistant_started)
        assistant.thread_context_changed(self._on_assistant_context_changed)
        assistant.user_message(self._on_assistant_message)
        app.assistant(assistant)
        app.event("app_mention")(self._on_app_mention)
        app.event("message")(self._on_message)
        app.command("/chatbot")(self._on_command)
        app.action(STOP_ACTION)(self._on_control)
        app.action(REGENERATE_ACTION)(self._on_control)
        for rating in (UP_ACTION, DOWN_ACTION, REASON_ACTION):
            app.action(rating)(self._on_control)

    def attach_recovery(self) -> None:
        """Let the core reopen Slack replies for kept questions and finish replies an earlier run left."""
        self.core.recovery.platforms[Platform.SLACK.value] = self.replies
        # users.info is asked once a question is held, not before (core.authors): an acknowledged event
        # is never delivered again, so nothing slow may come between the ack and the hold. Questions
        # this bot receives bring its directory along (_reply); this one is for those taken over.
        self.core.authors[Platform.SLACK.value] = self.users

    def web_app(self) -> web.Application:
        """The aiohttp application serving the Events API at /slack/events, and /healthz, /readyz."""
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._handle_http)
        web_app.add_routes(ops_routes(self.core))
        if self.oauth_flow is not None:
            web_app.router.add_get(INSTALL_PATH, self._install)
            web_app.router.add_get(REDIRECT_PATH, self._oauth_redirect)
        return web_app

    async def _installed_token(self, team_id: str) -> str | None:
        assert self._installations is not None
        found = await self._installations.find(WorkspaceRef(Platform.SLACK, team_id))
        return found.bot_token if found is not None else None

    async def _install(self, request: web.Request) -> web.Response:
        assert self.oauth_flow is not None
        return await to_aiohttp_response(await self.oauth_flow.handle_installation(await to_bolt_request(request)))

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        assert self.oauth_flow is not None  # Bolt checks the state (cookie + store) before the code exchange
        return await to_aiohttp_response(await self.oauth_flow.handle_callback(await to_bolt_request(request)))

    async def _handle_http(self, request: web.Request) -> web.Response:
        if self.edge is None:  # no signing secret: nothing over HTTP can be trusted
            return web.json_response({"error": "request verification is not configured"}, status=401)
        verdict = self.edge.admit(await request.read(), request.headers)
        if verdict.forward is None:
            return web.Response(status=verdict.status, text=verdict.body, content_type="application/json")
        bolt_request = AsyncBoltRequest(body=verdict.forward, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
        try:
            bolt_response = await self.app.async_dispatch(bolt_request)
        except Exception as exc:  # a bug behind the edge: Slack retries a 5xx, which the edge lets through
            log.error("slack.dispatch_failed", error=repr(exc))
            bolt_response = BoltResponse(status=500, body='{"error":"internal error"}')
        if bolt_response.status >= 500:
            self.edge.failed(verdict)
        elif bolt_response.status == 404:  # a valid request no listener takes (Slack expects a 2xx)
            return web.Response(status=200, text="")
        return await to_aiohttp_response(bolt_response)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run after the ack, tracked so shutdown (and tests) can wait for the replies in flight."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.errors.append(error)
            log.error("slack.task_failed", task=task.get_name(), error=repr(error))

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for the replies in flight (at shutdown, and in tests)."""
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        await self.drain(timeout_s=10.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    # -- listeners (run after Bolt's ack) -------------------------------------------------------
    async def _on_app_mention(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        self._accept(event, body, context, via="app_mention")

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        self._accept(event, body, context, via="message")

    async def _on_assistant_message(self, payload: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        self._accept(payload, body, context, via="assistant")

    async def _on_assistant_started(self, payload: dict[str, Any], context: Any) -> None:
        team_token.set(getattr(context, "bot_token", None))
        thread = payload.get("assistant_thread") or {}
        team_id = str(getattr(context, "team_id", None) or "")
        channel, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        self.spawn(self._greet(team_id, channel, thread_ts), name="slack-assistant-greeting")

    async def _greet(self, team_id: str, channel: str, thread_ts: str) -> None:
        """The greeting and the suggested prompts of a new assistant thread, each inside its budget."""
        post = limits.scope("chat.postMessage", team_id, channel)
        await within_budget(
            self.scheduler,
            (post,),
            lambda: call_slack(
                self.client, "chat_postMessage", post.key, channel=channel, thread_ts=thread_ts, text=ASSISTANT_GREETING
            ),
            final=False,
        )
        prompts = limits.scope("assistant.threads.setSuggestedPrompts", team_id, channel)
        await within_budget(
            self.scheduler,
            (prompts,),
            lambda: call_slack(
                self.client,
                "assistant_threads_setSuggestedPrompts",
                prompts.key,
                channel_id=channel,
                thread_ts=thread_ts,
                prompts=SUGGESTED_PROMPTS,
            ),
            final=False,
        )

    async def _on_assistant_context_changed(self) -> None:
        # Bolt's default saves the context into message metadata (extra scopes and calls); the
        # answer does not depend on which channel the user is looking at, so nothing to do.
        return None

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any, context: Any) -> None:
        await ack()
        team_token.set(getattr(context, "bot_token", None))
        if summarize.is_summarize(str(command.get("text") or "")):
            bot_user_id = getattr(context, "bot_user_id", None)
            work = self._summarize(command, respond, bot_user_id)
            self.spawn(work, name=f"slack-summarize-{command.get('trigger_id', '')}")
            return
        self.spawn(self._admin(command, respond), name=f"slack-admin-{command.get('trigger_id', '')}")

    async def _summarize(self, command: dict[str, Any], respond: Any, bot_user_id: str | None) -> None:
        """`/chatbot summarize [message link]`: the plain "summarize this thread" question, asked for the
        linked thread (answered in it) or the channel's recent messages (answered in the channel)."""
        team_id, text = str(command.get("team_id") or ""), str(command.get("text") or "")
        try:
            target = summarize.parse_target(summarize.argument(text), str(command.get("channel_id") or ""))
        except ValueError as exc:
            await respond(text=f"Sorry, I can't summarize that: {exc}.", response_type="ephemeral")
            return
        ws = WorkspaceRef(Platform.SLACK, team_id)
        trigger = str(command.get("trigger_id") or time.time())
        message = IncomingMessage(
            workspace=ws,
            channel_id=target.channel,
            thread_id=target.thread_ts or f"summary:{trigger}",
            message_id=f"command:{trigger}",
            author=unresolved(str(command["user_id"])),  # looked up once the question is held
            text=SUMMARIZE_THREAD if target.thread_ts else SUMMARIZE_CHANNEL,
            is_dm=target.channel.startswith("D"),
            mentioned=True,
        )
        surface = self._surface(message, target.thread_ts)
        await self._reply(message, surface, self._thread_context(message, bot_user_id), via="command")

    def _surface(
        self, message: IncomingMessage, thread_ts: str | None, *, assistant_thread: bool = False
    ) -> SlackSurface:
        """Where the reply to `message` appears: its channel, in `thread_ts` (top level if None)."""
        return SlackSurface(
            self.client,
            scheduler=self.scheduler,
            team_id=message.workspace.external_id,
            channel_id=message.channel_id,
            user_id=message.author.user_id,
            thread_ts=thread_ts,
            assistant_thread=assistant_thread,
            native_streaming=self.native_streaming,
            refusals=self.stream_refusals,
            controls=reply_ref(message.event_key),
        )

    # -- work ----------------------------------------------------------------------------------
    def _accept(self, event: dict[str, Any], body: dict[str, Any], context: Any, *, via: str) -> None:
        team_token.set(getattr(context, "bot_token", None))  # the replies' calls use this workspace's token
        if event.get("subtype") not in USER_SUBTYPES or event.get("bot_id") or not isinstance(event.get("user"), str):
            return
        if not all(isinstance(event.get(name), str) and event[name] for name in EVENT_FIELDS["message"]):
            log.warning("slack.event_malformed", via=via)  # Socket Mode has no edge in front of it
            return
        authorizations = body.get("authorizations") or [{}]
        bot_user_id = getattr(context, "bot_user_id", None) or authorizations[0].get("user_id")
        if event.get("user") == bot_user_id:
            return
        team_id = getattr(context, "team_id", None) or body.get("team_id") or event.get("team") or ""
        self.history.observe(team_id, event)
        self.spawn(self._answer(event, team_id, bot_user_id, via=via), name=f"slack-{via}-{event.get('ts', '')}")

    async def _answer(self, event: dict[str, Any], team_id: str, bot_user_id: str | None, *, via: str) -> None:
        channel = str(event["channel"])
        ts = str(event["ts"])
        thread_ts = event.get("thread_ts")
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        text, mentioned = strip_mention(str(event.get("text") or ""), bot_user_id)
        mentioned = mentioned or via == "app_mention"
        if is_dm:
            # A plain DM is one running conversation answered at the top level; threads in a DM
            # (and assistant threads) are their own conversations, answered in the thread.
            reply_thread, conversation = thread_ts, thread_ts or channel
        else:
            reply_thread = conversation = thread_ts or ts
        ws = WorkspaceRef(Platform.SLACK, team_id)
        message = IncomingMessage(
            workspace=ws,
            channel_id=channel,
            thread_id=str(conversation),
            message_id=ts,
            author=unresolved(str(event["user"])),  # users.info once the question is held (a bot: ignored)
            text=text,
            is_dm=is_dm,
            mentioned=mentioned,
            attachments=slack_files(event),
        )
        surface = self._surface(message, reply_thread, assistant_thread=via == "assistant")
        if via == "assistant":
            await self._title_new_assistant_thread(ws, channel, str(conversation), text)
        # A message inside a thread: the thread so far is the context (a new top-level mention has none).
        await self._reply(message, surface, self._thread_context(message, bot_user_id), via=via)

    async def _reply(
        self, message: IncomingMessage, surface: SlackSurface, history: ThreadHistory | None, *, via: str
    ) -> None:
        try:
            outcome = await self.core.answer(message, surface, self.scheduler, history, self.files, self.users)
            log.info("slack.answered", via=via, key=message.event_key, status=outcome.status, reason=outcome.reason)
        finally:
            try:
                await surface.finished()  # Stop becomes Regenerate (a stopped reply too)
            except Exception as exc:
                log.warning("slack.controls_failed", error=repr(exc))
            await surface.close()

    async def _on_control(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._control(body, action), name=f"slack-control-{action.get('action_ts', '')}")

    async def _ask_reason(self, team_id: str, channel: str, user_id: str, thread_ts: str | None, key: str) -> None:
        """After a 👎: an optional reason, in a message only the rater sees."""
        blocks = [
            {
                "type": "input",
                "block_id": "chatbot_reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "What was wrong? (optional)"},
                "element": {"type": "plain_text_input", "action_id": "reason", "max_length": 2000},
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": REASON_ACTION,
                        "text": {"type": "plain_text", "text": "Send"},
                        "value": key,
                    }
                ],
            },
        ]
        args: dict[str, Any] = {
            "channel": channel,
            "user": user_id,
            "text": "Thanks. What was wrong?",
            "blocks": blocks,
        }
        if thread_ts:
            args["thread_ts"] = thread_ts
        scope = limits.scope("chat.postEphemeral", team_id, channel)
        await within_budget(
            self.scheduler, (scope,), lambda: call_slack(self.client, "chat_postEphemeral", scope.key, **args)
        )

    async def _control(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Stop or Regenerate clicked on a reply: authorized and deduplicated by the core."""
        team_id = str((body.get("team") or {}).get("id") or "")
        user_id = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        clicked = body.get("message") or {}
        key, click = str(action.get("value") or ""), str(action.get("action_ts") or body.get("trigger_id") or "")
        ws = WorkspaceRef(Platform.SLACK, team_id)
        actor = await self.users.actor(team_id, user_id)
        controls = self.core.controls
        kind = action.get("action_id")
        if kind == STOP_ACTION:
            result = await controls.stop(ws, actor, key, click)
        elif kind in (UP_ACTION, DOWN_ACTION, REASON_ACTION):
            reason = str(
                ((body.get("state") or {}).get("values") or {}).get("chatbot_reason", {}).get("reason", {}).get("value")
                or ""
            )
            result = await controls.rate(ws, actor, key, "up" if kind == UP_ACTION else "down", reason)
            if result == "done" and kind == DOWN_ACTION:
                await self._ask_reason(team_id, channel, user_id, clicked.get("thread_ts"), key)
        else:
            again = await controls.regenerate(ws, actor, key, click)
            result = again.result
            if again.question is not None and clicked.get("ts"):
                question = again.question
                surface = SlackSurface(
                    self.client,
                    scheduler=self.scheduler,
                    team_id=team_id,
                    channel_id=channel,
                    user_id=question.author.user_id,
                    thread_ts=clicked.get("thread_ts"),
                    native_streaming=False,  # the earlier answer is replaced in place
                    controls=reply_ref(question.event_key),
                    in_place=str(clicked["ts"]),
                )
                history = self._thread_context(question, str(clicked.get("user") or "") or None)
                await self._reply(question, surface, history, via="regenerate")
        refusal = REFUSALS[result]
        if refusal:
            args: dict[str, Any] = {"channel": channel, "user": user_id, "text": refusal}
            if clicked.get("thread_ts"):
                args["thread_ts"] = clicked["thread_ts"]
            scope = limits.scope("chat.postEphemeral", team_id, channel)
            await within_budget(
                self.scheduler, (scope,), lambda: call_slack(self.client, "chat_postEphemeral", scope.key, **args)
            )

    def _thread_context(self, question: IncomingMessage, bot_user_id: str | None) -> ThreadHistory | None:
        """The platform context of a question, new or regenerated alike: the thread it was asked in, up to
        the question; for /chatbot summarize, the whole thread or the channel's recent messages."""
        team_id, channel, asked = question.workspace.external_id, question.channel_id, asked_message_id(question)
        if asked.startswith("command:"):  # /chatbot summarize: the whole thread, or the channel's recent messages
            if question.thread_id.startswith("summary:"):
                return SlackChannelRecent(self.history, team_id, channel, bot_user_id)
            return self.history.for_question(team_id, channel, question.thread_id, "inf", bot_user_id)
        if question.thread_id in {asked, channel}:  # a new top-level question (or a plain DM): no thread yet
            return None
        return self.history.for_question(team_id, channel, question.thread_id, asked, bot_user_id)

    async def _title_new_assistant_thread(self, ws: WorkspaceRef, channel: str, thread_ts: str, text: str) -> None:
        """Name an assistant thread after its first question (best effort). The title waits in its
        budget in the background: the question is not held yet, so nothing slow may come first."""
        try:
            if not text or await self.core.store.find_thread(ws, channel, thread_ts) is not None:
                return
        except Exception as exc:
            log.warning("slack.set_title_failed", error=repr(exc))
            return
        title = text if len(text) <= 60 else text[:59] + "…"
        self.spawn(self._set_title(ws.external_id, channel, thread_ts, title), name="slack-assistant-title")

    async def _set_title(self, team_id: str, channel: str, thread_ts: str, title: str) -> None:
        scope = limits.scope("assistant.threads.setTitle", team_id, channel)
        try:
            await within_budget(
                self.scheduler,
                (scope,),
                lambda: call_slack(
                    self.client,
                    "assistant_threads_setTitle",
                    scope.key,
                    channel_id=channel,
                    thread_ts=thread_ts,
                    title=title,
                ),
                final=False,
            )
        except Exception as exc:
            log.warning("slack.set_title_failed", error=repr(exc))

    async def _admin(self, command: dict[str, Any], respond: Any) -> None:
        team_id = str(command.get("team_id") or "")
        ws = WorkspaceRef(Platform.SLACK, team_id)
        try:
            actor = await self.users.actor(team_id, str(command["user_id"]))
            text = await self.core.admin.run(ws, actor, str(command.get("text") or ""), users=self.users)
        except Exception as exc:
            log.error("slack.admin_failed", error=repr(exc))
            text = "Sorry, that command failed on my side. Please try again."
        await respond(text=to_mrkdwn(text), response_type="ephemeral")
