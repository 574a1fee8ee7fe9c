// Where each reply is on its platform (the adapter's JSON), stored at its first post, so any process
// can finish a reply whose owner died (core/stores/places.py; core/recovery.py finishes it).
// Every call names the workspace: a place is stored only for a reply of that workspace, and read or
// forgotten only through it (another workspace's place reads as absent and cannot be dropped).
import { v } from "convex/values";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { bounded, boundedCount, boundedInt, boundedNumber, fail, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";
import { holdOf } from "./questions";
import { messageIn } from "./threads";

const now = () => Date.now() / 1000;

/** The reply's place, if it is kept for this workspace. */
async function placeIn(ctx: QueryCtx | MutationCtx, workspace: string, reply: string) {
  workspaceKey(workspace);
  bounded(reply, "id", "reply id");
  const row = await ctx.db
    .query("replyPlaces")
    .withIndex("by_reply", (q) => q.eq("reply", reply))
    .unique();
  return row?.workspace === workspace ? row : null;
}

function present(row: { reply: string; workspace: string; platform: string; place: string; updatedAt: number }) {
  return { reply: row.reply, workspace: row.workspace, platform: row.platform, place: row.place, updatedAt: row.updatedAt };
}

/** `answers`: the event key of the question whose answer this first post is; that ends its hold. */
export const put = serviceMutation({
  args: { reply: v.string(), workspace: v.string(), platform: v.string(), place: v.string(), answers: v.optional(v.string()) },
  handler: async (ctx, { reply, workspace, platform, place, answers }) => {
    bounded(platform, "id", "platform");
    bounded(place, "place", "place");
    if (workspace.split(":")[0] !== platform) fail("invalid", "the platform must be the workspace's");
    // Only a reply of this workspace gets a place here (so no caller can plant one for another's reply).
    if ((await messageIn(ctx, workspace, reply)) === null) fail("not_found", `no reply ${reply} in this workspace`);
    const row = await placeIn(ctx, workspace, reply);
    if (row) await ctx.db.patch(row._id, { place, updatedAt: now() });
    else await ctx.db.insert("replyPlaces", { reply, workspace, platform, place, updatedAt: now() });
    if (answers !== undefined) {
      const held = await holdOf(ctx, bounded(answers, "key", "event key"));
      if (held?.workspace === workspace) await ctx.db.delete(held._id);
    }
  },
});

export const get = serviceQuery({
  args: { workspace: v.string(), reply: v.string() },
  handler: async (ctx, { workspace, reply }) => {
    const row = await placeIn(ctx, workspace, reply);
    return row ? present(row) : null;
  },
});

export const forget = serviceMutation({
  args: { workspace: v.string(), reply: v.string() },
  handler: async (ctx, { workspace, reply }) => {
    const row = await placeIn(ctx, workspace, reply);
    if (row) await ctx.db.delete(row._id);
  },
});

/**
 * Places kept for `olderThanS` (their reply ended in the store but perhaps not on the platform), of these
 * platforms, oldest first: the one-process recovery sweep, the only call across workspaces. It returns
 * only which reply of which workspace, never a place: each is then read and finished within its own
 * workspace (places:get, threads), so the sweep exposes no platform ids of any workspace.
 */
export const stale = serviceQuery({
  args: { olderThanS: v.number(), platforms: v.array(v.string()), limit: v.number() },
  handler: async (ctx, { olderThanS, platforms, limit }) => {
    boundedInt(limit, "places_page", "limit");
    boundedCount(platforms, "platforms", "platforms");
    boundedNumber(olderThanS, "age_s", "olderThanS");
    if (platforms.length === 0) return [];
    const cutoff = now() - olderThanS;
    const rows = await ctx.db
      .query("replyPlaces")
      .withIndex("by_updatedAt", (q) => q.lt("updatedAt", cutoff))
      .filter((q) => q.or(...platforms.map((p) => q.eq(q.field("platform"), p))))
      .take(limit);
    return rows.map((row) => ({ reply: row.reply, workspace: row.workspace, updatedAt: row.updatedAt }));
  },
});
