import { describe, expect, test } from "vitest";
import { api } from "../functions/_generated/api";
import { type Backend, verify, ROLE, SECRET, WS, admin, backend, code, member, owner } from "./setup";

describe("the service secret", () => {
  test("a wrong secret is refused by queries and mutations", async () => {
    const t = await backend();
    expect(await code(t.query(api.workspaces.settings, { secret: "nope", workspace: WS }))).toBe("unauthorized");
    expect(await code(t.mutation(api.claims.claim, { secret: "nope", key: "k", claimant: "c" }))).toBe("unauthorized");
    expect(await code(t.mutation(api.claims.claim, { secret: SECRET + "x", key: "k", claimant: "c" }))).toBe("unauthorized");
  });

  test("an empty secret is refused even when the deployment has none set", async () => {
    const t = await backend();
    process.env.CHATBOT_SERVICE_SECRET = "";
    expect(await code(t.mutation(api.claims.claim, { secret: "", key: "k", claimant: "c" }))).toBe("unauthorized");
  });

  test("a missing secret argument is rejected by the validator", async () => {
    const t = await backend();
    const call = t.mutation(api.claims.claim, { key: "k", claimant: "c" } as never);
    expect(await code(call)).toMatch(/^validator/);
  });
});

describe("role changes", () => {
  const setRole = (t: Backend, actor: typeof admin, user: string, role: number | null) =>
    t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor, user, role });

  test("a member cannot set roles", async () => {
    expect(await code(setRole(await backend(), member, "U-x", ROLE.guest))).toBe("forbidden");
  });

  test("an admin grants below its own role only", async () => {
    const t = await backend();
    expect(await code(setRole(t, admin, "U-x", ROLE.curator))).toBe("ok");
    expect(await code(setRole(t, admin, "U-x", ROLE.admin))).toBe("escalation");
    expect(await code(setRole(t, admin, "U-y", ROLE.owner))).toBe("escalation");
  });

  test("an admin cannot change a peer or an owner", async () => {
    const t = await backend();
    await setRole(t, owner, "U-admin2", ROLE.admin);
    await setRole(t, owner, "U-owner2", ROLE.owner);
    expect(await code(setRole(t, admin, "U-admin2", ROLE.member))).toBe("peer_or_higher");
    expect(await code(setRole(t, admin, "U-owner2", ROLE.member))).toBe("peer_or_higher");
  });

  test("nobody changes their own role", async () => {
    const t = await backend();
    expect(await code(setRole(t, admin, admin.userId, ROLE.curator))).toBe("self_change");
    expect(await code(setRole(t, owner, owner.userId, ROLE.admin))).toBe("self_change");
  });

  test("the last owner stays", async () => {
    const t = await backend();
    await setRole(t, owner, "U-o1", ROLE.owner);
    expect(await code(setRole(t, owner, "U-o1", ROLE.admin))).toBe("last_owner");
    await setRole(t, owner, "U-o2", ROLE.owner);
    expect(await code(setRole(t, owner, "U-o1", ROLE.admin))).toBe("ok");
  });

  test("a blocked admin can do nothing", async () => {
    const t = await backend();
    await setRole(t, owner, "U-a2", ROLE.admin);
    await t.mutation(api.workspaces.setBlocked, { secret: SECRET, workspace: WS, actor: owner, user: "U-a2", blocked: true });
    const blocked = { userId: "U-a2" };
    expect(await code(setRole(t, blocked, "U-x", ROLE.guest))).toBe("blocked");
    expect(await code(t.query(api.audit.entries, { secret: SECRET, workspace: WS, actor: blocked, limit: 5 }))).toBe("blocked");
  });

  test("a role mapping grants curator, and an admin cannot map to admin", async () => {
    const t = await backend();
    const mapped = { userId: "U-m" };
    await verify(t, WS, mapped.userId, { roleIds: ["R-docs"] });
    const put = () =>
      t.mutation(api.documents.putDocument, {
        secret: SECRET, workspace: WS, actor: mapped, sourceUri: "https://x", title: "X", contentHash: "h", chunkCount: 1, status: "ready",
      });
    expect(await code(put())).toBe("forbidden");
    await t.mutation(api.workspaces.setRoleMapping, { secret: SECRET, workspace: WS, actor: admin, platformRole: "R-docs", role: ROLE.curator });
    expect(await code(put())).toBe("ok");
    const escalate = t.mutation(api.workspaces.setRoleMapping, { secret: SECRET, workspace: WS, actor: admin, platformRole: "R-x", role: ROLE.admin });
    expect(await code(escalate)).toBe("escalation");
  });

  test("settings need an admin, and every change is audited", async () => {
    const t = await backend();
    const update = (actor: typeof admin) =>
      t.mutation(api.workspaces.updateSettings, { secret: SECRET, workspace: WS, actor, changes: { systemPrompt: "Be brief." } });
    expect(await code(update(member))).toBe("forbidden");
    expect(await code(update(admin))).toBe("ok");
    const entries = await t.query(api.audit.entries, { secret: SECRET, workspace: WS, actor: admin, limit: 10 });
    expect(entries[0].action).toBe("settings.update");
    expect(await code(t.query(api.audit.entries, { secret: SECRET, workspace: WS, actor: member, limit: 10 }))).toBe("forbidden");
  });
});

