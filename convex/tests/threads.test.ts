import { describe, expect, test, vi } from "vitest";
import { api, internal } from "../functions/_generated/api";
import { SECRET, WS, backend, code, member, owner } from "./setup";

describe("event claims", () => {
  test("only the first claimant wins; a retry by the same claimant keeps its win", async () => {
    const t = await backend();
    expect(await t.mutation(api.claims.claim, { secret: SECRET, key: "slack:T1:C1:1.0", claimant: "a" })).toBe(true);
    expect(await t.mutation(api.claims.claim, { secret: SECRET, key: "slack:T1:C1:1.0", claimant: "b" })).toBe(false);
    expect(await t.mutation(api.claims.claim, { secret: SECRET, key: "slack:T1:C1:1.0", claimant: "a" })).toBe(true);
  });
});

describe("messages", () => {
  test("pagination walks 120 messages newest first without gaps", async () => {
    const t = await backend();
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "long" });
    for (let i = 0; i < 120; i++) {
      await t.mutation(api.threads.addMessage, {
        secret: SECRET, workspace: WS, thread, role: "user", text: `m${i}`, authorId: "U", status: "complete", idempotencyKey: "",
      });
    }
    const texts: string[] = [];
    let cursor: string | null = null;
    for (;;) {
      const page: { page: { text: string }[]; isDone: boolean; continueCursor: string } = await t.query(
        api.threads.messages,
        { secret: SECRET, workspace: WS, thread, paginationOpts: { numItems: 25, cursor } },
      );
      texts.push(...page.page.map((m: { text: string }) => m.text));
      if (page.isDone) break;
      cursor = page.continueCursor;
    }
    expect(texts).toEqual(Array.from({ length: 120 }, (_, i) => `m${119 - i}`));
  });

  test("an idempotency key returns the same message", async () => {
    const t = await backend();
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "k" });
    const args = { secret: SECRET, workspace: WS, thread, role: "user" as const, text: "hi", authorId: "U", status: "complete" as const, idempotencyKey: "k1" };
    expect(await t.mutation(api.threads.addMessage, args)).toBe(await t.mutation(api.threads.addMessage, args));
  });

  test("deltas show the reply growing; completion keeps the final text and schedules cleanup", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "s" });
    const id = await t.mutation(api.threads.addMessage, {
      secret: SECRET, workspace: WS, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
    });
    await t.mutation(api.threads.appendDeltas, { secret: SECRET, deltas: [{ workspace: WS, message: id, seq: 0, text: "Hel" }] });
    await t.mutation(api.threads.appendDeltas, {
      secret: SECRET, deltas: [{ workspace: WS, message: id, seq: 1, text: "lo" }, { workspace: WS, message: id, seq: 1, text: "lo" }],
    });
    expect((await t.query(api.threads.message, { secret: SECRET, workspace: WS, id }))?.text).toBe("Hello");
    await t.mutation(api.threads.completeMessage, {
      secret: SECRET, workspace: WS, id, text: "Hello!", status: "complete", sources: [], usage: { inputTokens: 1, outputTokens: 2 }, platformMessageId: "p1",
    });
    const done = await t.query(api.threads.message, { secret: SECRET, workspace: WS, id });
    expect(done?.text).toBe("Hello!");
    expect(done?.status).toBe("complete");
    const before = await t.run(async (ctx) => (await ctx.db.query("streamDeltas").collect()).length);
    expect(before).toBe(2);
    vi.runAllTimers();
    await t.finishInProgressScheduledFunctions();
    const after = await t.run(async (ctx) => (await ctx.db.query("streamDeltas").collect()).length);
    expect(after).toBe(0);
    vi.useRealTimers();
  });

  test("the sweep marks replies that stopped growing as failed, keeping their text", async () => {
    const t = await backend();
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "x" });
    const id = await t.mutation(api.threads.addMessage, {
      secret: SECRET, workspace: WS, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
    });
    await t.mutation(api.threads.appendDeltas, { secret: SECRET, deltas: [{ workspace: WS, message: id, seq: 0, text: "partial" }] });
    expect(await t.mutation(internal.threads.sweepStale, { olderThanS: 3600 })).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const stale = await t.query(api.threads.staleStreaming, { secret: SECRET, olderThanS: 0.001 });
    expect(stale).toEqual([{ id, workspace: WS }]); // which reply of which workspace, never its text
    expect(await t.mutation(internal.threads.sweepStale, { olderThanS: 0.001 })).toBe(1);
    const swept = await t.query(api.threads.message, { secret: SECRET, workspace: WS, id });
    expect(swept?.status).toBe("failed");
    expect(swept?.text.startsWith("partial")).toBe(true);
  });
});

