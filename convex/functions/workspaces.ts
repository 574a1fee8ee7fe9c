// Settings, members and roles, role mappings, channel rules and quotas of one workspace.
import { v } from "convex/values";
import { fail } from "./lib/security";
import type { MutationCtx } from "./_generated/server";
import {
  DEFAULT_SETTINGS,
  ROLES,
  ROLE_NAMES,
  acting,
  actorValidator,
  audit,
  bounded,
  boundedInt,
  checkRole,
  effectiveRole,
  memberOf,
  requirePermission,
  serviceMutation,
  serviceQuery,
  settingsOf,
  targetOf,
  workspaceKey,
  type Settings,
} from "./lib/security";
import { checkBlock, checkDefaultChange, checkMappingChange, checkRoleChange } from "./lib/roles";
import { RULES } from "./lib/rules";

const settingsPatch = v.object({
  systemPrompt: v.optional(v.string()),
  defaultRole: v.optional(v.number()),
  guestsMayAsk: v.optional(v.boolean()),
  answerWithoutMention: v.optional(v.boolean()),
  model: v.optional(v.string()),
  quotas: v.optional(v.record(v.string(), v.number())),
  threads: v.optional(v.string()),
});

function splitKey(workspace: string) {
  workspaceKey(workspace);
  const at = workspace.indexOf(":");
  return { platform: workspace.slice(0, at), externalId: workspace.slice(at + 1) };
}

async function saveSettings(ctx: MutationCtx, workspace: string, settings: Settings) {
  const row = await ctx.db
    .query("workspaces")
    .withIndex("by_key", (q) => q.eq("key", workspace))
    .unique();
  if (row) await ctx.db.patch(row._id, { settings });
  else await ctx.db.insert("workspaces", { key: workspace, ...splitKey(workspace), settings });
}

async function ownerCount(ctx: MutationCtx, workspace: string) {
  const members = await ctx.db
    .query("members")
    .withIndex("by_workspace_user", (q) => q.eq("workspace", workspace))
    .collect();
  return members.filter((m) => m.role === ROLES.owner && !m.blocked).length;
}

const roleLabel = (role: number | null) => (role === null ? "default" : ROLE_NAMES[role]);

export const settings = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => settingsOf(ctx, workspaceKey(workspace)),
});

export const updateSettings = serviceMutation({
  name: "workspaces:updateSettings",
  args: { workspace: v.string(), actor: actorValidator, changes: settingsPatch },
  handler: async (ctx, { workspace, actor, changes }) => {
    workspaceKey(workspace);
    if (changes.defaultRole !== undefined) checkRole(changes.defaultRole, "defaultRole");
    if (changes.systemPrompt !== undefined) bounded(changes.systemPrompt, RULES.settings.system_prompt, "system_prompt", { allowEmpty: true });
    if (changes.model !== undefined) bounded(changes.model, RULES.settings.model, "model", { allowEmpty: true });
    if (changes.threads !== undefined && !(RULES.setting_choices.threads as readonly string[]).includes(changes.threads)) {
      fail("invalid", `threads is one of: ${RULES.setting_choices.threads.join(", ")}`);
    }
    if (changes.quotas !== undefined) {
      for (const [role, limit] of Object.entries(changes.quotas)) {
        if (!(RULES.roles as readonly string[]).includes(role)) fail("invalid", `quotas name an unknown role: ${role}`);
        boundedInt(limit, "quota", `quota for ${role}`);
      }
    }
    const keys = Object.keys(changes).sort().join(", ");
    return await acting(ctx, workspace, actor.userId, `settings ${keys}`, async () => {
      const actorRole = await requirePermission(ctx, workspace, actor, "manage_settings");
      const current = await settingsOf(ctx, workspace);
      if (changes.defaultRole !== undefined) checkDefaultChange(actorRole, current.defaultRole, changes.defaultRole);
      const next: Settings = { ...DEFAULT_SETTINGS, ...current };
      for (const [key, value] of Object.entries(changes)) {
        if (value !== undefined) (next as Record<string, unknown>)[key] = value;
      }
      await saveSettings(ctx, workspace, next);
      await audit(ctx, workspace, actor.userId, "settings.update", keys);
      return next;
    });
  },
});

export const membership = serviceQuery({
  args: { workspace: v.string(), user: v.string() },
  handler: async (ctx, { workspace, user }) => {
    const row = await memberOf(ctx, workspaceKey(workspace), bounded(user, "id", "user"));
    return row ? { user: row.user, role: row.role, blocked: row.blocked } : null;
  },
});

export const members = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const rows = await ctx.db
      .query("members")
      .withIndex("by_workspace_user", (q) => q.eq("workspace", workspace))
      .take(1000);
    return rows.map((m) => ({ user: m.user, role: m.role, blocked: m.blocked }));
  },
});

export const roleMappings = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const rows = await ctx.db
      .query("roleMappings")
      .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace))
      .take(500);
    return Object.fromEntries(rows.map((r) => [r.platformRole, r.role]));
  },
});

