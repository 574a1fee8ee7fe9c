// Shared by every bot process on one deployment: platform budgets leased in small batches, and the
// ownership of streaming replies (owner + heartbeat; a dead owner's reply is taken over exactly once).
//
// Budgets are token buckets kept as GCRA state (the "theoretical arrival time" of the next token):
// a lease hands out up to `want` tokens, each with the moment from which it may be spent, never more
// than `horizonS` ahead. N processes spending their tokens at (or shortly after) those moments send
// together what one bucket of that rate and burst admits: at most burst + rate*W in any window W.
// Who gets the next tokens: the stalest request of all the processes (demandShare, the rule book's
// "leases"), as one process's scheduler gives its own.
import { v } from "convex/values";
import type { Doc } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { RULES } from "./lib/rules";
import { bounded, boundedCount, boundedInt, boundedNumber, fail, serviceMutation, workspaceKey } from "./lib/security";
import { stopRequested } from "./stops";
import { messageIn } from "./threads";

const now = () => Date.now() / 1000;

function positive(value: number, max: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0 || value > max) fail("invalid", `${name} must be a number above 0 and at most ${max}`);
  return value;
}

/** GCRA for one bucket: the offsets (seconds from now) of the granted tokens, and the state to undo the last one. */
export function grant(tat: number, at: number, perSecond: number, burst: number, want: number, horizonS: number, leadS = 0) {
  const interval = 1 / perSecond;
  const tolerance = (burst - 1) * interval;
  const slots: number[] = [];
  const undo: number[] = [];
  let next = tat;
  while (slots.length < want) {
    const slot = Math.max(at + leadS, next - tolerance);
    if (slot - at > horizonS + leadS) break;
    undo.push(next);
    slots.push(slot - at);
    next = Math.max(next, slot) + interval;
  }
  const retryAfterS = slots.length === 0 ? Math.max(0, next - tolerance - at - horizonS - leadS) : 0;
  return { slots, undo, tat: next, retryAfterS };
}

type Demand = { owner: string; since: number; at: number };

/**
 * How many tokens a lease of `owner` may take now, and the bucket's other live demands: while another
 * owner's demand, said within demand_ttl_s, has waited longer than this lease's requests (by more than
 * margin_s), only the requests at least that old are leased. core/stores/leases.py computes the same.
 */
export function demandShare(demands: Demand[], owner: string, waiting: number[], want: number, at: number) {
  const others = demands.filter((d) => d.owner !== owner && d.at >= at - RULES.leases.demand_ttl_s);
  if (others.length === 0) return { share: want, others };
  const rival = Math.max(...others.map((d) => at - d.since));
  const share = Math.min(want, waiting.filter((age) => age >= rival - RULES.leases.margin_s).length);
  return { share, others };
}

/** The owner's requests left waiting after `granted` tokens are remembered by the oldest of them. */
export function rememberDemand(others: Demand[], owner: string, waiting: number[], granted: number, at: number) {
  const kept = owner && waiting.length > granted ? [...others, { owner, since: at - waiting[granted]!, at }] : [...others];
  return kept.sort((a, b) => b.at - a.at).slice(0, RULES.leases.owners);
}

/** A lease refused for older demand elsewhere asks again about when the bucket's next token is due. */
export function refusedRetryS(tat: number, at: number, perSecond: number, burst: number) {
  const [least, most] = RULES.leases.retry_s;
  return Math.min(most!, Math.max(least!, tat - (burst - 1) / perSecond - at));
}

// `leadS`: no slot earlier than this after the store's now (the caller's round trip: a token whose
// moment passed before the answer arrived could not be spent). `waiting`: how long each of the
// process's requests for the bucket has waited, longest first (empty: leasing ahead).
const budgetItem = v.object({
  key: v.string(),
  perSecond: v.number(),
  burst: v.number(),
  want: v.number(),
  horizonS: v.number(),
  leadS: v.optional(v.number()),
  waiting: v.optional(v.array(v.number())),
});

/**
 * Lease tokens from many buckets in one short mutation; `at` is the deployment's clock (the slots'
 * origin). `owner` (the process) is who the requests' waiting demand is remembered for.
 */
