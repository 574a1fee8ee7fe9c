// Platform facts verified by Convex itself: a bot process passes user ids, and this action asks the
// platform (Slack users.info, Discord's guild member and guild endpoints) with a bot token Convex holds,
// caching what it says; mutations trust only these (lib/security.ts factsFor). The token: an
// OAuth-installed Slack workspace's own (sealed by the bot; opened here when the deployment holds the
// same CHATBOT_TOKEN_KEY), else SLACK_BOT_TOKEN / DISCORD_BOT_TOKEN from the deployment's environment.
// SLACK_API_URL / DISCORD_API_URL point the calls elsewhere (the loopback fakes in tests).
import { v } from "convex/values";
import { internal } from "./_generated/api";
import { RULES } from "./lib/rules";
import { internalMutation, internalQuery, type ActionCtx } from "./_generated/server";
import { openFernet } from "./lib/fernet";
import { bounded, boundedCount, serviceAction, workspaceKey } from "./lib/security";

type Verified = { isOwner: boolean; isAdmin: boolean; isGuest: boolean; roleIds: string[] };

const ADMINISTRATOR = 0x8n;
const MANAGE_GUILD = 0x20n;

async function slackFacts(teamId: string, user: string, token: string): Promise<Verified | null> {
  const base = process.env.SLACK_API_URL ?? "https://slack.com/api";
  const response = await fetch(`${base}/users.info`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ user }).toString(),
  });
  if (!response.ok) return null;
  const data = (await response.json()) as { ok?: boolean; user?: Record<string, unknown> };
  const u = data.user;
  // A user of another team is no fact about this workspace.
  if (!data.ok || !u || (u.team_id !== undefined && u.team_id !== teamId)) return null;
  return {
    isOwner: Boolean(u.is_owner || u.is_primary_owner),
    isAdmin: Boolean(u.is_admin),
    isGuest: Boolean(u.is_restricted || u.is_ultra_restricted),
    roleIds: [],
  };
}

async function discordFacts(guildId: string, user: string, token: string): Promise<Verified | null> {
  const base = process.env.DISCORD_API_URL ?? "https://discord.com/api/v10";
  const headers = { authorization: `Bot ${token}` };
  const [memberResponse, guildResponse] = await Promise.all([
    fetch(`${base}/guilds/${guildId}/members/${user}`, { headers }),
    fetch(`${base}/guilds/${guildId}`, { headers }),
  ]);
  if (!memberResponse.ok || !guildResponse.ok) return null;
  const member = (await memberResponse.json()) as { roles?: string[] };
  const guild = (await guildResponse.json()) as { owner_id?: string; roles?: { id: string; permissions: string }[] };
  const roleIds = (member.roles ?? []).map(String);
  // Permissions: @everyone (the guild's own id) and each of the member's roles, OR-ed.
  let permissions = 0n;
  for (const role of guild.roles ?? []) {
    if (role.id === guildId || roleIds.includes(role.id)) permissions |= BigInt(role.permissions);
  }
  return {
    isOwner: guild.owner_id === user,
    isAdmin: (permissions & ADMINISTRATOR) !== 0n || (permissions & MANAGE_GUILD) !== 0n,
    isGuest: false,
    roleIds: roleIds.slice(0, RULES.counts.role_ids),
  };
}

export const sealedToken = internalQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) =>
    (
      await ctx.db
        .query("installations")
        .withIndex("by_workspace", (q) => q.eq("workspace", workspace))
        .unique()
    )?.sealedToken ?? null,
});

/** The bot token to ask the platform with about this workspace, if Convex holds one. */
async function tokenFor(ctx: ActionCtx, platform: string, workspace: string): Promise<string | undefined> {
  if (platform === "discord") return process.env.DISCORD_BOT_TOKEN || undefined;
  if (platform !== "slack") return undefined;
  const key = process.env.CHATBOT_TOKEN_KEY;
  const sealed = key ? await ctx.runQuery(internal.facts.sealedToken, { workspace }) : null;
  if (key && sealed) {
    const token = await openFernet(key, sealed);
    if (token !== null) return token;
    console.warn(`facts: the installation token of ${workspace} does not open with CHATBOT_TOKEN_KEY`);
  }
  return process.env.SLACK_BOT_TOKEN || undefined;
}

export const cached = internalQuery({
  args: { workspace: v.string(), user: v.string() },
  handler: async (ctx, { workspace, user }) =>
    await ctx.db
      .query("platformFacts")
      .withIndex("by_workspace_user", (q) => q.eq("workspace", workspace).eq("user", user))
      .unique(),
});

export const store = internalMutation({
  args: { workspace: v.string(), user: v.string(), isOwner: v.boolean(), isAdmin: v.boolean(), isGuest: v.boolean(), roleIds: v.array(v.string()) },
  handler: async (ctx, args) => {
    const existing = await ctx.db
      .query("platformFacts")
      .withIndex("by_workspace_user", (q) => q.eq("workspace", args.workspace).eq("user", args.user))
      .unique();
    const row = { ...args, checkedAt: Date.now() / 1000 };
    if (existing) await ctx.db.replace(existing._id, row);
    else await ctx.db.insert("platformFacts", row);
  },
});

/** Verify (or re-verify, when stale) the facts of a few users; how many the platform confirmed now, or
 * null when Convex holds no token for this workspace (it asks nobody; the stored roles alone count). */
export const refresh = serviceAction({
  args: { workspace: v.string(), users: v.array(v.string()) },
  handler: async (ctx, { workspace, users }): Promise<number | null> => {
    workspaceKey(workspace);
    boundedCount(users, "fact_users", "users");
    const [platform, externalId] = [workspace.slice(0, workspace.indexOf(":")), workspace.slice(workspace.indexOf(":") + 1)];
    const token = await tokenFor(ctx, platform, workspace);
    if (token === undefined) return null;
    let verified = 0;
    for (const user of new Set(users)) {
      bounded(user, "id", "user");
      const row = await ctx.runQuery(internal.facts.cached, { workspace, user });
      // Half the trust period: a fact is refreshed before it expires for a user who keeps acting.
      if (row && Date.now() / 1000 - row.checkedAt < RULES.platform_facts.ttl_s / 2) continue;
      let facts: Verified | null = null;
      try {
        facts = platform === "slack" ? await slackFacts(externalId, user, token) : await discordFacts(externalId, user, token);
      } catch {
        facts = null; // unreachable platform: no verified fact, so the stored role alone counts
      }
      if (facts === null) continue;
      await ctx.runMutation(internal.facts.store, { workspace, user, ...facts });
      verified++;
    }
    return verified;
  },
});