export const setRole = serviceMutation({
  name: "workspaces:setRole",
  args: {
    workspace: v.string(),
    actor: actorValidator,
    user: v.string(),
    role: v.union(v.number(), v.null()),
  },
  handler: async (ctx, { workspace, actor, user, role }) => {
    if (role !== null) checkRole(role);
    return await acting(ctx, workspace, actor.userId, `role set ${bounded(user, "id", "user")} ${roleLabel(role)}`, async () => {
      const target = await targetOf(ctx, workspace, user);
      const actorRole = await effectiveRole(ctx, workspace, actor);
      checkRoleChange({ actorId: actor.userId, actorRole, target, newRole: role, ownerRows: await ownerCount(ctx, workspace) });
      if (target.row) await ctx.db.patch(target.row._id, { role });
      else await ctx.db.insert("members", { workspace, user, role, blocked: false });
      await audit(ctx, workspace, actor.userId, "role.set", `${user}: ${roleLabel(role)}`);
      return null;
    });
  },
});

export const setBlocked = serviceMutation({
  name: "workspaces:setBlocked",
  args: { workspace: v.string(), actor: actorValidator, user: v.string(), blocked: v.boolean() },
  handler: async (ctx, { workspace, actor, user, blocked }) => {
    const what = `role ${blocked ? "block" : "unblock"} ${bounded(user, "id", "user")}`;
    return await acting(ctx, workspace, actor.userId, what, async () => {
      const target = await targetOf(ctx, workspace, user);
      const actorRole = await effectiveRole(ctx, workspace, actor);
      checkBlock({ actorId: actor.userId, actorRole, target, blocked, ownerRows: await ownerCount(ctx, workspace) });
      if (target.row) await ctx.db.patch(target.row._id, { blocked });
      else await ctx.db.insert("members", { workspace, user, role: null, blocked });
      await audit(ctx, workspace, actor.userId, blocked ? "role.block" : "role.unblock", user);
      return null;
    });
  },
});

export const setRoleMapping = serviceMutation({
  name: "workspaces:setRoleMapping",
  args: { workspace: v.string(), actor: actorValidator, platformRole: v.string(), role: v.union(v.number(), v.null()) },
  handler: async (ctx, { workspace, actor, platformRole, role }) => {
    bounded(platformRole, "id", "platform role");
    if (role !== null) checkRole(role);
    const label = role === null ? "none" : ROLE_NAMES[role];
    return await acting(ctx, workspace, actor.userId, `rolemap ${platformRole} ${label}`, async () => {
      const existing = await ctx.db
        .query("roleMappings")
        .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace).eq("platformRole", platformRole))
        .unique();
      checkMappingChange(await effectiveRole(ctx, workspace, actor), existing?.role ?? null, role);
      if (role === null) {
        if (existing) await ctx.db.delete(existing._id);
      } else if (existing) await ctx.db.patch(existing._id, { role });
      else await ctx.db.insert("roleMappings", { workspace, platformRole, role });
      await audit(ctx, workspace, actor.userId, "rolemap.set", `${platformRole}: ${label}`);
      return null;
    });
  },
});

const mode = v.union(v.literal("allow"), v.literal("deny"), v.literal("default"));

export const channelRule = serviceQuery({
  args: { workspace: v.string(), channel: v.string() },
  handler: async (ctx, { workspace, channel }) => {
    workspaceKey(workspace);
    bounded(channel, "id", "channel");
    const row = await ctx.db
      .query("channelRules")
      .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace).eq("channel", channel))
      .unique();
    return row ? { channel: row.channel, mode: row.mode, withoutMention: row.withoutMention } : null;
  },
});

export const channelRules = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const rows = await ctx.db
      .query("channelRules")
      .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace))
      .take(1000);
    return rows.map((r) => ({ channel: r.channel, mode: r.mode, withoutMention: r.withoutMention }));
  },
});

export const setChannelRule = serviceMutation({
  name: "workspaces:setChannelRule",
  args: { workspace: v.string(), actor: actorValidator, channel: v.string(), mode, withoutMention: v.boolean() },
  handler: async (ctx, { workspace, actor, channel, mode, withoutMention }) => {
    bounded(channel, "id", "channel");
    return await acting(ctx, workspace, actor.userId, `channel ${mode} ${channel}`, async () => {
      await requirePermission(ctx, workspace, actor, "manage_settings");
      const existing = await ctx.db
        .query("channelRules")
        .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace).eq("channel", channel))
        .unique();
      if (mode === "default" && !withoutMention) {
        if (existing) await ctx.db.delete(existing._id);
      } else if (existing) await ctx.db.patch(existing._id, { mode, withoutMention });
      else await ctx.db.insert("channelRules", { workspace, channel, mode, withoutMention });
      await audit(ctx, workspace, actor.userId, "channel.set", `${channel}: ${mode}`);
      return null;
    });
  },
});

export const consumeQuota = serviceMutation({
  name: "workspaces:consumeQuota",
  args: { workspace: v.string(), user: v.string(), window: v.string(), limit: v.number() },
  handler: async (ctx, { workspace, user, window, limit }) => {
    workspaceKey(workspace);
    bounded(user, "id", "user");
    bounded(window, "window", "window");
    boundedInt(limit, "quota", "limit");
    const row = await ctx.db
      .query("usage")
      .withIndex("by_workspace_user_window", (q) => q.eq("workspace", workspace).eq("user", user).eq("window", window))
      .unique();
    const used = row?.count ?? 0;
    if (used >= limit) return false;
    if (row) await ctx.db.patch(row._id, { count: used + 1 });
    else await ctx.db.insert("usage", { workspace, user, window, count: 1 });
    return true;
  },
});
