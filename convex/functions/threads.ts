// Threads, paginated messages, and streaming replies (delta rows while live, final text in the row).
import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import { internal } from "./_generated/api";
import type { Doc, Id } from "./_generated/dataModel";
import { internalMutation, type QueryCtx } from "./_generated/server";
import { LIMITS, bounded, boundedInt, fail, serviceMutation, serviceQuery } from "./lib/security";

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

function threadId(ctx: QueryCtx, id: string): Id<"threads"> {
  const normalized = ctx.db.normalizeId("threads", id);
  if (normalized === null) fail("invalid", `${id} is not a thread id`);
  return normalized;
}

function messageId(ctx: QueryCtx, id: string): Id<"messages"> {
  const normalized = ctx.db.normalizeId("messages", id);
  if (normalized === null) fail("invalid", `${id} is not a message id`);
  return normalized;
}

export const findThread = serviceQuery({
  args: { workspace: v.string(), channel: v.string(), externalThread: v.string() },
  handler: async (ctx, { workspace, channel, externalThread }) => {
    const row = await ctx.db
      .query("threads")
      .withIndex("by_workspace_channel_thread", (q) =>
        q.eq("workspace", workspace).eq("channel", channel).eq("externalThread", externalThread),
      )
      .unique();
    return row?._id ?? null;
  },
});

export const threadFor = serviceMutation({
  args: { workspace: v.string(), channel: v.string(), externalThread: v.string() },
  handler: async (ctx, { workspace, channel, externalThread }) => {
    bounded(workspace, LIMITS.id, "workspace");
    bounded(channel, LIMITS.id, "channel id");
    bounded(externalThread, LIMITS.id, "thread id");
    const row = await ctx.db
      .query("threads")
      .withIndex("by_workspace_channel_thread", (q) =>
        q.eq("workspace", workspace).eq("channel", channel).eq("externalThread", externalThread),
      )
      .unique();
    return row?._id ?? (await ctx.db.insert("threads", { workspace, channel, externalThread }));
  },
});

export const addMessage = serviceMutation({
  args: {
    thread: v.string(),
    role: v.union(v.literal("user"), v.literal("assistant")),
    text: v.string(),
    authorId: v.string(),
    status,
    idempotencyKey: v.string(),
  },
  handler: async (ctx, args) => {
    bounded(args.text, LIMITS.text, "message text", { allowEmpty: true });
    bounded(args.authorId, LIMITS.id, "author id", { allowEmpty: true });
    bounded(args.idempotencyKey, LIMITS.key, "idempotency key", { allowEmpty: true });
    if (args.idempotencyKey) {
      const seen = await ctx.db
        .query("messages")
        .withIndex("by_idempotency_key", (q) => q.eq("idempotencyKey", args.idempotencyKey))
        .unique();
      if (seen) return seen._id;
    }
    const thread = threadId(ctx, args.thread);
    if ((await ctx.db.get(thread)) === null) fail("not_found", `no thread ${args.thread}`);
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
      idempotencyKey: args.idempotencyKey || undefined,
    });
  },
});

/** Newest first; the cursor is Convex's own pagination cursor. */
export const messages = serviceQuery({
  args: { thread: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { thread, paginationOpts }) => {
    boundedInt(paginationOpts.numItems, 1, 200, "limit");
    const page = await ctx.db
      .query("messages")
      .withIndex("by_thread_createdAt", (q) => q.eq("thread", threadId(ctx, thread)))
      .order("desc")
      .paginate(paginationOpts);
    return { ...page, page: await Promise.all(page.page.map((m) => present(ctx, m))) };
  },
});

/** A message with its text so far: a subscribed client sees a streaming reply grow. */
export const message = serviceQuery({
  args: { id: v.string() },
  handler: async (ctx, { id }) => {
    const row = await ctx.db.get(messageId(ctx, id));
    return row ? await present(ctx, row) : null;
  },
});

/** One write for the deltas of every live reply (the bot flushes them together about every 250 ms). */
export const appendDeltas = serviceMutation({
  args: { deltas: v.array(v.object({ message: v.string(), seq: v.number(), text: v.string() })) },
  handler: async (ctx, { deltas }) => {
    if (deltas.length > 4096) fail("invalid", "at most 4096 deltas per call");
    const touched = new Set<Id<"messages">>();
    for (const delta of deltas) {
      const id = messageId(ctx, delta.message);
      boundedInt(delta.seq, 0, 1_000_000, "seq");
      bounded(delta.text, LIMITS.text, "delta");
      // Only live replies take deltas: one flushed after completion would be an orphan row.
      if ((await ctx.db.get(id))?.status !== "streaming") continue;
      // Same (message, seq) again is a retried write that did land: skip it.
      const seen = await ctx.db
        .query("streamDeltas")
        .withIndex("by_message_seq", (q) => q.eq("message", id).eq("seq", delta.seq))
        .unique();
      if (!seen) await ctx.db.insert("streamDeltas", { message: id, seq: delta.seq, text: delta.text });
      touched.add(id);
    }
    const at = now();
    for (const id of touched) {
      const row = await ctx.db.get(id);
      if (row?.status === "streaming") await ctx.db.patch(id, { updatedAt: at });
    }
  },
});

export const completeMessage = serviceMutation({
  args: {
    id: v.string(),
    text: v.string(),
    status,
    sources: v.array(source),
    usage: v.object({ inputTokens: v.number(), outputTokens: v.number() }),
    platformMessageId: v.string(),
  },
  handler: async (ctx, args) => {
    const id = messageId(ctx, args.id);
    bounded(args.text, LIMITS.text, "message text", { allowEmpty: true });
    bounded(args.platformMessageId, LIMITS.id, "platform message id", { allowEmpty: true });
    if (args.sources.length > 50) fail("invalid", "at most 50 sources");
    if ((await ctx.db.get(id)) === null) fail("not_found", `no message ${args.id}`);
    await ctx.db.patch(id, {
      text: args.text,
      status: args.status,
      sources: args.sources,
      usage: args.usage,
      platformMessageId: args.platformMessageId,
      updatedAt: now(),
    });
    // The final text lives in the row; the deltas were only for watching it grow.
    await ctx.scheduler.runAfter(DELTA_CLEANUP_DELAY_MS, internal.threads.removeDeltas, { message: id });
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

export const staleStreaming = serviceQuery({
  args: { olderThanS: v.number() },
  handler: async (ctx, { olderThanS }) => Promise.all((await stale(ctx, olderThanS)).map((m) => present(ctx, m))),
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
