import { afterEach, describe, expect, test, vi } from "vitest";
import { api } from "../functions/_generated/api";
import { openFernet } from "../functions/lib/fernet";
import { RULES } from "../functions/lib/rules";
import { type Backend, SECRET, WS, backend, code, verify } from "./setup";

const setRole = (t: Backend, actor: { userId: string }) =>
  t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor, user: "U-x", role: 3 });

// Sealed once by Python's `cryptography` (Fernet(KEY).encrypt(b"xoxb-T0VECTOR-0123456789abcdef")),
// as core/installations.py seals an OAuth-installed workspace's bot token.
const KEY = "rFx3Xajoyy7gNBuoc1g8m2xtyJ4x1bCiG2LZr5m2eDo=";
const SEALED =
  "gAAAAABrDxSjoijUJLkocGWhWwKSyZFWNalreX2A19UbjP2HRGD4ZXzUeKNyYjnEUy3oXBBV49aPEH2X9CcMp8bLv-F1XoHk8QBNiKChAWrgoKpCn9pQpCc=";
const PLAIN = "xoxb-T0VECTOR-0123456789abcdef";

afterEach(() => {
  for (const name of ["SLACK_BOT_TOKEN", "SLACK_API_URL", "CHATBOT_TOKEN_KEY"]) delete process.env[name];
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("platform facts are only what Convex verified", () => {

  test("claimed facts are refused by the validator, with or without a token", async () => {
    const t = await backend();
    const forged = { userId: "U-m", isOwner: true, isAdmin: true, roleIds: [] as string[] };
    expect(await code(setRole(t, forged))).toMatch(/^validator/);
    const targetFacts = { isOwner: true, isAdmin: false, roleIds: [] };
    const block = t.mutation(api.workspaces.setBlocked, { secret: SECRET, workspace: WS, actor: { userId: "U-owner" }, user: "U-x", blocked: true, targetFacts } as never);
    expect(await code(block)).toMatch(/^validator/);
    // Without any token the deployment verifies nothing: an unverified user is judged by its stored role.
    expect(await code(setRole(t, { userId: "U-m" }))).toBe("forbidden");
    expect(await t.query(api.workspaces.membership, { secret: SECRET, workspace: WS, user: "U-x" })).toBe(null);
  });

  test("a verified fact counts until it is older than the trust period", async () => {
    vi.useFakeTimers();
    const t = await backend();
    await verify(t, WS, "U-v", { isAdmin: true });
    expect(await code(setRole(t, { userId: "U-v" }))).toBe("ok");
    vi.advanceTimersByTime((RULES.platform_facts.ttl_s + 1) * 1000);
    expect(await code(setRole(t, { userId: "U-v" }))).toBe("forbidden");
  });

  test("refresh without a token asks nobody", async () => {
    const t = await backend();
    expect(await t.action(api.facts.refresh, { secret: SECRET, workspace: WS, users: ["U-1"] })).toBe(null);
    expect(await code(t.action(api.facts.refresh, { secret: "nope", workspace: WS, users: ["U-1"] }))).toBe("unauthorized");
  });
});

describe("Fernet, as Python's cryptography seals", () => {
  test("opens a token sealed by Python with the same key", async () => {
    expect(await openFernet(KEY, SEALED)).toBe(PLAIN);
  });

  test("refuses another key, an altered token, and garbage", async () => {
    const other = "x".repeat(43) + "=";
    expect(await openFernet(other, SEALED)).toBe(null);
    const altered = SEALED.slice(0, 40) + (SEALED[40] === "A" ? "B" : "A") + SEALED.slice(41);
    expect(await openFernet(KEY, altered)).toBe(null);
    expect(await openFernet(KEY, "not a token")).toBe(null);
    expect(await openFernet("short", SEALED)).toBe(null);
  });

  test("refresh asks Slack with the installed workspace's own token", async () => {
    const t = await backend();
    process.env.CHATBOT_TOKEN_KEY = KEY;
    process.env.SLACK_BOT_TOKEN = "xoxb-the-single-workspace-token";
    process.env.SLACK_API_URL = "http://slack.invalid/api";
    const workspace = "slack:T0VECTOR";
    await t.mutation(api.installations.put, {
      secret: SECRET, workspace, sealedToken: SEALED, botId: "B1", botUserId: "UBOT", botScopes: "users:read", appId: "A1",
      installerUserId: "U-i", teamName: "Vector", enterpriseId: "", installedAt: 1,
    });
    const seen: string[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: { headers: Record<string, string> }) => {
      seen.push(init.headers.authorization);
      return new Response(JSON.stringify({ ok: true, user: { id: "U-a", team_id: "T0VECTOR", is_admin: true } }));
    });
    expect(await t.action(api.facts.refresh, { secret: SECRET, workspace, users: ["U-a"] })).toBe(1);
    expect(seen).toEqual([`Bearer ${PLAIN}`]);
    const update = t.mutation(api.workspaces.updateSettings, { secret: SECRET, workspace, actor: { userId: "U-a" }, changes: { systemPrompt: "Hi." } });
    expect(await code(update)).toBe("ok");
    // A workspace without an installation is asked with the deployment's single token.
    expect(await t.action(api.facts.refresh, { secret: SECRET, workspace: "slack:T-other", users: ["U-b"] })).toBe(0);
    expect(seen[1]).toBe("Bearer xoxb-the-single-workspace-token");
  });
});
