// Settings, members and roles, role mappings, channel rules and quotas of one workspace.
import { v } from "convex/values";
import type { MutationCtx } from "./_generated/server";
import {
  DEFAULT_SETTINGS,
  LIMITS,
  ROLES,
  ROLE_NAMES,
  actorValidator,
  audit,
  bounded,
  boundedInt,
  checkRole,
  effectiveRole,
  fail,
  memberOf,
  requirePermission,
  serviceMutation,
  serviceQuery,
  settingsOf,
  type Settings,
} from "./lib/security";

const settingsPatch = v.object({
  systemPrompt: v.optional(v.string()),
  defaultRole: v.optional(v.number()),
  guestsMayAsk: v.optional(v.boolean()),
  answerWithoutMention: v.optional(v.boolean()),
  model: v.optional(v.string()),
  quotas: v.optional(v.record(v.string(), v.number())),
  autoThread: v.optional(v.boolean()),
});

function splitKey(workspace: string) {
  bounded(workspace, LIMITS.id, "workspace");
  const at = workspace.indexOf(":");
  if (at <= 0) fail("invalid", "workspace must look like platform:id");
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

export const settings = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => settingsOf(ctx, bounded(workspace, LIMITS.id, "workspace")),
});

export const updateSettings = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, changes: settingsPatch },
  handler: async (ctx, { workspace, actor, changes }) => {
    const actorRole = await requirePermission(ctx, workspace, actor, "manage_settings");
    if (changes.defaultRole !== undefined) {
      checkRole(changes.defaultRole, "defaultRole");
      // A default of owner would make every passer-by an owner (and void the last-owner rule).
      if (changes.defaultRole === ROLES.owner) fail("invalid", "the default role cannot be owner");
      // The default role is a grant to everyone, the actor included: the same bound as setRole.
      if (changes.defaultRole >= actorRole && actorRole !== ROLES.owner) {
        fail("escalation", `an ${ROLE_NAMES[actorRole]} can only set a default role below ${ROLE_NAMES[actorRole]}`);
      }
    }
    if (changes.systemPrompt !== undefined) bounded(changes.systemPrompt, LIMITS.prompt, "systemPrompt", { allowEmpty: true });
    if (changes.model !== undefined) bounded(changes.model, LIMITS.id, "model", { allowEmpty: true });
    if (changes.quotas !== undefined) {
      for (const [role, limit] of Object.entries(changes.quotas)) {
        if (!ROLE_NAMES.includes(role) || role === "") fail("invalid", `quotas name an unknown role: ${role}`);
        boundedInt(limit, 0, 1_000_000, `quota for ${role}`);
      }
    }
    const current = await settingsOf(ctx, workspace);
    const next: Settings = { ...DEFAULT_SETTINGS, ...current };
    for (const [key, value] of Object.entries(changes)) {
      if (value !== undefined) (next as Record<string, unknown>)[key] = value;
    }
    await saveSettings(ctx, workspace, next);
    await audit(ctx, workspace, actor.userId, "settings.update", Object.keys(changes).sort().join(", "));
    return next;
  },
});

export const membership = serviceQuery({
  args: { workspace: v.string(), user: v.string() },
  handler: async (ctx, { workspace, user }) => {
    const row = await memberOf(ctx, workspace, bounded(user, LIMITS.id, "user"));
    return row ? { user: row.user, role: row.role, blocked: row.blocked } : null;
  },
});

export const members = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
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
    const rows = await ctx.db
      .query("roleMappings")
      .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace))
      .take(500);
    return Object.fromEntries(rows.map((r) => [r.platformRole, r.role]));
  },
});

