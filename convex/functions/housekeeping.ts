// Housekeeping: event claims and request records only need to outlive the retries they guard
// (Slack retries for minutes, Discord replays on RESUME, the bot retries for seconds), so rows
// older than a day are removed in bounded batches, rescheduling until none are left.
import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalMutation } from "./_generated/server";

export const prune = internalMutation({
  args: { olderThanS: v.number(), batch: v.number() },
  handler: async (ctx, { olderThanS, batch }) => {
    const before = Date.now() - olderThanS * 1000;
    const claims = await ctx.db
      .query("eventClaims")
      .withIndex("by_at", (q) => q.lt("at", before))
      .take(batch);
    const requests = await ctx.db
      .query("requests")
      .withIndex("by_at", (q) => q.lt("at", before))
      .take(batch);
    for (const row of [...claims, ...requests]) await ctx.db.delete(row._id);
    if (claims.length === batch || requests.length === batch) {
      await ctx.scheduler.runAfter(0, internal.housekeeping.prune, { olderThanS, batch });
    }
    return { claims: claims.length, requests: requests.length };
  },
});
