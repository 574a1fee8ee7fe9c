// Token budgets (set by admins: manage_settings, audited, bounds from the rule book), the check before
// answering, and the ledger read for `/chatbot usage` (view_audit). The charge itself is lib/usage.ts,
// run by threads:completeMessage.
import { v } from "convex/values";
import { MONTH, exhaustedBudget } from "./lib/usage";
import { RULES } from "./lib/rules";
import { acting, actorValidator, audit, bounded, boundedInt, fail, inQuery, requirePermission, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";
import type { QueryCtx } from "./_generated/server";

const SCOPES: readonly string[] = [MONTH, ...RULES.roles];

async function budgetsOf(ctx: QueryCtx, workspace: string) {
  const rows = await ctx.db
    .query("tokenBudgets")
    .withIndex("by_workspace_scope", (q) => q.eq("workspace", workspace))
    .take(SCOPES.length);
  const day: Record<string, number> = {};
  let month: number | null = null;
  for (const row of rows) {
    if (row.scope === MONTH) month = row.tokens;
    else day[row.scope] = row.tokens;
  }
  return { month, day };
}

export const budgets = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => budgetsOf(ctx, workspaceKey(workspace)),
});

export const setBudget = serviceMutation({
  name: "usage:setBudget",
  args: { workspace: v.string(), actor: actorValidator, scope: v.string(), tokens: v.union(v.number(), v.null()) },
  handler: async (ctx, { workspace, actor, scope, tokens }) => {
    if (!SCOPES.includes(scope)) fail("invalid", `a budget's scope is "${MONTH}" or a role (${RULES.roles.join(", ")})`);
    if (tokens !== null) boundedInt(tokens, "token_budget", "token budget");
    return await acting(ctx, workspace, actor.userId, `budget ${scope}`, async () => {
      await requirePermission(ctx, workspace, actor, "manage_settings");
      const row = await ctx.db
        .query("tokenBudgets")
        .withIndex("by_workspace_scope", (q) => q.eq("workspace", workspace).eq("scope", scope))
        .unique();
      if (tokens === null) {
        if (row) await ctx.db.delete(row._id);
      } else if (row) await ctx.db.patch(row._id, { tokens });
      else await ctx.db.insert("tokenBudgets", { workspace, scope, tokens });
      await audit(ctx, workspace, actor.userId, "budget.set", `${scope}: ${tokens ? tokens : "none"}`);
      return await budgetsOf(ctx, workspace);
    });
  },
});

export const exhausted = serviceQuery({
  args: { workspace: v.string(), user: v.string(), role: v.string() },
  handler: async (ctx, { workspace, user, role }) => {
    workspaceKey(workspace);
    bounded(user, "id", "user id");
    bounded(role, "id", "role");
    return await exhaustedBudget(ctx, workspace, user, role, Date.now() / 1000);
  },
});

export const rows = serviceQuery({
  args: { workspace: v.string(), actor: actorValidator, sinceDay: v.string() },
  handler: async (ctx, { workspace, actor, sinceDay }) => {
    workspaceKey(workspace);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(sinceDay)) fail("invalid", "since_day is a date, YYYY-MM-DD");
    await inQuery(() => requirePermission(ctx, workspace, actor, "view_audit"));
    const found = await ctx.db
      .query("tokenUsage")
      .withIndex("by_workspace_day", (q) => q.eq("workspace", workspace).gte("day", sinceDay))
      .order("desc")
      .take(RULES.counts.usage_rows);
    return found.map((r) => ({
      day: r.day,
      user: r.user,
      channel: r.channel,
      model: r.model,
      inputTokens: r.inputTokens,
      outputTokens: r.outputTokens,
      cacheReadTokens: r.cacheReadTokens,
      cacheWriteTokens: r.cacheWriteTokens,
    }));
  },
});