export const setRole = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, user: v.string(), role: v.union(v.number(), v.null()) },
  handler: async (ctx, { workspace, actor, user, role }) => {
    bounded(user, LIMITS.id, "user");
    if (role !== null) checkRole(role);
    const actorRole = await effectiveRole(ctx, workspace, actor);
    if (actorRole === null) fail("blocked", "you are blocked in this workspace");
    if (actorRole < ROLES.admin) fail("forbidden", "you need the admin role to change roles");
    if (actor.userId === user) fail("self_change", "nobody can change their own role");
    const isOwner = actorRole === ROLES.owner;
    const target = await memberOf(ctx, workspace, user);
    const current = target?.role ?? (await settingsOf(ctx, workspace)).defaultRole;
    if (role !== null && role >= actorRole && !isOwner) {
      fail("escalation", `an ${ROLE_NAMES[actorRole]} can only grant roles below ${ROLE_NAMES[actorRole]}`);
    }
    if (current >= actorRole && !isOwner) {
      fail("peer_or_higher", `an ${ROLE_NAMES[actorRole]} cannot change the role of a ${ROLE_NAMES[current]}`);
    }
    if (current === ROLES.owner && role !== ROLES.owner && (await ownerCount(ctx, workspace)) <= 1) {
      fail("last_owner", "the last owner cannot be removed");
    }
    if (target) await ctx.db.patch(target._id, { role });
    else await ctx.db.insert("members", { workspace, user, role, blocked: false });
    await audit(ctx, workspace, actor.userId, "role.set", `${user}: ${role === null ? "default" : ROLE_NAMES[role]}`);
  },
});

export const setBlocked = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, user: v.string(), blocked: v.boolean() },
  handler: async (ctx, { workspace, actor, user, blocked }) => {
    bounded(user, LIMITS.id, "user");
    const actorRole = await requirePermission(ctx, workspace, actor, "manage_roles");
    if (actor.userId === user) fail("self_change", "nobody can block or unblock themselves");
    const target = await memberOf(ctx, workspace, user);
    const current = target?.role ?? (await settingsOf(ctx, workspace)).defaultRole;
    if (current >= actorRole && actorRole !== ROLES.owner) {
      fail("peer_or_higher", `an ${ROLE_NAMES[actorRole]} cannot block a ${ROLE_NAMES[current]}`);
    }
    if (blocked && current === ROLES.owner && (await ownerCount(ctx, workspace)) <= 1) {
      fail("last_owner", "the last owner cannot be blocked");
    }
    if (target) await ctx.db.patch(target._id, { blocked });
    else await ctx.db.insert("members", { workspace, user, role: null, blocked });
    await audit(ctx, workspace, actor.userId, blocked ? "role.block" : "role.unblock", user);
  },
});

export const setRoleMapping = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, platformRole: v.string(), role: v.union(v.number(), v.null()) },
  handler: async (ctx, { workspace, actor, platformRole, role }) => {
    bounded(platformRole, LIMITS.id, "platform role");
    if (role !== null) checkRole(role);
    const actorRole = await requirePermission(ctx, workspace, actor, "manage_roles");
    if (role !== null && role >= actorRole && actorRole !== ROLES.owner) {
      fail("escalation", `an ${ROLE_NAMES[actorRole]} can only map roles below ${ROLE_NAMES[actorRole]}`);
    }
    const existing = await ctx.db
      .query("roleMappings")
      .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace).eq("platformRole", platformRole))
      .unique();
    if (existing && existing.role >= actorRole && actorRole !== ROLES.owner) {
      fail("peer_or_higher", `an ${ROLE_NAMES[actorRole]} cannot change a ${ROLE_NAMES[existing.role]} mapping`);
    }
    if (role === null) {
      if (existing) await ctx.db.delete(existing._id);
    } else if (existing) await ctx.db.patch(existing._id, { role });
    else await ctx.db.insert("roleMappings", { workspace, platformRole, role });
    await audit(ctx, workspace, actor.userId, "rolemap.set", `${platformRole}: ${role === null ? "none" : ROLE_NAMES[role]}`);
  },
});

const mode = v.union(v.literal("allow"), v.literal("deny"), v.literal("default"));

export const channelRule = serviceQuery({
  args: { workspace: v.string(), channel: v.string() },
  handler: async (ctx, { workspace, channel }) => {
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
    const rows = await ctx.db
      .query("channelRules")
      .withIndex("by_workspace_channel", (q) => q.eq("workspace", workspace))
      .take(1000);
    return rows.map((r) => ({ channel: r.channel, mode: r.mode, withoutMention: r.withoutMention }));
  },
});

export const setChannelRule = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, channel: v.string(), mode, withoutMention: v.boolean() },
  handler: async (ctx, { workspace, actor, channel, mode, withoutMention }) => {
    bounded(channel, LIMITS.id, "channel");
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
  },
});

export const consumeQuota = serviceMutation({
  args: { workspace: v.string(), user: v.string(), window: v.string(), limit: v.number() },
  handler: async (ctx, { workspace, user, window, limit }) => {
    bounded(user, LIMITS.id, "user");
    bounded(window, 40, "window");
    boundedInt(limit, 0, 1_000_000, "limit");
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