export const take = serviceMutation({
  name: "leases:take",
  args: { items: v.array(budgetItem), owner: v.optional(v.string()) },
  handler: async (ctx, { items, owner = "" }) => {
    boundedCount(items, "lease_buckets", "buckets");
    if (owner) bounded(owner, "id", "owner");
    const at = now();
    const grants = [];
    for (const item of items) {
      bounded(item.key, "key", "budget key");
      positive(item.perSecond, 10_000, "perSecond");
      positive(item.burst, 10_000, "burst");
      if (item.burst < 1) fail("invalid", "burst must be at least 1");
      boundedInt(item.want, "lease_want", "want");
      positive(item.horizonS, 600, "horizonS");
      const lead = item.leadS ?? 0;
      if (!Number.isFinite(lead) || lead < 0 || lead > 5) fail("invalid", "leadS must be a number from 0 to 5");
      const waiting = item.waiting ?? [];
      boundedCount(waiting, "lease_ages", "waiting");
      for (const age of waiting) boundedNumber(age, "age_s", "waiting");
      waiting.sort((a, b) => b - a);
      const row = await ctx.db
        .query("budgetBuckets")
        .withIndex("by_key", (q) => q.eq("key", item.key))
        .unique();
      const tat = row?.tat ?? at;
      const { share, others } = demandShare(row?.demands ?? [], owner, waiting, item.want, at);
      // Older demand elsewhere goes first: nothing now, ask again about when the next token is due.
      const result =
        share > 0
          ? grant(tat, at, item.perSecond, item.burst, share, item.horizonS, lead)
          : { slots: [], undo: [], tat, retryAfterS: refusedRetryS(tat, at, item.perSecond, item.burst) };
      const demands = rememberDemand(others, owner, waiting, result.slots.length, at);
      let seq = row?.seq ?? 0;
      if (result.slots.length > 0) seq += 1;
      const changed = result.slots.length > 0 || JSON.stringify(demands) !== JSON.stringify(row?.demands ?? []);
      if (row && changed) await ctx.db.patch(row._id, { tat: result.tat, seq, demands });
      else if (!row && changed) await ctx.db.insert("budgetBuckets", { key: item.key, tat: result.tat, seq, demands });
      grants.push({ key: item.key, slots: result.slots, undo: result.undo, seq, retryAfterS: result.retryAfterS, at });
    }
    return grants;
  },
});

/** Give back the unused tail of a lease: applied only if no lease was made on that bucket since. */
export const giveBack = serviceMutation({
  name: "leases:giveBack",
  args: { key: v.string(), seq: v.number(), tat: v.number() },
  handler: async (ctx, { key, seq, tat }) => {
    bounded(key, "key", "budget key");
    const row = await ctx.db
      .query("budgetBuckets")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (!row || row.seq !== seq || !(tat < row.tat)) return false;
    await ctx.db.patch(row._id, { tat, seq: seq + 1 });
    return true;
  },
});

// -- reply ownership -------------------------------------------------------------------------------

async function leaseOf(ctx: MutationCtx, message: Doc<"messages">["_id"]) {
  return await ctx.db
    .query("replyLeases")
    .withIndex("by_message", (q) => q.eq("message", message))
    .unique();
}

/** The reply, if `reply` is a message of a thread of `workspace` (else null: not reachable through it). */
async function replyIn(ctx: MutationCtx, workspace: string, reply: string) {
  return ctx.db.normalizeId("messages", reply) === null ? null : await messageIn(ctx, workspace, reply);
}

/**
 * The owner says it is alive for each of its live replies (and owns the new ones), each named with its
 * workspace. Returns the ids it no longer owns: taken over by another process, no longer streaming, or
 * no reply of the workspace named with it (never owned or kept through another workspace). It must
 * stop showing those. `stop`: its own replies a Stop was asked for on another process (stops.ts).
 */
