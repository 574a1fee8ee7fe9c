import { convexTest } from "convex-test";
import { internal } from "../functions/_generated/api";
import schema from "../functions/schema";

export const SECRET = "test-service-secret";
export const modules = import.meta.glob("../functions/**/*.ts");

export type Backend = ReturnType<typeof convexTest>;
export type Facts = { isOwner?: boolean; isAdmin?: boolean; isGuest?: boolean; roleIds?: string[] };

/** Record facts as facts:refresh does once the platform confirmed them (the only facts that count). */
export async function verify(t: Backend, workspace: string, user: string, facts: Facts) {
  await t.mutation(internal.facts.store, {
    workspace, user, isOwner: facts.isOwner ?? false, isAdmin: facts.isAdmin ?? false, isGuest: facts.isGuest ?? false, roleIds: facts.roleIds ?? [],
  });
}

/** A fresh deployment where the platform has confirmed U-owner (owner) and U-admin (admin) in WS and slack:B. */
export async function backend(): Promise<Backend> {
  process.env.CHATBOT_SERVICE_SECRET = SECRET;
  const t = convexTest(schema, modules);
  for (const workspace of [WS, "slack:B"]) {
    await verify(t, workspace, owner.userId, { isOwner: true });
    await verify(t, workspace, admin.userId, { isAdmin: true });
  }
  return t;
}

export const WS = "slack:T1";
// Actors are ids: what the platform says of them is verified (see backend), never claimed.
export const owner = { userId: "U-owner" };
export const admin = { userId: "U-admin" };
export const member = { userId: "U-member" };
export const ROLE = { guest: 1, member: 2, curator: 3, admin: 4, owner: 5 };

/** The stable code of a refused call (a returned refusal or ConvexError data), or "ok". */
export async function code(call: Promise<unknown>): Promise<string> {
  try {
    const result = (await call) as { refused?: { code: string } } | null;
    // An acting mutation returns its refusal (so the refusal's audit row commits) instead of throwing.
    if (result && typeof result === "object" && "refused" in result && result.refused) return result.refused.code;
    return "ok";
  } catch (error) {
    const data = (error as { data?: { code?: string } }).data;
    if (data?.code) return data.code;
    return `validator: ${String((error as Error).message).slice(0, 80)}`;
  }
}
