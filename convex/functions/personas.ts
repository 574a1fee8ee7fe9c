// Channel personas: a system prompt and a model per channel, set by admins (manage_settings), audited,
// bounded exactly as the workspace's own systemPrompt and model settings (RULES.settings).
import { v } from "convex/values";
import { RULES } from "./lib/rules";
import { acting, actorValidator, audit, bounded, requirePermission, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";

const shape = (row: { channel: string; systemPrompt: string; model: string }) => ({
  channel: row.channel,
  systemPrompt: row.systemPrompt,
  model: row.model,
});

export const get = serviceQuery({
  args: { workspace: v.string(), channel: v.string() },
  handler: async (ctx, { workspace, channel }) => {
    workspaceKey(workspace);
    bounded(channel, "id", "channel");
    const row = await ctx.db
      .query("channelPersonas")
      .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace).eq("channel", channel))
      .unique();
    return row ? shape(row) : null;
  },
});

export const list = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const rows = await ctx.db
      .query("channelPersonas")
      .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace))
      .take(1000);
    return rows.map(shape);
  },
});

export const set = serviceMutation({
  name: "personas:set",
  args: {
    workspace: v.string(),
    actor: actorValidator,
    channel: v.string(),
    systemPrompt: v.optional(v.string()),
    model: v.optional(v.string()),
  },
  handler: async (ctx, { workspace, actor, channel, systemPrompt, model }) => {
    bounded(channel, "id", "channel");
    // The workspace settings' own bounds: one rule for a prompt and a model wherever they are set.
    if (systemPrompt !== undefined) bounded(systemPrompt, RULES.settings.system_prompt, "system_prompt", { allowEmpty: true });
    if (model !== undefined) bounded(model, RULES.settings.model, "model", { allowEmpty: true });
    return await acting(ctx, workspace, actor.userId, `channel persona ${channel}`, async () => {
      await requirePermission(ctx, workspace, actor, "manage_settings");
      const existing = await ctx.db
        .query("channelPersonas")
        .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace).eq("channel", channel))
        .unique();
      const next = {
        systemPrompt: systemPrompt ?? existing?.systemPrompt ?? "",
        model: model ?? existing?.model ?? "",
      };
      if (!next.systemPrompt && !next.model) {
        if (existing) await ctx.db.delete(existing._id);
      } else if (existing) await ctx.db.patch(existing._id, next);
      else await ctx.db.insert("channelPersonas", { workspace, channel, ...next });
      const fields = [systemPrompt !== undefined ? "system_prompt" : "", model !== undefined ? "model" : ""]
        .filter(Boolean)
        .join(", ");
      await audit(ctx, workspace, actor.userId, "channel.persona", `${channel}: ${fields || "nothing"}`);
      return { channel, ...next };
    });
  },
});
