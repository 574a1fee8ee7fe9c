// What a click on a reply's buttons needs (core/stores/controls.py): who asked, the question, the
// answer with its sources and model, and how the reply ended, under the reply's ref. Scoped to the
// workspace: a ref is found only in the workspace it was kept in. Kept for the rule book's
// retention.reply_controls_s after the reply ended: each put prunes a few older records.
import { v } from "convex/values";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { RULES } from "./lib/rules";
import { bounded, boundedSourceUris, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";
import { replyControlFields } from "./schema";

function controlOf(ctx: QueryCtx | MutationCtx, workspace: string, ref: string) {
  return ctx.db
    .query("replyControls")
    .withIndex("by_workspace_ref", (q) => q.eq("workspace", workspace).eq("ref", ref))
    .unique();
}

// Idempotent by its arguments: a retried put writes the same record again.
export const put = serviceMutation({
  args: replyControlFields,
  handler: async (ctx, args) => {
    workspaceKey(args.workspace);
    bounded(args.ref, "key", "reply ref");
    bounded(args.asker, "id", "asker");
    bounded(args.question, "text", "question", { allowEmpty: true });
    bounded(args.context, "place", "context");
    bounded(args.answer, "text", "answer", { allowEmpty: true });
    bounded(args.model, "model", "model", { allowEmpty: true });
    boundedSourceUris(args.sources);
    const updatedAt = Date.now() / 1000;
    const old = await ctx.db
      .query("replyControls")
      .withIndex("by_updatedAt", (q) => q.lt("updatedAt", updatedAt - RULES.retention.reply_controls_s))
      .take(RULES.retention.prune_batch);
    for (const record of old) await ctx.db.delete(record._id);
    const row = await controlOf(ctx, args.workspace, args.ref);
    if (row) await ctx.db.replace(row._id, { ...args, updatedAt });
    else await ctx.db.insert("replyControls", { ...args, updatedAt });
    return null;
  },
});

export const get = serviceQuery({
  args: { workspace: v.string(), ref: v.string() },
  handler: async (ctx, { workspace, ref }) => {
    workspaceKey(workspace);
    bounded(ref, "key", "reply ref");
    const row = await controlOf(ctx, workspace, ref);
    if (!row) return null;
    const { _id, _creationTime, ...record } = row;
    return record;
  },
});
