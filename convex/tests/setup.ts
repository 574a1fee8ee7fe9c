import { convexTest } from "convex-test";
import schema from "../functions/schema";

export const SECRET = "test-service-secret";
export const modules = import.meta.glob("../functions/**/*.ts");

export function backend() {
  process.env.CHATBOT_SERVICE_SECRET = SECRET;
  return convexTest(schema, modules);
}

export const WS = "slack:T1";
export const owner = { userId: "U-owner", isOwner: true, isAdmin: false, roleIds: [] as string[] };
export const admin = { userId: "U-admin", isOwner: false, isAdmin: true, roleIds: [] as string[] };
export const member = { userId: "U-member", isOwner: false, isAdmin: false, roleIds: [] as string[] };
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
