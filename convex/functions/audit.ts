// The audit log: every change of roles or settings, every refusal and every ingestion. Rows are
// written by the functions that act, in their own transaction (lib/security.ts `acting`); the only
// row a caller records directly is a refusal decided before any write (a question the bot refused).
import { v } from "convex/values";
import { RULES } from "./lib/rules";
import { actorValidator, audit, bounded, fail, inQuery, requirePermission, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";

/** A refusal the bot decided (a question it would not answer): only ever written as the refused action. */
export const refusal = serviceMutation({
  name: "audit:refusal",
  args: { workspace: v.string(), actor: v.string(), detail: v.string() },
  handler: async (ctx, { workspace, actor, detail }) => {
    workspaceKey(workspace);
    bounded(actor, "id", "actor id");
    bounded(detail, "detail", "detail", { allowEmpty: true });
    await audit(ctx, workspace, actor, RULES.audit.direct_action, detail);
    return null;
  },
});

export const entries = serviceQuery({
  args: { workspace: v.string(), actor: actorValidator, limit: v.number() },
  handler: async (ctx, { workspace, actor, limit }) => {
    workspaceKey(workspace);
    if (!Number.isInteger(limit) || limit < 1 || limit > RULES.counts.audit_page) fail("invalid", `limit must be between 1 and ${RULES.counts.audit_page}`);
    await inQuery(() => requirePermission(ctx, workspace, actor, "view_audit"));
    const rows = await ctx.db
      .query("auditLog")
      .withIndex("by_workspace_at", (q) => q.eq("workspace", workspace))
      .order("desc")
      .take(limit);
    return rows.map((r) => ({ at: r.at, actor: r.actor, action: r.action, detail: r.detail }));
  },
});