/** The answer a mutation gave the first time, as its replay reports it (ConvexError "replayed"). */
async function replayed(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    const data = (error as { data?: { code?: string; result?: unknown } }).data;
    if (data?.code === "replayed") return data.result;
    throw error;
  }
  throw new Error("the retry was applied again");
}

describe("quotas", () => {
  test("a retried request is counted once and gets its first answer back", async () => {
    const t = await backend();
    const consume = (requestId: string) =>
      t.mutation(api.workspaces.consumeQuota, { secret: SECRET, workspace: WS, user: "U", window: "w", limit: 2, requestId });
    expect(await consume("r1")).toBe(true);
    expect(await replayed(consume("r1"))).toBe(true);
    expect(await consume("r2")).toBe(true);
    expect(await consume("r3")).toBe(false);
    expect(await replayed(consume("r3"))).toBe(false);
  });
});

describe("retried mutations", () => {
  test("a role change retried with its request id is applied and audited once", async () => {
    const t = await backend();
    const set = () =>
      t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor: owner, user: "U-x", role: 3, requestId: "req-1" });
    await set();
    expect(await replayed(set())).toBe(null);
    const entries = await t.query(api.audit.entries, { secret: SECRET, workspace: WS, actor: owner, limit: 10 });
    expect(entries.filter((e: { action: string }) => e.action === "role.set")).toHaveLength(1);
  });

  test("a refusal is recorded with its audit row: its retry gets the same refusal back and audits nothing more", async () => {
    const t = await backend();
    const set = () =>
      t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor: member, user: "U-x", role: 3, requestId: "req-2" });
    expect(await code(set())).toBe("forbidden");
    expect(await replayed(set())).toEqual({ refused: { code: "forbidden", message: "you need the admin role to change roles" } });
    const entries = await t.query(api.audit.entries, { secret: SECRET, workspace: WS, actor: owner, limit: 10 });
    expect(entries.map((e: { action: string; actor: string }) => [e.action, e.actor])).toEqual([["refused", member.userId]]);
  });

  test("a request id is scoped to its function and workspace: reused elsewhere it is a new request", async () => {
    const t = await backend();
    await t.mutation(api.workspaces.updateSettings, { secret: SECRET, workspace: "slack:B", actor: owner, changes: { systemPrompt: "B's secret" }, requestId: "r" });
    const other = await t.mutation(api.workspaces.updateSettings, { secret: SECRET, workspace: WS, actor: owner, changes: { model: "m" }, requestId: "r" });
    expect(other).toMatchObject({ model: "m", systemPrompt: "" });
    const quota = await t.mutation(api.workspaces.consumeQuota, { secret: SECRET, workspace: "slack:B", user: "U", window: "w", limit: 1, requestId: "r" });
    expect(quota).toBe(true);
  });

  test("request ids have bounds", async () => {
    const t = await backend();
    const call = t.mutation(api.claims.claim, { secret: SECRET, key: "k", claimant: "c", requestId: "x".repeat(601) });
    expect(await code(call)).toBe("invalid");
  });
});

describe("housekeeping", () => {
  test("claims and request records older than the window are pruned in batches; newer ones stay", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const old = Date.now() - 2 * 86_400_000;
    await t.run(async (ctx) => {
      for (let i = 0; i < 5; i++) {
        await ctx.db.insert("eventClaims", { key: `old-${i}`, claimant: "c", at: old });
        await ctx.db.insert("requests", { requestId: `old-${i}`, result: null, at: old });
      }
    });
    await t.mutation(api.claims.claim, { secret: SECRET, key: "new", claimant: "c", requestId: "new" });
    expect(await t.mutation(internal.housekeeping.prune, { olderThanS: 86_400, batch: 2 })).toEqual({ claims: 2, requests: 2 });
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    const left = await t.run(async (ctx) => ({
      claims: (await ctx.db.query("eventClaims").collect()).map((r) => r.key),
      requests: (await ctx.db.query("requests").collect()).map((r) => r.requestId),
    }));
    expect(left).toEqual({ claims: ["new"], requests: ["claims:claim|||new"] });
    vi.useRealTimers();
  });
});
