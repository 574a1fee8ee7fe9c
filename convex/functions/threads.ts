// Threads, paginated messages, and streaming replies (delta rows while live, final text in the row).
import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import { internal } from "./_generated/api";
import type { Doc, Id } from "./_generated/dataModel";
import { internalMutation, type QueryCtx } from "./_generated/server";
import { RULES } from "./lib/rules";
import { type BudgetState, charge } from "./lib/usage";
import { bounded, boundedCount, boundedInt, boundedNumber, fail, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";

const DELTA_CLEANUP_DELAY_MS = 60_000;
const now = () => Date.now() / 1000;

const status = v.union(v.literal("streaming"), v.literal("complete"), v.literal("failed"), v.literal("cancelled"));
const source = v.object({ index: v.number(), title: v.string(), uri: v.string(), text: v.string(), score: v.number() });

async function textSoFar(ctx: QueryCtx, message: Doc<"messages">): Promise<string> {
  if (message.status !== "streaming") return message.text;
  const deltas = await ctx.db
    .query("streamDeltas")
    .withIndex("by_message_seq", (q) => q.eq("message", message._id))
    .collect();
  return message.text + deltas.map((d) => d.text).join("");
}

async function present(ctx: QueryCtx, message: Doc<"messages">) {
  return {
    id: message._id,
    thread: message.thread,
    role: message.role,
    text: await textSoFar(ctx, message),
    status: message.status,
    authorId: message.authorId,
    createdAt: message.createdAt,
    sources: message.sources,
    usage: message.usage,
    platformMessageId: message.platformMessageId,
  };
}

/** The thread, if it exists and belongs to the workspace; every thread function checks this first. */
async function threadIn(ctx: QueryCtx, workspace: string, id: string): Promise<Doc<"threads">> {
  workspaceKey(workspace);
  const normalized = ctx.db.normalizeId("threads", bounded(id, "id", "thread id"));
  if (normalized === null) fail("invalid", `${id} is not a thread id`);
  const row = await ctx.db.get(normalized);
  if (row === null || row.workspace !== workspace) fail("not_found", `no thread ${id} in this workspace`);
  return row;
}

/** The thread kept for a platform thread (or channel) of the workspace, if there is one. */
async function platformThread(ctx: QueryCtx, workspace: string, channel: string, externalThread: string) {
  workspaceKey(workspace);
  bounded(channel, "id", "channel id");
  bounded(externalThread, "id", "thread id");
  return await ctx.db
    .query("threads")
    .withIndex("by_workspace_channel_thread", (q) =>
      q.eq("workspace", workspace).eq("channel", channel).eq("externalThread", externalThread),
    )
    .unique();
}

/** The message, if it exists and its thread belongs to the workspace. */
export async function messageIn(ctx: QueryCtx, workspace: string, id: string): Promise<Doc<"messages"> | null> {
  workspaceKey(workspace);
  const normalized = ctx.db.normalizeId("messages", bounded(id, "id", "message id"));
  if (normalized === null) fail("invalid", `${id} is not a message id`);
  const row = await ctx.db.get(normalized);
  if (row === null) return null;
  const thread = await ctx.db.get(row.thread);
  return thread?.workspace === workspace ? row : null;
}

export const findThread = serviceQuery({
  args: { workspace: v.string(), channel: v.string(), externalThread: v.string() },
  handler: async (ctx, { workspace, channel, externalThread }) =>
    (await platformThread(ctx, workspace, channel, externalThread))?._id ?? null,
});

export const threadFor = serviceMutation({
  name: "threads:threadFor",
  args: { workspace: v.string(), channel: v.string(), externalThread: v.string() },
  handler: async (ctx, { workspace, channel, externalThread }) =>
    (await platformThread(ctx, workspace, channel, externalThread))?._id ??
    (await ctx.db.insert("threads", { workspace, channel, externalThread })),
});

export const addMessage = serviceMutation({
  name: "threads:addMessage",
  args: {
    workspace: v.string(),
    thread: v.string(),
    role: v.union(v.literal("user"), v.literal("assistant")),
    text: v.string(),
    authorId: v.string(),
    status,
    idempotencyKey: v.string(),
  },
  handler: async (ctx, args) => {
    bounded(args.text, "text", "message text", { allowEmpty: true });
    bounded(args.authorId, "id", "author id", { allowEmpty: true });
    bounded(args.idempotencyKey, "key", "idempotency key", { allowEmpty: true });
    if (args.role === "user" && args.status !== "complete") fail("invalid", "a user's message is stored complete");
    // Existence and ownership first: a key is only ever looked up within its own thread.
    const thread = (await threadIn(ctx, args.workspace, args.thread))._id;
    const key = args.idempotencyKey ? `${thread}:${args.idempotencyKey}` : undefined;
    if (key) {
      const seen = await ctx.db
        .query("messages")
        .withIndex("by_idempotency_key", (q) => q.eq("idempotencyKey", key))
        .unique();
      if (seen && seen.thread === thread) return seen._id;
    }
    const at = now();
    return await ctx.db.insert("messages", {
      thread,
      createdAt: at,
      updatedAt: at,
      role: args.role,
      text: args.text,
      status: args.status,
      authorId: args.authorId,
      sources: [],
      usage: { inputTokens: 0, outputTokens: 0 },
      platformMessageId: "",
      idempotencyKey: key,
    });
  },
});

/** Newest first; the cursor is Convex's own pagination cursor. */
export const messages = serviceQuery({
  args: { workspace: v.string(), thread: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { workspace, thread, paginationOpts }) => {
    const n = paginationOpts.numItems;
    if (!Number.isInteger(n) || n < 1 || n > RULES.counts.messages_page) fail("invalid", `limit must be between 1 and ${RULES.counts.messages_page}`);
    const owned = await threadIn(ctx, workspace, thread);
    const page = await ctx.db
      .query("messages")
      .withIndex("by_thread_createdAt", (q) => q.eq("thread", owned._id))
      .order("desc")
      .paginate(paginationOpts);
    return { ...page, page: await Promise.all(page.page.map((m) => present(ctx, m))) };
  },
});

/** A message with its text so far: a subscribed client sees a streaming reply grow. */
export const message = serviceQuery({
  args: { workspace: v.string(), id: v.string() },
  handler: async (ctx, { workspace, id }) => {
    const row = await messageIn(ctx, workspace, id);
    return row ? await present(ctx, row) : null;
  },
});

/** One write for the deltas of every live reply (the bot flushes them together about every 250 ms). */
export const appendDeltas = serviceMutation({
  name: "threads:appendDeltas",
  args: { deltas: v.array(v.object({ workspace: v.string(), message: v.string(), seq: v.number(), text: v.string() })) },
  handler: async (ctx, { deltas }) => {
    boundedCount(deltas, "deltas_per_call", "deltas");
    const live = new Map<Id<"messages">, number>(); // live reply -> characters it holds so far
    const fresh: { id: Id<"messages">; seq: number; text: string }[] = [];
    for (const delta of deltas) {
      boundedInt(delta.seq, "seq", "seq");
      bounded(delta.text, "text", "delta");
      const row = await messageIn(ctx, delta.workspace, delta.message);
      // Only live replies of the delta's own workspace take deltas: one flushed after completion would be an orphan row.
      if (row?.status !== "streaming" || row.role !== "assistant") continue;
      // Same (message, seq) again is a retried write that did land: skip it.
      const seen = await ctx.db
        .query("streamDeltas")
        .withIndex("by_message_seq", (q) => q.eq("message", row._id).eq("seq", delta.seq))
        .unique();
      if (!live.has(row._id)) live.set(row._id, (await textSoFar(ctx, row)).length);
      if (seen || fresh.some((d) => d.id === row._id && d.seq === delta.seq)) continue;
      // The text assembled from deltas has the same total bound as a completed text.
      const total = live.get(row._id)! + delta.text.length;
      if (total > RULES.text.text) fail("invalid", `reply ${row._id} would grow past ${RULES.text.text.toLocaleString("en")} characters`);
      live.set(row._id, total);
      fresh.push({ id: row._id, seq: delta.seq, text: delta.text });
    }
    for (const d of fresh) await ctx.db.insert("streamDeltas", { message: d.id, seq: d.seq, text: d.text });
    const at = now();
    for (const id of live.keys()) await ctx.db.patch(id, { updatedAt: at });
  },
});

export const completeMessage = serviceMutation({
  name: "threads:completeMessage",
  args: {
    workspace: v.string(),
    id: v.string(),
    text: v.string(),
    status: v.union(v.literal("complete"), v.literal("failed"), v.literal("cancelled")),
    sources: v.array(source),
    usage: v.object({
      inputTokens: v.number(),
      outputTokens: v.number(),
      cacheReadTokens: v.optional(v.number()),
      cacheWriteTokens: v.optional(v.number()),
    }),
    platformMessageId: v.string(),
    // Whom the tokens count against (lib/usage.ts): charged to the ledger and budgets in this mutation.
    charge: v.optional(v.object({ user: v.string(), role: v.string(), model: v.string() })),
  },
  handler: async (ctx, args): Promise<BudgetState[]> => {
    bounded(args.text, "text", "message text", { allowEmpty: true });
    bounded(args.platformMessageId, "id", "platform message id", { allowEmpty: true });
    boundedCount(args.sources, "sources", "sources");
    for (const s of args.sources) {
      boundedInt(s.index, "source_index", "source index");
      bounded(s.title, "title", "source title", { allowEmpty: true });
      bounded(s.uri, "uri", "source uri", { allowEmpty: true });
      bounded(s.text, "source_text", "source text", { allowEmpty: true });
      boundedNumber(s.score, "score", "source score");
    }
    boundedInt(args.usage.inputTokens, "tokens", "input tokens");
    boundedInt(args.usage.outputTokens, "tokens", "output tokens");
    boundedInt(args.usage.cacheReadTokens ?? 0, "tokens", "cache read tokens");
    boundedInt(args.usage.cacheWriteTokens ?? 0, "tokens", "cache write tokens");
    if (args.charge) {
      bounded(args.charge.user, "id", "charged user id");
      bounded(args.charge.role, "id", "charged role");
      bounded(args.charge.model, "model", "model", { allowEmpty: true });
    }
    const row = await messageIn(ctx, args.workspace, args.id);
    if (row === null) fail("not_found", `no message ${args.id} in this workspace`);
    if (row.role !== "assistant") fail("invalid", "only the bot's replies are completed");
    if (row.status !== "streaming") {
      // A message moves only forward; a retry of the same completion changes nothing.
      if (row.status === args.status && row.text === args.text) return [];
      fail("conflict", `reply ${args.id} is already ${row.status}`);
    }
    await ctx.db.patch(row._id, {
      text: args.text,
      status: args.status,
      sources: args.sources,
      usage: args.usage,
      platformMessageId: args.platformMessageId,
      updatedAt: now(),
    });
    // The final text lives in the row; the deltas were only for watching it grow.
    await ctx.scheduler.runAfter(DELTA_CLEANUP_DELAY_MS, internal.threads.removeDeltas, { message: row._id });
    if (!args.charge) return [];
    const thread = await ctx.db.get(row.thread);
    return await charge(ctx, args.workspace, thread?.channel ?? "", args.charge, args.usage);
  },
});

export const removeDeltas = internalMutation({
  args: { message: v.id("messages") },
  handler: async (ctx, { message }) => {
    const rows = await ctx.db
      .query("streamDeltas")
      .withIndex("by_message_seq", (q) => q.eq("message", message))
      .take(4096);
    for (const row of rows) await ctx.db.delete(row._id);
    if (rows.length === 4096) await ctx.scheduler.runAfter(0, internal.threads.removeDeltas, { message });
  },
});

/** Replies still `streaming` whose last delta is older than `olderThanS` (a crashed bot's). */
async function stale(ctx: QueryCtx, olderThanS: number) {
  return await ctx.db
    .query("messages")
    .withIndex("by_status_updatedAt", (q) => q.eq("status", "streaming").lt("updatedAt", now() - olderThanS))
    .take(200);
}

/**
 * The crash sweep across workspaces (a recovering process finishes every reply it finds): only which
 * reply of which workspace, never its text; the reply is then read and finished within its workspace.
 */
export const staleStreaming = serviceQuery({
  args: { olderThanS: v.number() },
  handler: async (ctx, { olderThanS }) => {
    boundedNumber(olderThanS, "score", "olderThanS");
    return Promise.all(
      (await stale(ctx, olderThanS)).map(async (m) => ({ id: m._id as string, workspace: (await ctx.db.get(m.thread))?.workspace ?? "" })),
    );
  },
});

/** The crash sweep (crons.ts): replies that stopped growing are marked failed with the text they had. */
export const sweepStale = internalMutation({
  args: { olderThanS: v.number() },
  handler: async (ctx, { olderThanS }) => {
    const rows = await stale(ctx, olderThanS);
    for (const row of rows) {
      const text = await textSoFar(ctx, row);
      await ctx.db.patch(row._id, { status: "failed", text: `${text}\n\n⚠️ _The answer was cut off: the bot stopped answering_` });
      await ctx.scheduler.runAfter(0, internal.threads.removeDeltas, { message: row._id });
    }
    return rows.length;
  },
});
