// The audit log: every change of roles or settings, every refusal and every ingestion.
import { v } from "convex/values";
import { LIMITS, actorValidator, audit, bounded, boundedInt, requirePermission, serviceMutation, serviceQuery } from "./lib/security";

export const record = serviceMutation({
  args: { workspace: v.string(), actor: v.string(), action: v.string(), detail: v.string() },
  handler: async (ctx, { workspace, actor, action, detail }) => {
    bounded(workspace, LIMITS.id, "workspace");
    bounded(actor, LIMITS.id, "actor id");
    bounded(action, 100, "action");
    bounded(detail, LIMITS.detail, "detail", { allowEmpty: true });
    await audit(ctx, workspace, actor, action, detail);
    return null;
  },
});

export const entries = serviceQuery({
  args: { workspace: v.string(), actor: actorValidator, limit: v.number() },
  handler: async (ctx, { workspace, actor, limit }) => {
    boundedInt(limit, 1, 500, "limit");
    await requirePermission(ctx, workspace, actor, "view_audit");
    const rows = await ctx.db
      .query("auditLog")
      .withIndex("by_workspace_at", (q) => q.eq("workspace", workspace))
      .order("desc")
      .take(limit);
    return rows.map((r) => ({ at: r.at, actor: r.actor, action: r.action, detail: r.detail }));
  },
});
