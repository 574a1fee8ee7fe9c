// Feedback: 👍/👎 on a reply with what it answered; one rating per person per reply (the latest wins).
// Reading needs manage_knowledge (curators and above), checked here where the data lives.
import { v } from "convex/values";
import { acting, actorValidator, bounded, boundedSourceUris, fail, requirePermission, serviceMutation, workspaceKey } from "./lib/security";
import { RULES } from "./lib/rules";
import { feedbackFields } from "./schema";

export const add = serviceMutation({
  name: "feedback:add",
  args: feedbackFields,
  handler: async (ctx, args) => {
    workspaceKey(args.workspace);
    bounded(args.replyKey, "key", "reply key");
    bounded(args.user, "id", "user id");
    bounded(args.reason, "detail", "reason", { allowEmpty: true });
    bounded(args.question, "text", "question", { allowEmpty: true });
    bounded(args.answer, "text", "answer", { allowEmpty: true });
    bounded(args.model, "model", "model", { allowEmpty: true });
    boundedSourceUris(args.sources);
    const existing = await ctx.db
      .query("feedback")
      .withIndex("by_workspace_reply_user", (q) =>
        q.eq("workspace", args.workspace).eq("replyKey", args.replyKey).eq("user", args.user),
      )
      .unique();
    const at = Date.now() / 1000;
    if (existing) await ctx.db.patch(existing._id, { rating: args.rating, reason: args.reason, at });
    else await ctx.db.insert("feedback", { ...args, at });
    return null;
  },
});

// A mutation (not a query) so that a refusal is audited in the same transaction, like every acting call.
export const recent = serviceMutation({
  name: "feedback:recent",
  args: {
    workspace: v.string(),
    actor: actorValidator,
    rating: v.union(v.literal("up"), v.literal("down")),
    limit: v.number(),
    before: v.optional(v.number()),
  },
  handler: async (ctx, { workspace, actor, rating, limit, before }) => {
    if (!Number.isInteger(limit) || limit < 1 || limit > RULES.counts.messages_page) {
      fail("invalid", `limit must be from 1 to ${RULES.counts.messages_page}`);
    }
    return await acting(ctx, workspace, actor.userId, "feedback list", async () => {
      await requirePermission(ctx, workspace, actor, "manage_knowledge");
      const rows = await ctx.db
        .query("feedback")
        .withIndex("by_workspace_rating_at", (q) =>
          before === undefined
            ? q.eq("workspace", workspace).eq("rating", rating)
            : q.eq("workspace", workspace).eq("rating", rating).lt("at", before),
        )
        .order("desc")
        .take(limit);
      return rows.map((r) => ({
        replyKey: r.replyKey,
        user: r.user,
        rating: r.rating,
        question: r.question,
        answer: r.answer,
        sources: r.sources,
        model: r.model,
        reason: r.reason,
        at: r.at,
      }));
    });
  },
});
