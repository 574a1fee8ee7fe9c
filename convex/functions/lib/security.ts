// Every public function goes through these wrappers: the service secret is checked first, in
// constant time, and the role rules (the same as core/roles.py) run inside the same transaction
// as the write, so no bug or forged command in the bot can grant a power the actor does not hold.
import { customMutation, customQuery } from "convex-helpers/server/customFunctions";
import { ConvexError, v, type Infer } from "convex/values";
import { mutation, query, type MutationCtx, type QueryCtx } from "../_generated/server";

export type Code =
  | "unauthorized"
  | "forbidden"
  | "self_change"
  | "escalation"
  | "peer_or_higher"
  | "last_owner"
  | "blocked"
  | "invalid"
  | "not_found"
  | "replayed";

export function fail(code: Code, message: string): never {
  throw new ConvexError({ code, message });
}

/** Compares every character whatever the first difference, so timing reveals nothing of the secret. */
export function sameSecret(given: string, expected: string): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < given.length; i++) {
    diff |= given.charCodeAt(i) ^ expected.charCodeAt(i % Math.max(expected.length, 1));
  }
  return diff === 0 && expected.length > 0;
}

function checkSecret(secret: string) {
  const expected = process.env.CHATBOT_SERVICE_SECRET ?? "";
  if (!sameSecret(secret, expected)) fail("unauthorized", "wrong or missing service secret");
}

export const serviceQuery = customQuery(query, {
  args: { secret: v.string() },
  input: async (_ctx, { secret }) => {
    checkSecret(secret);
    return { ctx: {}, args: {} };
  },
});

/**
 * Mutations take an optional `requestId`: the bot sends one per logical call and the same one on
 * every retry of it. The first success is recorded with its result in the same transaction; a
 * retry of a request that already landed (its answer was lost on the way) writes nothing and fails
 * with code "replayed" carrying that first result, which the bot takes as the answer. So a retry
 * can never apply a change, or write its audit row, twice.
 */
export const serviceMutation = customMutation(mutation, {
  args: { secret: v.string(), requestId: v.optional(v.string()) },
  input: async (ctx, { secret, requestId }) => {
    checkSecret(secret);
    if (requestId === undefined) return { ctx: {}, args: {} };
    bounded(requestId, LIMITS.key, "request id");
    const seen = await ctx.db
      .query("requests")
      .withIndex("by_request", (q) => q.eq("requestId", requestId))
      .unique();
    if (seen) throw new ConvexError({ code: "replayed", message: "this request was already applied", result: seen.result });
    return {
      ctx: {},
      args: {},
      onSuccess: async ({ result }: { result: unknown }) => {
        await ctx.db.insert("requests", { requestId, result: result ?? null, at: Date.now() });
      },
    };
  },
});

// -- bounds: validators say the type; these say how much ------------------------------------------

export const LIMITS = { id: 200, key: 600, text: 40_000, prompt: 8_000, title: 500, uri: 2_000, detail: 2_000 };

export function bounded(value: string, max: number, name: string, { allowEmpty = false } = {}): string {
  if (!allowEmpty && value.length === 0) fail("invalid", `${name} must not be empty`);
  if (value.length > max) {
    fail("invalid", `${name} is too long (${value.length.toLocaleString("en")} characters; the limit is ${max.toLocaleString("en")})`);
  }
  return value;
}

export function boundedInt(value: number, min: number, max: number, name: string): number {
  if (!Number.isInteger(value) || value < min || value > max) fail("invalid", `${name} must be a whole number from ${min} to ${max}`);
  return value;
}

// -- roles -----------------------------------------------------------------------------------------

export const ROLES = { guest: 1, member: 2, curator: 3, admin: 4, owner: 5 } as const;
export const ROLE_NAMES = ["", "guest", "member", "curator", "admin", "owner"];
export const PERMISSIONS = {
  manage_knowledge: ROLES.curator,
  manage_settings: ROLES.admin,
  manage_roles: ROLES.admin,
  view_audit: ROLES.admin,
} as const;
export type Permission = keyof typeof PERMISSIONS;

export const actorValidator = v.object({
  userId: v.string(),
  isOwner: v.boolean(),
  isAdmin: v.boolean(),
  isGuest: v.optional(v.boolean()),
  roleIds: v.array(v.string()),
});
export type Actor = Infer<typeof actorValidator>;

export const roleValidator = v.number();

export function checkRole(role: number, name = "role"): number {
  if (!Number.isInteger(role) || role < ROLES.guest || role > ROLES.owner) fail("invalid", `${name} must be a role from 1 to 5`);
  return role;
}

export type Settings = {
  systemPrompt: string;
  defaultRole: number;
  guestsMayAsk: boolean;
  answerWithoutMention: boolean;
  model: string;
  quotas: Record<string, number>;
  autoThread: boolean;
};

export const DEFAULT_SETTINGS: Settings = {
  systemPrompt: "",
  defaultRole: ROLES.member,
  guestsMayAsk: false,
  answerWithoutMention: false,
  model: "",
  quotas: { guest: 20, member: 100 },
  autoThread: false,
};

type Ctx = QueryCtx | MutationCtx;

export async function settingsOf(ctx: Ctx, workspace: string): Promise<Settings> {
  const row = await ctx.db
    .query("workspaces")
    .withIndex("by_key", (q) => q.eq("key", workspace))
    .unique();
  return row?.settings ?? DEFAULT_SETTINGS;
}

export async function memberOf(ctx: Ctx, workspace: string, user: string) {
  return await ctx.db
    .query("members")
    .withIndex("by_workspace_user", (q) => q.eq("workspace", workspace).eq("user", user))
    .unique();
}

/** blocked ? none : max(explicit role, role from platform facts and mappings, workspace default). */
export async function effectiveRole(ctx: Ctx, workspace: string, actor: Actor): Promise<number | null> {
  bounded(actor.userId, LIMITS.id, "actor id");
  if (actor.roleIds.length > 250) fail("invalid", "too many role ids");
  const member = await memberOf(ctx, workspace, actor.userId);
  if (member?.blocked) return null;
  const settings = await settingsOf(ctx, workspace);
  const candidates = [actor.isGuest ? Math.min(settings.defaultRole, ROLES.guest) : settings.defaultRole];
  if (member?.role != null) candidates.push(member.role);
  if (actor.isOwner) candidates.push(ROLES.owner);
  if (actor.isAdmin) candidates.push(ROLES.admin);
  for (const roleId of actor.roleIds) {
    const mapping = await ctx.db
      .query("roleMappings")
      .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace).eq("platformRole", roleId))
      .unique();
    if (mapping) candidates.push(mapping.role);
  }
  return Math.max(...candidates);
}

export async function requirePermission(ctx: Ctx, workspace: string, actor: Actor, permission: Permission): Promise<number> {
  const role = await effectiveRole(ctx, workspace, actor);
  if (role === null) fail("blocked", "you are blocked in this workspace");
  if (role < PERMISSIONS[permission]) fail("forbidden", `${permission} needs a higher role than ${ROLE_NAMES[role]}`);
  return role;
}

export async function audit(ctx: MutationCtx, workspace: string, actor: string, action: string, detail: string) {
  await ctx.db.insert("auditLog", { workspace, at: Date.now() / 1000, actor, action, detail: detail.slice(0, LIMITS.detail) });
}