export const heartbeat = serviceMutation({
  name: "leases:heartbeat",
  args: { owner: v.string(), replies: v.array(v.object({ workspace: v.string(), reply: v.string() })) },
  handler: async (ctx, { owner, replies }) => {
    bounded(owner, "id", "owner");
    boundedCount(replies, "heartbeat_replies", "replies");
    const at = now();
    const lost: string[] = [];
    const stop: string[] = [];
    for (const { workspace, reply } of replies) {
      workspaceKey(workspace);
      const message = await replyIn(ctx, workspace, reply);
      const lease = message === null ? null : await leaseOf(ctx, message._id);
      if (message === null || (lease && lease.owner !== owner) || (!lease && message.status !== "streaming")) {
        lost.push(reply);
        continue;
      }
      if (lease) await ctx.db.patch(lease._id, { heartbeatAt: at });
      else await ctx.db.insert("replyLeases", { message: message._id, owner, heartbeatAt: at });
      if (await stopRequested(ctx, workspace, message._id)) stop.push(reply);
    }
    return { lost, stop };
  },
});

/**
 * Take over streaming replies whose owner stopped heartbeating `staleS` ago (or that never had an owner
 * and stopped growing as long ago). Serializable: of several processes sweeping at once, one wins each.
 * The one reply-lease call across workspaces (a process serves every workspace of its platforms): it
 * returns only each reply's id and workspace, and the finisher then works within that workspace.
 */
export const takeOver = serviceMutation({
  name: "leases:takeOver",
  args: { owner: v.string(), staleS: v.number(), limit: v.number(), platforms: v.array(v.string()) },
  handler: async (ctx, { owner, staleS, limit, platforms }) => {
    bounded(owner, "id", "owner");
    positive(staleS, 86_400, "staleS");
    boundedInt(limit, "lease_page", "limit");
    boundedCount(platforms, "platforms", "platforms");
    // The reply's workspace, if this process serves its platform (all platforms when none are named).
    const served = async (message: Doc<"messages">) => {
      const thread = await ctx.db.get(message.thread);
      if (thread === null) return null;
      return platforms.length === 0 || platforms.includes(thread.workspace.split(":")[0] ?? "") ? thread.workspace : null;
    };
    const at = now();
    const cutoff = at - staleS;
    const taken: { reply: string; workspace: string }[] = [];
    const stale = await ctx.db
      .query("replyLeases")
      .withIndex("by_heartbeat", (q) => q.lt("heartbeatAt", cutoff))
      .take(limit * 4);
    for (const lease of stale) {
      if (taken.length >= limit) break;
      const message = await ctx.db.get(lease.message);
      if (message?.status !== "streaming") {
        await ctx.db.delete(lease._id); // finished meanwhile: nothing to take over
        continue;
      }
      const workspace = await served(message);
      if (workspace === null) continue;
      await ctx.db.patch(lease._id, { owner, heartbeatAt: at });
      taken.push({ reply: lease.message, workspace });
    }
    const unowned = await ctx.db
      .query("messages")
      .withIndex("by_status_updatedAt", (q) => q.eq("status", "streaming").lt("updatedAt", cutoff))
      .take(limit * 4);
    for (const message of unowned) {
      if (taken.length >= limit) break;
      if (await leaseOf(ctx, message._id)) continue; // owned and alive (a stale one was taken above)
      const workspace = await served(message);
      if (workspace === null) continue;
      await ctx.db.insert("replyLeases", { message: message._id, owner, heartbeatAt: at });
      taken.push({ reply: message._id, workspace });
    }
    return taken;
  },
});

/** The owner is done with a reply of this workspace (it finished it): true if it still owned it. */
export const release = serviceMutation({
  name: "leases:release",
  args: { owner: v.string(), workspace: v.string(), reply: v.string() },
  handler: async (ctx, { owner, workspace, reply }) => {
    bounded(owner, "id", "owner");
    const message = await messageIn(ctx, workspace, reply); // an id that is none fails "invalid"
    if (message === null) return false; // another workspace's reply: not released through this one
    const lease = await leaseOf(ctx, message._id);
    if (!lease || lease.owner !== owner) return false;
    await ctx.db.delete(lease._id);
    return true;
  },
});