describe("default role", () => {
  const set = (t: Backend, actor: typeof admin, defaultRole: number) =>
    t.mutation(api.workspaces.updateSettings, { secret: SECRET, workspace: WS, actor, changes: { defaultRole } });

  test("the default is at most curator for everyone, owners included", async () => {
    const t = await backend();
    expect(await code(set(t, admin, ROLE.admin))).toBe("invalid");
    expect(await code(set(t, owner, ROLE.admin))).toBe("invalid");
    expect(await code(set(t, owner, ROLE.owner))).toBe("invalid");
    expect(await code(set(t, admin, ROLE.curator))).toBe("ok");
  });

  test("a default at or above the actor's rank cannot be changed by it (no demoting peers through the default)", async () => {
    const t = await backend();
    // A workspace whose default was made admin before the limit existed: every user is an admin by default.
    await t.run(async (ctx) => {
      await ctx.db.insert("workspaces", {
        key: WS, platform: "slack", externalId: "T1",
        settings: { systemPrompt: "", defaultRole: ROLE.admin, guestsMayAsk: false, answerWithoutMention: false, model: "", quotas: {}, threads: "auto" },
      });
    });
    const byDefault = { ...member, userId: "U-default-admin" };
    expect(await code(set(t, byDefault, ROLE.member))).toBe("peer_or_higher");
    expect(await code(set(t, owner, ROLE.member))).toBe("ok");
  });
});

describe("bounds", () => {
  test("oversized text is rejected with a clear error, not truncated", async () => {
    const t = await backend();
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "1" });
    const add = t.mutation(api.threads.addMessage, {
      secret: SECRET, workspace: WS, thread, role: "user", text: "x".repeat(40_001), authorId: "U", status: "complete", idempotencyKey: "",
    });
    expect(await code(add)).toBe("invalid");
    const page = await t.query(api.threads.messages, { secret: SECRET, workspace: WS, thread, paginationOpts: { numItems: 10, cursor: null } });
    expect(page.page).toHaveLength(0);
  });

  test("malformed arguments are rejected by validators", async () => {
    const t = await backend();
    const wrongType = t.mutation(api.claims.claim, { secret: SECRET, key: 42, claimant: "c" } as never);
    expect(await code(wrongType)).toMatch(/^validator/);
    const badEnum = t.mutation(api.workspaces.setChannelRule, {
      secret: SECRET, workspace: WS, actor: admin, channel: "C", mode: "maybe", withoutMention: false,
    } as never);
    expect(await code(badEnum)).toMatch(/^validator/);
    const badRole = t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor: admin, user: "U", role: 9 });
    expect(await code(badRole)).toBe("invalid");
    const badId = t.query(api.threads.message, { secret: SECRET, workspace: WS, id: "not-an-id" });
    expect(await code(badId)).toBe("invalid");
  });
});
