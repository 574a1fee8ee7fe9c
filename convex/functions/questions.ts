// Questions claimed but not yet answered on the platform, held by the claiming process (owner +
// heartbeat) so that a live process answers them when that owner dies (core/stores/questions.py).
// The hold is written with the event's claim, in one transaction; the answer's first stored place
// ends it (places.ts); a question settled without an answer is released by its owner.
import { v } from "convex/values";
import type { MutationCtx } from "./_generated/server";
import { bounded, boundedCount, boundedInt, fail, serviceMutation, workspaceKey } from "./lib/security";

const now = () => Date.now() / 1000;

export function holdOf(ctx: MutationCtx, key: string) {
  return ctx.db
    .query("heldQuestions")
    .withIndex("by_key", (q) => q.eq("key", key))
    .unique();
}

/**
 * Claim the event and hold its question for `owner` (the process): true for the first claimant, and
 * again for the hold's claimant (the attempt's retry, or the process that took it over); false for any
 * other delivery of the event, even to the same process.
 */
export const hold = serviceMutation({
  name: "questions:hold",
  args: { owner: v.string(), claimant: v.string(), key: v.string(), workspace: v.string(), message: v.string(), place: v.string() },
  handler: async (ctx, { owner, claimant, key, workspace, message, place }) => {
    bounded(owner, "id", "owner");
    bounded(claimant, "id", "claimant");
    bounded(key, "key", "event key");
    workspaceKey(workspace);
    if (!key.startsWith(`${workspace}:`)) fail("invalid", "the event must be of the workspace");
    bounded(message, "text", "question");
    bounded(place, "place", "place");
    const at = now();
    const claimed = await ctx.db
      .query("eventClaims")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (claimed === null) {
      await ctx.db.insert("eventClaims", { key, claimant, at: Date.now() });
      const platform = workspace.split(":")[0] ?? "";
      await ctx.db.insert("heldQuestions", { key, workspace, platform, message, place, owner, claimant, heartbeatAt: at });
      return true;
    }
    // Claimed already: by this attempt (its retry, or it took the question over), or by another.
    const held = await holdOf(ctx, key);
    if (held === null || held.claimant !== claimant) return false;
    await ctx.db.patch(held._id, { owner, heartbeatAt: at });
    return true;
  },
});

/**
 * The owner still holds these questions, each named with its workspace; returns the keys it no longer
 * holds (or that are no hold of the workspace named with them: never kept alive through another).
 */
export const heartbeat = serviceMutation({
  name: "questions:heartbeat",
  args: { owner: v.string(), holds: v.array(v.object({ workspace: v.string(), key: v.string() })) },
  handler: async (ctx, { owner, holds }) => {
    bounded(owner, "id", "owner");
    boundedCount(holds, "heartbeat_replies", "questions");
    const at = now();
    const lost: string[] = [];
    for (const { workspace, key } of holds) {
      workspaceKey(workspace);
      bounded(key, "key", "event key");
      const held = await holdOf(ctx, key);
      if (held === null || held.owner !== owner || held.workspace !== workspace) lost.push(key);
      else await ctx.db.patch(held._id, { heartbeatAt: at });
    }
    return lost;
  },
});

/** Hold the questions whose owner stopped heartbeating `staleS` ago; of several sweepers, one wins each. */
export const takeOver = serviceMutation({
  name: "questions:takeOver",
  args: { owner: v.string(), claimant: v.string(), staleS: v.number(), limit: v.number(), platforms: v.array(v.string()) },
  handler: async (ctx, { owner, claimant, staleS, limit, platforms }) => {
    bounded(owner, "id", "owner");
    bounded(claimant, "id", "claimant");
    if (!Number.isFinite(staleS) || staleS <= 0 || staleS > 86_400) fail("invalid", "staleS must be above 0 and at most 86400");
    boundedInt(limit, "lease_page", "limit");
    boundedCount(platforms, "platforms", "platforms");
    const at = now();
    const stale = await ctx.db
      .query("heldQuestions")
      .withIndex("by_heartbeat", (q) => q.lt("heartbeatAt", at - staleS))
      .take(limit * 4);
    const taken = [];
    for (const held of stale) {
      if (taken.length >= limit) break;
      if (platforms.length > 0 && !platforms.includes(held.platform)) continue;
      await ctx.db.patch(held._id, { owner, claimant, heartbeatAt: at });
      taken.push({ key: held.key, workspace: held.workspace, message: held.message, place: held.place });
    }
    return taken;
  },
});

/** The question was settled without a posted answer: true if this owner still held it. */
export const release = serviceMutation({
  name: "questions:release",
  args: { owner: v.string(), workspace: v.string(), key: v.string() },
  handler: async (ctx, { owner, workspace, key }) => {
    bounded(owner, "id", "owner");
    workspaceKey(workspace);
    bounded(key, "key", "event key");
    const held = await holdOf(ctx, key);
    if (held === null || held.owner !== owner || held.workspace !== workspace) return false;
    await ctx.db.delete(held._id);
    return true;
  },
});
