// Every public function goes through these wrappers: the service secret is checked first, in
// constant time, and the role rules (the same as core/roles.py) run inside the same transaction
// as the write, so no bug or forged command in the bot can grant a power the actor does not hold.
import { customAction, customMutation, customQuery } from "convex-helpers/server/customFunctions";
import { ConvexError, v, type Infer } from "convex/values";
import { action, mutation, query, type MutationCtx, type QueryCtx } from "../_generated/server";
import { INITIAL_DEFAULT, ROLE_NAMES, Refusal, allows, rank, type Permission, type Target } from "./roles";
import { RULES } from "./rules";

export { ROLES, ROLE_NAMES, Refusal } from "./roles";

export type Code =
  | "unauthorized"
  | "forbidden"
  | "self_change"
  | "escalation"
  | "peer_or_higher"
  | "last_owner"
  | "blocked"
  | "no_effect"
  | "conflict"
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

export const serviceAction = customAction(action, {
  args: { secret: v.string() },
  input: async (_ctx, { secret }) => {
    checkSecret(secret);
    return { ctx: {}, args: {} };
  },
});

/**
 * Mutations take an optional `requestId`: the bot sends one per logical call and the same one on
 * every retry of it. The first success is recorded with its result in the same transaction; a
 * retry of a request that already landed (its answer was lost on the way) is rolled back whole and
 * fails with code "replayed" carrying that first result, which the bot takes as the answer. So a
 * retry can never apply a change, or write its audit row, twice.
 *
 * A request id is scoped to the function (each definition names itself: `name: "module:function"`),
 * the workspace and the thread of the call, so an id reused elsewhere is simply a new request and
 * can never hand back another call's result.
 */
export const serviceMutation = customMutation(mutation, {
  args: { secret: v.string(), requestId: v.optional(v.string()) },
  input: async (ctx, { secret, requestId }, extra: { name?: string }) => {
    checkSecret(secret);
    if (requestId === undefined) return { ctx: {}, args: {} };
    bounded(requestId, "key", "request id");
    if (!extra.name) fail("invalid", "this function takes no request id");
    return {
      ctx: {},
      args: {},
      onSuccess: async ({ args, result }: { args: Record<string, unknown>; result: unknown }) => {
        const scope = [extra.name, args.workspace ?? "", args.thread ?? "", requestId].map(String).join("|");
        const seen = await ctx.db
          .query("requests")
          .withIndex("by_request", (q) => q.eq("requestId", scope))
          .unique();
        // Thrown after the body ran: the whole transaction, this retry's writes included, rolls back.
        if (seen) throw new ConvexError({ code: "replayed", message: "this request was already applied", result: seen.result });
        await ctx.db.insert("requests", { requestId: scope, result: result ?? null, at: Date.now() });
      },
    };
  },
});

// -- bounds: validators say the type; the rule book (lib/rules.ts) says how much ------------------

export type TextKind = keyof typeof RULES.text;
export type NumberKind = keyof typeof RULES.numbers;
export type CountKind = keyof typeof RULES.counts;

/** The one validator for every identifier and text: the rule book's bound for its kind. */
export function bounded(value: string, kind: TextKind, name: string, { allowEmpty = false } = {}): string {
  const max: number = RULES.text[kind];
  if (typeof value !== "string") fail("invalid", `${name} must be text`);
  if (!allowEmpty && value.length === 0) fail("invalid", `${name} must not be empty`);
  if (value.length > max) {
    fail("invalid", `${name} is too long (${value.length.toLocaleString("en")} characters; the limit is ${max.toLocaleString("en")})`);
  }
  return value;
}

export function boundedInt(value: number, kind: NumberKind, name: string): number {
  const [min, max] = RULES.numbers[kind];
  if (!Number.isInteger(value) || value < min || value > max) {
    fail("invalid", `${name} must be a whole number from ${min.toLocaleString("en")} to ${max.toLocaleString("en")}`);
  }
  return value;
}

export function boundedNumber(value: number, kind: NumberKind, name: string): number {
  const [min, max] = RULES.numbers[kind];
  if (!Number.isFinite(value)) fail("invalid", `${name} must be a finite number`);
  if (value < min || value > max) fail("invalid", `${name} must be from ${min.toLocaleString("en")} to ${max.toLocaleString("en")}`);
  return value;
}

export function boundedCount(items: readonly unknown[], kind: CountKind, name: string) {
  const max: number = RULES.counts[kind];
  if (items.length > max) fail("invalid", `at most ${max.toLocaleString("en")} ${name} per call`);
}

/** The sources a kept answer cites, by their URIs: bounded in number and each in length. */
export function boundedSourceUris(uris: readonly string[]) {
  boundedCount(uris, "sources", "sources");
  for (const uri of uris) bounded(uri, "uri", "source uri");
}

/** Every function's workspace argument: bounded, and shaped like `platform:id`. */
export function workspaceKey(workspace: string): string {
  bounded(workspace, "workspace", "workspace");
  if (workspace.indexOf(":") <= 0) fail("invalid", "workspace must look like platform:id");
  return workspace;
}

// -- roles -----------------------------------------------------------------------------------------

/** The actor of a call: an id only. Platform facts are never taken from the caller (factsFor). */
export const actorValidator = v.object({ userId: v.string() });
export type Actor = Infer<typeof actorValidator>;
export type Facts = { isOwner: boolean; isAdmin: boolean; isGuest?: boolean; roleIds: string[] };
export const NO_FACTS: Facts = { isOwner: false, isAdmin: false, roleIds: [] };

