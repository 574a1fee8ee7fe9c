import { afterEach, describe, expect, test, vi } from "vitest";
import { api } from "../functions/_generated/api";
import { RULES } from "../functions/lib/rules";
import { SECRET, WS, backend, code } from "./setup";

const forged = { userId: "U-m", isOwner: true, isAdmin: true, roleIds: [] as string[] };
const setRole = (t: ReturnType<typeof backend>, actor: typeof forged) =>
  t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor, user: "U-x", role: 3 });

describe("platform facts on a deployment that verifies them", () => {
  afterEach(() => {
    delete process.env.SLACK_BOT_TOKEN;
    vi.useRealTimers();
  });

  test("claims count only without the platform's token", async () => {
    const t = backend();
    expect(await code(setRole(t, forged))).toBe("ok");
    process.env.SLACK_BOT_TOKEN = "xoxb-test";
    expect(await code(setRole(t, { ...forged, userId: "U-m2" }))).toBe("forbidden");
  });

  test("a verified fact counts until it is older than the trust period", async () => {
    vi.useFakeTimers();
    const t = backend();
    process.env.SLACK_BOT_TOKEN = "xoxb-test";
    const plain = { userId: "U-v", isOwner: false, isAdmin: false, roleIds: [] as string[] };
    await t.run(async (ctx) => {
      await ctx.db.insert("platformFacts", {
        workspace: WS, user: "U-v", isOwner: false, isAdmin: true, isGuest: false, roleIds: [], checkedAt: Date.now() / 1000,
      });
    });
    expect(await code(setRole(t, plain))).toBe("ok");
    vi.advanceTimersByTime((RULES.platform_facts.ttl_s + 1) * 1000);
    expect(await code(setRole(t, plain))).toBe("forbidden");
  });

  test("refresh without a token asks nobody", async () => {
    const t = backend();
    expect(await t.action(api.facts.refresh, { secret: SECRET, workspace: WS, users: ["U-1"] })).toBe(null);
    expect(await code(t.action(api.facts.refresh, { secret: "nope", workspace: WS, users: ["U-1"] }))).toBe("unauthorized");
  });
});
