"""The Discord bot: turns messages into IncomingMessages for the core, and serves /chatbot admin commands."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections import OrderedDict
from collections.abc import Awaitable

import discord
import structlog
from discord import app_commands

from bots.discord.budget import rate_limit_trace
from bots.discord.controls import handle_click, is_control
from bots.discord.files import DiscordFiles
from bots.discord.history import DiscordHistory, DiscordThread, attachments_of
from bots.discord.members import GuildMembers, member_facts
from bots.discord.replies import DiscordReplies
from bots.discord.summarize import summarize_menu
from bots.discord.surface import DiscordSurface
from bots.discord.threads import BusyChannels, ThreadPlan
from core.app import ChatCore
from core.controls import asked_message_id, reply_ref
from core.messages import Actor, IncomingMessage, Platform, PlatformFacts, WorkspaceRef
from core.prompt import SUMMARIZE_THREAD
from core.roles import Role
from core.stores.base import ChannelMode

log = structlog.get_logger(__name__)

IDENTIFY_INTERVAL_S = 5.0
ROLE_CHOICES = [app_commands.Choice(name=r.label, value=r.label) for r in sorted(Role, reverse=True)]


def workspace_of(guild: discord.Guild | None, user: discord.abc.User) -> WorkspaceRef:
    return WorkspaceRef(Platform.DISCORD, str(guild.id) if guild else f"dm-{user.id}")


def actor_of(user: discord.abc.User, guild: discord.Guild | None) -> Actor:
    """The platform facts the role model maps: guild owner, Administrator / Manage Guild, role ids."""
    facts = member_facts(user, guild) if isinstance(user, discord.Member) and guild is not None else PlatformFacts()
    return Actor(str(user.id), facts, display_name=user.display_name)


class ChatbotClient(discord.AutoShardedClient):
    """Runs the shards `shard_ids` of `shard_count` (all of one shard when unset) in this process; other
    processes run the other shards, and Discord sends each guild's events to its shard only."""

    def __init__(
        self,
        core: ChatCore,
        *,
        message_content: bool = False,
        shard_ids: list[int] | None = None,
        shard_count: int | None = None,
        identify_interval_s: float = IDENTIFY_INTERVAL_S,
    ) -> None:
        intents = discord.Intents.default()
        # Mentions and DMs carry their content without the privileged intent; with it, follow-ups do too.
        intents.message_content = message_content
        scheduler = core.scheduler()
        # discord.py retries 429s itself; the trace tells the scheduler, so its budgets learn.
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            http_trace=rate_limit_trace(scheduler),
            shard_ids=shard_ids,  # type: ignore[arg-type]  # None means every shard, as discord.py does
            shard_count=shard_count or 1,
        )
        self.identify_interval_s = identify_interval_s
        self.core = core
        self.scheduler = scheduler
        self.history = DiscordHistory(self, self.scheduler)
        self.files = DiscordFiles()
        self.busy = BusyChannels(scheduler, self.spawn)  # its busy notices are drained with the replies
        # Reopens kept questions' replies and finishes replies an earlier run left (attach_recovery).
        self.replies = DiscordReplies(self, scheduler, self._open_thread)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(admin_commands(self))
        self.tree.add_command(summarize_menu(self))
        self._tasks: set[asyncio.Task[None]] = set()
        # bot message id -> the conversation it belongs to, so a reply chain keeps its history
        self._conversations: OrderedDict[int, str] = OrderedDict()

    def attach_recovery(self) -> None:
        """Let the core reopen Discord replies for kept questions and finish replies an earlier run left."""
        self.core.recovery.platforms[Platform.DISCORD.value] = self.replies

    async def _reply(self, incoming: IncomingMessage, surface: DiscordSurface, history: DiscordThread | None) -> None:
        try:
            outcome = await self.core.answer(incoming, surface, self.scheduler, history, self.files)
            log.info("discord.answered", key=incoming.event_key, status=outcome.status, reason=outcome.reason)
        except Exception:
            log.exception("discord.answer_failed", key=incoming.event_key)
        finally:
            try:
                await surface.finished()  # Stop becomes Regenerate (a stopped reply too)
            except Exception as exc:
                log.warning("discord.controls_failed", error=repr(exc))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if not is_control(interaction):
            return  # app commands: the command tree's
        task = asyncio.create_task(self._click(interaction))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _click(self, interaction: discord.Interaction) -> None:
        async def again(question: IncomingMessage, clicked: discord.Interaction) -> None:
            channel = clicked.channel
            if not isinstance(channel, discord.abc.Messageable) or clicked.message is None:
                return
            surface = DiscordSurface(
                channel,
                channel_id=int(question.channel_id),
                scheduler=self.scheduler,
                controls=reply_ref(question.event_key),
                in_place=clicked.message,
            )
            await self._reply(question, surface, await self._history_again(question, clicked.message))

        ws, actor = workspace_of(interaction.guild, interaction.user), actor_of(interaction.user, interaction.guild)
        try:
            await handle_click(interaction, self.core.controls, ws, actor, again)
        except Exception:
            log.exception("discord.control_failed")

    async def _history_again(self, question: IncomingMessage, answer: discord.Message) -> DiscordThread | None:
        """The context a regenerated question gets: read again as for a new question (the reply chain or
        thread of the message it was asked in; a summary's, of the message it summarized)."""
        reference = answer.reference
        asked = asked_message_id(question)
        if asked.startswith("menu:"):  # the message menu's summary answers the message it summarizes
            if reference is None or reference.message_id is None:
                return None
            target = await self.history.message(reference.channel_id, reference.message_id)
            return DiscordThread(self.history, target, including=True) if target is not None else None
        if not asked.isdigit():
            return None
        # The answer replies to its question; an answer in a thread opened for it has the question in the
        # thread's parent channel.
        if reference is not None and reference.message_id == int(asked):
            where = reference.channel_id
        else:
            where = int(question.parent_channel_id or question.channel_id)
        message = await self.history.message(where, int(asked))
        return self.history.for_question(message) if message is not None else None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord admits one IDENTIFY per 5 s per bot (max_concurrency 1): the shards of one process
        # connect in turn. Other processes' shards are their own business (start them apart).
        if not initial:
            await asyncio.sleep(self.identify_interval_s)

    async def setup_hook(self) -> None:
        try:
            await self.tree.sync()
        except discord.HTTPException as exc:  # commands still work locally once registered
            log.warning("discord.sync_failed", error=str(exc))

    async def on_ready(self) -> None:
        log.info("discord.ready", user=str(self.user), guilds=len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None:
            return
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, work: Awaitable[None]) -> None:
        """Work that outlives its event (a reply): tracked, so draining waits for it."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def summarize(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message menu's summary: the plain "summarize this thread" question about the chosen
        message and what it continues, answered as a reply to it."""
        channel = message.channel
        if interaction.guild is None or not isinstance(channel, discord.abc.Messageable):
            return
        in_thread = isinstance(channel, discord.Thread)
        incoming = IncomingMessage(
            workspace=workspace_of(interaction.guild, interaction.user),
            channel_id=str(channel.id),
            thread_id=str(channel.id) if in_thread else self._conversations.get(message.id, str(message.id)),
            message_id=f"menu:{interaction.id}",
            author=actor_of(interaction.user, interaction.guild),
            text=SUMMARIZE_THREAD,
            is_dm=False,
            mentioned=True,
            parent_channel_id=_parent_of(channel),
        )
        surface = DiscordSurface(
            channel,
            channel_id=channel.id,
            scheduler=self.scheduler,
            reply_to=message,
            interaction=interaction,  # notices (a refusal) go to the clicker only
            controls=reply_ref(incoming.event_key),
        )
        await self._reply(incoming, surface, DiscordThread(self.history, message, including=True))

    async def drain(self, limit_s: float = 30) -> None:
        """Wait for replies in flight (at shutdown, and in tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit_s)

    def _remember(self, bot_message: discord.Message, conversation: str) -> None:
        self._conversations[bot_message.id] = conversation
        while len(self._conversations) > 50_000:
            self._conversations.popitem(last=False)

    async def _conversation(self, message: discord.Message) -> tuple[str, bool]:
        """(thread id, addressed to the bot?) for a message."""
        assert self.user is not None
        channel = message.channel
        if isinstance(channel, discord.Thread):
            return str(channel.id), channel.owner_id == self.user.id or self.user in message.mentions
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            known = self._conversations.get(reference.message_id)
            resolved = reference.resolved
            if known is not None:
                return known, True
            if isinstance(resolved, discord.Message) and resolved.author.id == self.user.id:
                # A bot answer replies to its question: that question starts the conversation.
                root = resolved.reference.message_id if resolved.reference else None
                return str(root or resolved.id), True
        return str(message.id), self.user in message.mentions or message.guild is None

    async def _open_thread(self, plan: ThreadPlan) -> discord.abc.Messageable | None:
        """The thread a question's reply goes in (None: its channel), opened when the reply is first
        posted: by then the question is held, so a process that dies here loses nothing."""
        settings = await self.core.store.settings(WorkspaceRef(Platform.DISCORD, str(plan.guild)))
        return await self.busy.open(plan, settings.threads, self)

    async def _handle(self, message: discord.Message) -> None:
        assert self.user is not None
        thread_id, addressed = await self._conversation(message)
        text = re.sub(rf"<@!?{self.user.id}>", "", message.content).strip()
        # Nothing is awaited between here and the held claim: the thread (if any) comes with the first post.
        plan, counted = self.busy.plan(message, text) if addressed and text else (None, False)
        incoming = IncomingMessage(
            workspace=workspace_of(message.guild, message.author),
            # The event key names the channel asked in, whether or not the reply moves into a thread.
            channel_id=str(message.channel.id),
            thread_id=thread_id,
            message_id=str(message.id),
            author=actor_of(message.author, message.guild),
            text=text,
            is_dm=message.guild is None,
            mentioned=addressed,
            parent_channel_id=_parent_of(message.channel),
            attachments=attachments_of(message),
        )
        surface = DiscordSurface(
            message.channel,
            channel_id=message.channel.id,
            scheduler=self.scheduler,
            reply_to=message,
            on_posted=lambda posted: self._remember(posted, thread_id),
            controls=reply_ref(incoming.event_key),
            thread_plan=plan,
            open_thread=self._open_thread,
        )
        try:
            # The reply chain or thread the question continues.
            await self._reply(incoming, surface, self.history.for_question(message))
        finally:
            if counted:
                self.busy.done(message.channel.id)


def _parent_of(channel: object) -> str:
    """The channel a thread is in (its persona applies to the thread), or "" outside threads."""
    if isinstance(channel, discord.Thread):
        return str(channel.parent_id)
    return ""


def admin_commands(client: ChatbotClient) -> app_commands.Group:
    """`/chatbot ...`. default_member_permissions is only a hint to Discord's UI: every command checks the
    caller's role in the core, and the store checks again inside its own write."""
    chatbot = app_commands.Group(
        name="chatbot",
        description="Administer the chatbot",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    role = app_commands.Group(name="role", description="Bot roles", parent=chatbot)
    channel = app_commands.Group(name="channel", description="Where the bot answers", parent=chatbot)

    async def reply(interaction: discord.Interaction, run: asyncio.Future[str] | object) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await run  # type: ignore[misc]
        except Exception as exc:  # the command layer answers every failure itself; this is a last guard
            log.error("discord.admin_failed", error=repr(exc))
            text = "Sorry, that command failed on my side. Please try again."
        await interaction.followup.send(text[:2000], ephemeral=True)

    def context(interaction: discord.Interaction) -> tuple[WorkspaceRef, Actor]:
        return workspace_of(interaction.guild, interaction.user), actor_of(interaction.user, interaction.guild)

    def run(interaction: discord.Interaction, command: str) -> Awaitable[str]:
        """Every app command goes through the one command layer, with the guild to look targets up in."""
        ws, actor = context(interaction)
        return client.core.admin.run(ws, actor, command, users=GuildMembers(interaction.guild))

    @role.command(name="set", description="Give a member a bot role")
    @app_commands.choices(role=ROLE_CHOICES)
    async def role_set(interaction: discord.Interaction, member: discord.Member, role: str) -> None:
        await reply(interaction, run(interaction, f"role set {member.id} {role}"))

    @role.command(name="list", description="List bot roles")
    async def role_list(interaction: discord.Interaction) -> None:
        await reply(interaction, run(interaction, "role list"))

    @chatbot.command(name="rolemap", description="Map a Discord role to a bot role (none removes it)")
    @app_commands.choices(role=[*ROLE_CHOICES, app_commands.Choice(name="none", value="none")])
    async def rolemap(interaction: discord.Interaction, discord_role: discord.Role, role: str) -> None:
        await reply(interaction, run(interaction, f"rolemap {discord_role.id} {role}"))

    @channel.command(name="allow", description="Answer in this channel")
    async def channel_allow(interaction: discord.Interaction, target: discord.TextChannel) -> None:
        await reply(interaction, run(interaction, f"channel {ChannelMode.ALLOW.value} {target.id}"))

    @channel.command(name="deny", description="Never answer in this channel")
    async def channel_deny(interaction: discord.Interaction, target: discord.TextChannel) -> None:
        await reply(interaction, run(interaction, f"channel {ChannelMode.DENY.value} {target.id}"))

    @channel.command(name="prompt", description="This channel's own system prompt (none: the server's)")
    async def channel_prompt(interaction: discord.Interaction, target: discord.TextChannel, prompt: str) -> None:
        ws, actor = context(interaction)
        text = "" if prompt.strip().lower() == "none" else prompt
        await reply(interaction, client.core.admin.set_persona(ws, actor, str(target.id), prompt=text))

    @channel.command(name="model", description="This channel's own model (none: the server's)")
    async def channel_model(interaction: discord.Interaction, target: discord.TextChannel, model: str) -> None:
        ws, actor = context(interaction)
        text = "" if model.strip().lower() == "none" else model
        await reply(interaction, client.core.admin.set_persona(ws, actor, str(target.id), model=text))

    @chatbot.command(name="settings", description="Show settings, or set one")
    async def settings(interaction: discord.Interaction, key: str | None = None, value: str | None = None) -> None:
        command = f"settings set {shlex.quote(key)} {shlex.quote(value)}" if key and value is not None else "settings"
        await reply(interaction, run(interaction, command))

    @chatbot.command(name="ingest", description="Add a web page or file URL to the knowledge")
    async def ingest(interaction: discord.Interaction, url: str) -> None:
        await reply(interaction, run(interaction, f"ingest {shlex.quote(url)}"))

    @chatbot.command(name="audit", description="The latest audit entries")
    async def audit(interaction: discord.Interaction, count: int = 20) -> None:
        await reply(interaction, run(interaction, f"audit {count}"))

    @chatbot.command(name="usage", description="Tokens and estimated cost by user, channel and day")
    async def usage(interaction: discord.Interaction, days: int = 30) -> None:
        await reply(interaction, run(interaction, f"usage {days}"))

    @chatbot.command(name="budget", description="Token budgets: show, or set month/day (tokens or none)")
    @app_commands.choices(scope=[app_commands.Choice(name=n, value=n) for n in ("month", "day")], role=ROLE_CHOICES)
    async def budget(
        interaction: discord.Interaction, scope: str | None = None, tokens: str | None = None, role: str | None = None
    ) -> None:
        parts = ["budget", scope or "", role or "" if scope == "day" else "", tokens or "" if scope else ""]
        await reply(interaction, run(interaction, " ".join(shlex.quote(p) for p in parts if p)))

    return chatbot