export function checkRole(role: number, name = "role"): number {
  if (!Number.isInteger(role) || role < 1 || role > RULES.roles.length) fail("invalid", `${name} must be a role from 1 to ${RULES.roles.length}`);
  return role;
}

export type Settings = {
  systemPrompt: string;
  defaultRole: number;
  guestsMayAsk: boolean;
  answerWithoutMention: boolean;
  model: string;
  quotas: Record<string, number>;
  threads: string;
};

export const DEFAULT_SETTINGS: Settings = {
  systemPrompt: "",
  defaultRole: INITIAL_DEFAULT,
  guestsMayAsk: false,
  answerWithoutMention: false,
  model: "",
  quotas: { guest: 20, member: 100 },
  threads: "auto",
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

/** The mappings of the given platform role ids (all a rank needs). */
export async function mappingsFor(ctx: Ctx, workspace: string, roleIds: readonly string[]): Promise<Record<string, number>> {
  boundedCount(roleIds, "role_ids", "role ids");
  const mappings: Record<string, number> = {};
  for (const roleId of roleIds) {
    bounded(roleId, "id", "role id");
    const mapping = await ctx.db
      .query("roleMappings")
      .withIndex("by_workspace_role", (q) => q.eq("workspace", workspace).eq("platformRole", roleId))
      .unique();
    if (mapping) mappings[roleId] = mapping.role;
  }
  return mappings;
}

/**
 * The platform facts that count for a user: only what Convex verified itself (facts:refresh asked Slack
 * users.info or Discord's guild member endpoint, within RULES.platform_facts.ttl_s). Without a verified
 * fact (no token to ask with, the platform did not answer, the fact expired) the stored role alone
 * counts; the caller cannot pass facts at all.
 */
export async function factsFor(ctx: Ctx, workspace: string, user: string): Promise<Facts> {
  const row = await ctx.db
    .query("platformFacts")
    .withIndex("by_workspace_user", (q) => q.eq("workspace", workspace).eq("user", user))
    .unique();
  if (!row || Date.now() / 1000 - row.checkedAt > RULES.platform_facts.ttl_s) return NO_FACTS;
  return { isOwner: row.isOwner, isAdmin: row.isAdmin, isGuest: row.isGuest, roleIds: row.roleIds };
}

/** blocked ? none : rank(explicit role, platform facts and mappings, workspace default). */
export async function effectiveRole(ctx: Ctx, workspace: string, actor: Actor): Promise<number | null> {
  workspaceKey(workspace);
  bounded(actor.userId, "id", "actor id");
  const member = await memberOf(ctx, workspace, actor.userId);
  const facts = await factsFor(ctx, workspace, actor.userId);
  const mappings = await mappingsFor(ctx, workspace, facts.roleIds);
  if (member?.blocked) return null;
  const settings = await settingsOf(ctx, workspace);
  return rank(member?.role ?? null, facts, mappings, settings.defaultRole);
}

/** The target of a role change, with everything that gives it rank. */
export async function targetOf(ctx: Ctx, workspace: string, user: string): Promise<Target & { row: Awaited<ReturnType<typeof memberOf>> }> {
  const row = await memberOf(ctx, workspace, bounded(user, "id", "user"));
  const facts = await factsFor(ctx, workspace, user);
  return {
    userId: user,
    row,
    explicit: row?.role ?? null,
    blocked: row?.blocked ?? false,
    facts,
    mappings: await mappingsFor(ctx, workspace, facts.roleIds),
    defaultRole: (await settingsOf(ctx, workspace)).defaultRole,
  };
}

/** Throws a Refusal (audited by `acting`) unless the actor holds the permission. */
export async function requirePermission(ctx: Ctx, workspace: string, actor: Actor, permission: Permission): Promise<number> {
  const role = await effectiveRole(ctx, workspace, actor);
  if (role === null) throw new Refusal("blocked", "you are blocked in this workspace");
  if (!allows(role, permission)) throw new Refusal("forbidden", `${permission} needs a higher role than ${ROLE_NAMES[role]}`);
  return role;
}

/** In a query (which cannot write an audit row), a Refusal is a plain error with its code. */
export async function inQuery<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (error) {
    if (error instanceof Refusal) fail(error.code as Code, error.message);
    throw error;
  }
}

export type Refused = { refused: { code: string; message: string } };

/**
 * Run an acting mutation's body. A Refusal (thrown by the checks, which all come before any write)
 * is audited in this same transaction and returned as `{refused}`, so the refusal row commits while
 * nothing else changes; ConvexStore turns it into PermissionDenied. Audit rows exist only this way.
 */
export async function acting<T>(ctx: MutationCtx, workspace: string, actorId: string, what: string, body: () => Promise<T>): Promise<T | Refused> {
  workspaceKey(workspace);
  bounded(actorId, "id", "actor id");
  try {
    return await body();
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    if (error.code === "invalid") fail("invalid", error.message);
    await audit(ctx, workspace, actorId, RULES.audit.direct_action, `${error.code}: ${what}`);
    return { refused: { code: error.code, message: error.message } };
  }
}

export async function audit(ctx: MutationCtx, workspace: string, actor: string, action: string, detail: string) {
  await ctx.db.insert("auditLog", { workspace, at: Date.now() / 1000, actor, action, detail: detail.slice(0, RULES.text.detail) });
}
