// Slack installations (OAuth v2): one bot token per workspace, sealed by the bot before it arrives
// (Fernet, CHATBOT_TOKEN_KEY), so this deployment never stores, logs or returns a token in the clear;
// facts:refresh opens one in memory, to verify platform facts, when the deployment holds the same key.
// OAuth states are usable once, until they expire.
import { v } from "convex/values";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { bounded, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";
import { installationFields } from "./schema";

type Ctx = QueryCtx | MutationCtx;

function installationOf(ctx: Ctx, workspace: string) {
  return ctx.db
    .query("installations")
    .withIndex("by_workspace", (q) => q.eq("workspace", workspace))
    .unique();
}

function stateOf(ctx: Ctx, state: string) {
  return ctx.db
    .query("oauthStates")
    .withIndex("by_state", (q) => q.eq("state", state))
    .unique();
}

export const put = serviceMutation({
  name: "installations:put",
  args: { workspace: v.string(), ...installationFields },
  handler: async (ctx, { workspace, ...row }) => {
    workspaceKey(workspace);
    bounded(row.sealedToken, "sealed_token", "sealed token");
    for (const [name, value] of Object.entries({ botId: row.botId, botUserId: row.botUserId, appId: row.appId, installerUserId: row.installerUserId, enterpriseId: row.enterpriseId })) {
      bounded(value, "id", name, { allowEmpty: true });
    }
    bounded(row.botScopes, "scopes", "bot scopes", { allowEmpty: true });
    bounded(row.teamName, "title", "team name", { allowEmpty: true });
    const existing = await installationOf(ctx, workspace);
    if (existing) await ctx.db.replace(existing._id, { workspace, ...row });
    else await ctx.db.insert("installations", { workspace, ...row });
    return null;
  },
});

export const get = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const row = await installationOf(ctx, workspace);
    if (!row) return null;
    const { _id, _creationTime, ...fields } = row;
    return fields;
  },
});

export const remove = serviceMutation({
  name: "installations:remove",
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    workspaceKey(workspace);
    const row = await installationOf(ctx, workspace);
    if (!row) return false;
    await ctx.db.delete(row._id);
    return true;
  },
});

export const putState = serviceMutation({
  name: "installations:putState",
  args: { state: v.string(), expiresAt: v.number() },
  handler: async (ctx, { state, expiresAt }) => {
    bounded(state, "oauth_state", "OAuth state");
    const existing = await stateOf(ctx, state);
    if (existing) await ctx.db.patch(existing._id, { expiresAt });
    else await ctx.db.insert("oauthStates", { state, expiresAt });
    return null;
  },
});

/** True once for a live state; the state is gone afterwards either way (and old ones are swept). */
export const takeState = serviceMutation({
  args: { state: v.string(), now: v.number() }, // seconds since the epoch, as expiresAt
  handler: async (ctx, { state, now }) => {
    bounded(state, "oauth_state", "OAuth state");
    const old = await ctx.db
      .query("oauthStates")
      .withIndex("by_expiry", (q) => q.lt("expiresAt", now - 3600))
      .take(50);
    for (const row of old) await ctx.db.delete(row._id);
    const row = await stateOf(ctx, state);
    if (!row) return false;
    await ctx.db.delete(row._id);
    return row.expiresAt >= now;
  },
});
