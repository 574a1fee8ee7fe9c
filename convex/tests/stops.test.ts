import { describe, expect, test, vi } from "vitest";
import { api } from "../functions/_generated/api";
import { RULES } from "../functions/lib/rules";
import { type Backend, ROLE, SECRET, WS, admin, backend, code, member, owner } from "./setup";

const asker = { userId: "U-asker" };

async function streamingReply(t: Backend, workspace = WS) {
  const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace, channel: "C", externalThread: "x" });
  const reply = await t.mutation(api.threads.addMessage, {
    secret: SECRET, workspace, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
  });
  await t.mutation(api.stops.streaming, { secret: SECRET, workspace, ref: "ref1", reply, asker: asker.userId });
  return reply;
}

const stop = (t: Backend, actor: { userId: string }, workspace = WS, ref = "ref1") =>
  t.mutation(api.stops.request, { secret: SECRET, workspace, actor, ref });
const beat = (t: Backend, reply: string, workspace = WS) =>
  t.mutation(api.leases.heartbeat, { secret: SECRET, owner: "streamer", replies: [{ workspace, reply }] });

describe("a Stop for a reply another process streams", () => {
  test("the asker's Stop is recorded once, and the streaming process hears it at its heartbeat", async () => {
    const t = await backend();
    const reply = await streamingReply(t);
    expect(await beat(t, reply)).toEqual({ lost: [], stop: [] });
    expect(await stop(t, asker)).toBe("stopping");
    expect(await beat(t, reply)).toEqual({ lost: [], stop: [reply] });
    expect(await stop(t, asker)).toBe("duplicate"); // a second click, from any process
    await t.mutation(api.threads.completeMessage, {
      secret: SECRET, workspace: WS, id: reply, text: "half\n\n_stopped_", status: "cancelled", sources: [], usage: { inputTokens: 0, outputTokens: 0 }, platformMessageId: "p1",
    });
    expect(await stop(t, asker)).toBe("ended"); // really finished: the old answer
    expect(await stop(t, asker, WS, "never-streamed")).toBe("ended");
  });

  test("someone else may stop it only with the rule book's role (curator and above); blocked nobody", async () => {
    const t = await backend();
    const reply = await streamingReply(t);
    expect(await stop(t, member)).toBe("not_allowed");
    const curator = { userId: "U-curator" };
    await t.mutation(api.workspaces.setRole, { secret: SECRET, workspace: WS, actor: owner, user: curator.userId, role: ROLE.curator });
    await t.mutation(api.workspaces.setBlocked, { secret: SECRET, workspace: WS, actor: owner, user: admin.userId, blocked: true });
    expect(await stop(t, admin)).toBe("not_allowed"); // a verified platform admin, but blocked here
    expect(await beat(t, reply)).toEqual({ lost: [], stop: [] }); // nothing was recorded
    expect(await stop(t, curator)).toBe("stopping");
    expect(await beat(t, reply)).toEqual({ lost: [], stop: [reply] });
  });

  test("attack: another workspace can neither stop, note nor hear another's reply", async () => {
    const t = await backend();
    const reply = await streamingReply(t);
    // slack:B's owner (verified there) names T1's ref through slack:B: there is no such reply there.
    expect(await stop(t, owner, "slack:B")).toBe("ended");
    // Nor can slack:B note T1's reply as its own (to then stop it as its asker).
    expect(await code(t.mutation(api.stops.streaming, { secret: SECRET, workspace: "slack:B", ref: "ref1", reply, asker: owner.userId }))).toBe(
      "not_found",
    );
    expect(await stop(t, owner, "slack:B")).toBe("ended");
    expect(await beat(t, reply)).toEqual({ lost: [], stop: [] }); // T1's reply was never asked to stop
    // The streaming process asked to stop in T1 hears it only through T1.
    expect(await stop(t, asker)).toBe("stopping");
    expect(await beat(t, reply, "slack:B")).toEqual({ lost: [reply], stop: [] });
    // And only the bot can ask at all.
    expect(await code(t.mutation(api.stops.request, { secret: "wrong", workspace: WS, actor: asker, ref: "ref1" }))).toBe("unauthorized");
    expect(await code(t.mutation(api.stops.request, { secret: SECRET, workspace: WS, actor: asker, ref: "x".repeat(601) }))).toBe("invalid");
  });

  test("rows are pruned a day after their reply streamed, by later replies' notes", async () => {
    vi.useFakeTimers();
    const t = await backend();
    await streamingReply(t);
    const rows = () => t.run(async (ctx) => (await ctx.db.query("replyStops").collect()).map((r) => r.ref));
    vi.advanceTimersByTime((RULES.retention.reply_stops_s + 1) * 1000);
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "y" });
    const reply = await t.mutation(api.threads.addMessage, {
      secret: SECRET, workspace: WS, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
    });
    await t.mutation(api.stops.streaming, { secret: SECRET, workspace: WS, ref: "ref2", reply, asker: asker.userId });
    expect(await rows()).toEqual(["ref2"]);
    vi.useRealTimers();
  });
});
