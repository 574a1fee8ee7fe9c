// Event claims: the first claimant of a key wins, across every bot process.
import { v } from "convex/values";
import { bounded, serviceMutation } from "./lib/security";

/** True for the first claimant only. A retried call with the same claimant gets its own win back. */
export const claim = serviceMutation({
  name: "claims:claim",
  args: { key: v.string(), claimant: v.string() },
  handler: async (ctx, { key, claimant }) => {
    bounded(key, "key", "event key");
    bounded(claimant, "id", "claimant");
    const existing = await ctx.db
      .query("eventClaims")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (existing) return existing.claimant === claimant;
    await ctx.db.insert("eventClaims", { key, claimant, at: Date.now() });
    return true;
  },
});
