// The token ledger and budgets: the TypeScript twin of core/stores/usage.py and sqlite_ledger.py.
// `charge` runs inside threads:completeMessage, so the reply's usage, the ledger, the period totals,
// the once-only notices and their audit rows commit together; `exhaustedBudget` is the check before
// answering, on the same totals with the same rule.
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { RULES } from "./rules";
import { audit } from "./security";

export const MONTH = "month";
const WARN_AT: number = RULES.budgets.warn_at;

export type Usage = { inputTokens: number; outputTokens: number; cacheReadTokens?: number; cacheWriteTokens?: number };
export type Charge = { user: string; role: string; model: string };
export type BudgetState = { scope: "month" | "day"; used: number; limit: number; resetsAt: number; level: number; user: string };

export const tokensOf = (u: Usage) => u.inputTokens + u.outputTokens + (u.cacheReadTokens ?? 0) + (u.cacheWriteTokens ?? 0);

const pad = (n: number) => String(n).padStart(2, "0");

/** [month "YYYY-MM", day "YYYY-MM-DD"] of `nowS`, UTC. */
export function periods(nowS: number): [string, string] {
  const d = new Date(nowS * 1000);
  const month = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
  return [month, `${month}-${pad(d.getUTCDate())}`];
}

/** The start of the next UTC month or day. */
export function resetsAt(scope: "month" | "day", nowS: number): number {
  const d = new Date(nowS * 1000);
  const next =
    scope === "day"
      ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
      : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return next / 1000;
}

export const exhausted = (used: number, limit: number | null) => limit !== null && used >= limit;

/** The thresholds `used` has reached that were not announced yet in the period (`noticed`: the highest announced). */
export const crossed = (used: number, limit: number | null, noticed: number) =>
  limit === null ? [] : [WARN_AT, 1].filter((level) => level > noticed && used >= level * limit);

type Ctx = QueryCtx | MutationCtx;

export async function budgetOf(ctx: Ctx, workspace: string, scope: string): Promise<number | null> {
  const row = await ctx.db
    .query("tokenBudgets")
    .withIndex("by_workspace_scope", (q) => q.eq("workspace", workspace).eq("scope", scope))
    .unique();
  return row ? row.tokens : null;
}

async function totalOf(ctx: Ctx, workspace: string, period: string) {
  return await ctx.db
    .query("tokenTotals")
    .withIndex("by_workspace_period", (q) => q.eq("workspace", workspace).eq("period", period))
    .unique();
}

/** The two budgets a question counts against: the workspace's month, the asker's day (by role). */
async function budgetsFor(ctx: Ctx, workspace: string, user: string, role: string, nowS: number) {
  const [month, day] = periods(nowS);
  return [
    { scope: "month" as const, period: `month:${month}`, limit: await budgetOf(ctx, workspace, MONTH) },
    { scope: "day" as const, period: `day:${day}:${user}`, limit: await budgetOf(ctx, workspace, role) },
  ];
}

export async function exhaustedBudget(ctx: Ctx, workspace: string, user: string, role: string, nowS: number): Promise<BudgetState | null> {
  for (const { scope, period, limit } of await budgetsFor(ctx, workspace, user, role, nowS)) {
    const used = (await totalOf(ctx, workspace, period))?.tokens ?? 0;
    if (limit !== null && exhausted(used, limit))
      return { scope, used, limit, resetsAt: resetsAt(scope, nowS), level: 1, user: scope === "day" ? user : "" };
  }
  return null;
}

/** Add a reply's tokens to the ledger and the totals; announce (audit and return) the thresholds they crossed. */
export async function charge(ctx: MutationCtx, workspace: string, channel: string, who: Charge, usage: Usage): Promise<BudgetState[]> {
  const nowS = Date.now() / 1000;
  const [, day] = periods(nowS);
  const add = {
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    cacheReadTokens: usage.cacheReadTokens ?? 0,
    cacheWriteTokens: usage.cacheWriteTokens ?? 0,
  };
  const row = await ctx.db
    .query("tokenUsage")
    .withIndex("by_workspace_day", (q) =>
      q.eq("workspace", workspace).eq("day", day).eq("user", who.user).eq("channel", channel).eq("model", who.model),
    )
    .unique();
  if (row === null) await ctx.db.insert("tokenUsage", { workspace, day, user: who.user, channel, model: who.model, ...add });
  else
    await ctx.db.patch(row._id, {
      inputTokens: row.inputTokens + add.inputTokens,
      outputTokens: row.outputTokens + add.outputTokens,
      cacheReadTokens: row.cacheReadTokens + add.cacheReadTokens,
      cacheWriteTokens: row.cacheWriteTokens + add.cacheWriteTokens,
    });
  const spent = tokensOf(add);
  const notices: BudgetState[] = [];
  for (const { scope, period, limit } of await budgetsFor(ctx, workspace, who.user, who.role, nowS)) {
    const total = await totalOf(ctx, workspace, period);
    const used = (total?.tokens ?? 0) + spent;
    const noticed = total?.noticed ?? 0;
    const levels = crossed(used, limit, noticed);
    const next = { tokens: used, noticed: Math.max(noticed, ...levels) };
    if (total === null) await ctx.db.insert("tokenTotals", { workspace, period, ...next });
    else await ctx.db.patch(total._id, next);
    for (const level of levels) {
      const whose = scope === "day" ? ` for <@${who.user}> (${who.role})` : "";
      const action = level >= 1 ? "budget.exhausted" : "budget.warning";
      await audit(ctx, workspace, who.user, action, `${scope}${whose}: ${used.toLocaleString("en-US")} of ${limit!.toLocaleString("en-US")} tokens`);
      notices.push({ scope, used, limit: limit!, resetsAt: resetsAt(scope, nowS), level, user: scope === "day" ? who.user : "" });
    }
  }
  return notices;
}
