// A Stop clicked on one process for a reply another process streams (core/stores/stops.py).
// The streaming process notes which reply answers a ref and who asked; a Stop from any process is
// judged here, in one transaction: the reply still streams in this workspace, and the clicker is the
// asker or holds `control_others_replies` (the rule book's, the one the same-process Stop applies).
// The streaming process learns of it from its next heartbeat (leases:heartbeat answers `stop`).
import { v } from "convex/values";
import type { Id } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { allows } from "./lib/roles";
import { RULES } from "./lib/rules";
import { actorValidator, bounded, effectiveRole, fail, serviceMutation, workspaceKey } from "./lib/security";
import { messageIn } from "./threads";

function stopOf(ctx: MutationCtx, workspace: string, ref: string) {
  return ctx.db
    .query("replyStops")
    .withIndex("by_workspace_ref", (q) => q.eq("workspace", workspace).eq("ref", ref))
    .unique();
}

/** Whether a Stop was asked for this reply of this workspace (for leases:heartbeat). */
export async function stopRequested(ctx: MutationCtx, workspace: string, reply: Id<"messages">): Promise<boolean> {
  const row = await ctx.db
    .query("replyStops")
    .withIndex("by_reply", (q) => q.eq("reply", reply))
    .first();
  return row !== null && row.workspace === workspace && row.stopBy !== "";
}

/** Reply `reply` (streaming, of this workspace) answers the question whose buttons carry `ref`. */
export const streaming = serviceMutation({
  args: { workspace: v.string(), ref: v.string(), reply: v.string(), asker: v.string() },
  handler: async (ctx, { workspace, ref, reply, asker }) => {
    bounded(ref, "key", "reply ref");
    bounded(asker, "id", "asker");
    const message = await messageIn(ctx, workspace, reply);
    if (message === null) fail("not_found", `no reply ${reply} in this workspace`);
    const at = Date.now() / 1000;
    const old = await ctx.db
      .query("replyStops")
      .withIndex("by_at", (q) => q.lt("at", at - RULES.retention.reply_stops_s))
      .take(RULES.retention.prune_batch); // more than a write adds: the table stays small
    for (const row of old) await ctx.db.delete(row._id);
    const row = await stopOf(ctx, workspace, ref);
    const record = { workspace, ref, reply: message._id, asker, stopBy: "", at };
    if (row) await ctx.db.replace(row._id, record);
    else await ctx.db.insert("replyStops", record);
    return null;
  },
});

/** Ask for reply `ref` of this workspace to be stopped: stopping | duplicate | not_allowed | ended. */
export const request = serviceMutation({
  name: "stops:request",
  args: { workspace: v.string(), actor: actorValidator, ref: v.string() },
  handler: async (ctx, { workspace, actor, ref }) => {
    workspaceKey(workspace);
    bounded(ref, "key", "reply ref");
    bounded(actor.userId, "id", "actor id");
    const row = await stopOf(ctx, workspace, ref);
    const message = row === null ? null : await messageIn(ctx, workspace, row.reply);
    if (row === null || message?.status !== "streaming") return "ended";
    if (actor.userId !== row.asker && !allows(await effectiveRole(ctx, workspace, actor), "control_others_replies")) {
      return "not_allowed";
    }
    if (row.stopBy !== "") return "duplicate";
    await ctx.db.patch(row._id, { stopBy: actor.userId });
    return "stopping";
  },
});
