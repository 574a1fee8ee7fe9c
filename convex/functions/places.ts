// Where each reply is on its platform (the adapter's JSON), stored at its first post, so any process
// can finish a reply whose owner died (core/stores/places.py; core/recovery.py finishes it).
import { v } from "convex/values";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { bounded, boundedInt, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";

const now = () => Date.now() / 1000;

function placeOf(ctx: QueryCtx | MutationCtx, reply: string) {
  return ctx.db
    .query("replyPlaces")
    .withIndex("by_reply", (q) => q.eq("reply", reply))
    .unique();
}

function present(row: { reply: string; workspace: string; platform: string; place: string; updatedAt: number }) {
  return { reply: row.reply, workspace: row.workspace, platform: row.platform, place: row.place, updatedAt: row.updatedAt };
}

export const put = serviceMutation({
  args: { reply: v.string(), workspace: v.string(), platform: v.string(), place: v.string() },
  handler: async (ctx, { reply, workspace, platform, place }) => {
    bounded(reply, "id", "reply id");
    workspaceKey(workspace);
    bounded(platform, "id", "platform");
    bounded(place, "place", "place");
    const row = await placeOf(ctx, reply);
    if (row) await ctx.db.patch(row._id, { place, updatedAt: now() });
    else await ctx.db.insert("replyPlaces", { reply, workspace, platform, place, updatedAt: now() });
  },
});

export const get = serviceQuery({
  args: { reply: v.string() },
  handler: async (ctx, { reply }) => {
    bounded(reply, "id", "reply id");
    const row = await placeOf(ctx, reply);
    return row ? present(row) : null;
  },
});

export const forget = serviceMutation({
  args: { reply: v.string() },
  handler: async (ctx, { reply }) => {
    bounded(reply, "id", "reply id");
    const row = await placeOf(ctx, reply);
    if (row) await ctx.db.delete(row._id);
  },
});

/** Places still kept, oldest first: replies that have not ended on their platform. */
export const list = serviceQuery({
  args: { limit: v.number() },
  handler: async (ctx, { limit }) => {
    boundedInt(limit, "places_page", "limit");
    const rows = await ctx.db.query("replyPlaces").withIndex("by_updatedAt").take(limit);
    return rows.map(present);
  },
});
