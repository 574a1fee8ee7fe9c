import { describe, expect, test, vi } from "vitest";
import { api } from "../functions/_generated/api";
import { grant } from "../functions/leases";
import { type Backend, SECRET, WS, backend, code } from "./setup";

describe("budget leases", () => {
  test("GCRA grants never put more than burst + rate*W tokens in any window W", () => {
    // Three holders leasing in turns from one bucket of 2/s, burst 3, over 20 s.
    let tat = 0;
    const spent: number[] = [];
    for (let at = 0; at < 20; at += 0.37) {
      const g = grant(tat, at, 2, 3, 4, 1.0);
      tat = g.tat;
      spent.push(...g.slots.map((s) => at + s));
    }
    spent.sort((a, b) => a - b);
    for (const W of [0.5, 1, 5]) {
      for (const start of spent) {
        expect(spent.filter((t) => t >= start && t < start + W).length).toBeLessThanOrEqual(3 + 2 * W);
      }
    }
    expect(spent.length).toBeGreaterThan(38); // close to the rate: 2/s for ~20 s plus the burst
  });

  test("a lease never reaches past its horizon; an empty one says when to come back", () => {
    const g = grant(10, 0, 1, 1, 5, 2);
    expect(g.slots).toEqual([]);
    expect(g.retryAfterS).toBeCloseTo(8);
  });

  test("take leases in one mutation; giveBack restores the tail only if no lease came after", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const item = { key: "discord:global", perSecond: 10, burst: 1, want: 5, horizonS: 1 };
    const [first] = await t.mutation(api.leases.take, { secret: SECRET, items: [item] });
    expect(first.slots.length).toBe(5);
    expect(first.slots[1] - first.slots[0]).toBeCloseTo(0.1);
    // Give back the last three: the next lease starts where the second token was.
    expect(await t.mutation(api.leases.giveBack, { secret: SECRET, key: item.key, seq: first.seq, tat: first.undo[2] })).toBe(true);
    const [second] = await t.mutation(api.leases.take, { secret: SECRET, items: [{ ...item, want: 1 }] });
    expect(second.slots[0]).toBeCloseTo(first.slots[2], 2);
    // A stale give-back (another lease came since) changes nothing.
    expect(await t.mutation(api.leases.giveBack, { secret: SECRET, key: item.key, seq: first.seq, tat: first.undo[0] })).toBe(false);
    vi.useRealTimers();
  });

  test("bounds are enforced", async () => {
    const t = await backend();
    const item = { key: "k", perSecond: 1, burst: 1, want: 1, horizonS: 1 };
    expect(await code(t.mutation(api.leases.take, { secret: SECRET, items: [{ ...item, want: 0 }] }))).toBe("invalid");
    expect(await code(t.mutation(api.leases.take, { secret: SECRET, items: [{ ...item, perSecond: 0 }] }))).toBe("invalid");
    expect(await code(t.mutation(api.leases.take, { secret: "wrong", items: [item] }))).toBe("unauthorized");
  });
});

const replies = (taken: { reply: string }[]) => taken.map((t) => t.reply);

describe("reply leases", () => {
  async function streamingReply(t: Backend) {
    const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "x" });
    return await t.mutation(api.threads.addMessage, {
      secret: SECRET, workspace: WS, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
    });
  }

  test("a dead owner's reply is taken over once; the old owner learns it lost it", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const reply = await streamingReply(t);
    expect(await t.mutation(api.leases.heartbeat, { secret: SECRET, owner: "a", replies: [{ workspace: WS, reply }] })).toEqual({ lost: [], stop: [] });
    // Fresh: nobody may take it.
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "b", staleS: 10, limit: 10, platforms: [] }))).toEqual([]);
    vi.advanceTimersByTime(11_000);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "b", staleS: 10, limit: 10, platforms: [] }))).toEqual([reply]);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "c", staleS: 10, limit: 10, platforms: [] }))).toEqual([]);
    expect(await t.mutation(api.leases.heartbeat, { secret: SECRET, owner: "a", replies: [{ workspace: WS, reply }] })).toEqual({ lost: [reply], stop: [] });
    expect(await t.mutation(api.leases.release, { secret: SECRET, owner: "a", workspace: WS, reply })).toBe(false);
    expect(await t.mutation(api.leases.release, { secret: SECRET, owner: "b", workspace: WS, reply })).toBe(true);
    vi.useRealTimers();
  });

  test("a streaming reply that never had an owner is taken once it stopped growing", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const reply = await streamingReply(t);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "b", staleS: 10, limit: 10, platforms: [] }))).toEqual([]);
    vi.advanceTimersByTime(11_000);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "b", staleS: 10, limit: 10, platforms: [] }))).toEqual([reply]);
    vi.advanceTimersByTime(11_000);
    // Taken, then its taker died too: the next sweep takes it again (the platform edit is idempotent).
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "c", staleS: 10, limit: 10, platforms: [] }))).toEqual([reply]);
    vi.useRealTimers();
  });

  test("a process takes over only replies of the platforms it serves", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const reply = await streamingReply(t); // in a Slack workspace
    vi.advanceTimersByTime(11_000);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "d", staleS: 10, limit: 10, platforms: ["discord"] }))).toEqual([]);
    expect(replies(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "s", staleS: 10, limit: 10, platforms: ["slack"] }))).toEqual([reply]);
    vi.useRealTimers();
  });

  test("attack: another workspace can neither own, keep alive, release nor steal a reply", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const reply = await streamingReply(t);
    const through = (workspace: string, owner: string) => ({ secret: SECRET, owner, replies: [{ workspace, reply }] });
    // Named with slack:B, T1's reply is no reply there: not owned (so not kept alive) through it.
    expect(await t.mutation(api.leases.heartbeat, through("slack:B", "thief"))).toEqual({ lost: [reply], stop: [] });
    expect(await t.mutation(api.leases.heartbeat, through(WS, "a"))).toEqual({ lost: [], stop: [] });
    vi.advanceTimersByTime(8_000);
    expect(await t.mutation(api.leases.heartbeat, through("slack:B", "a"))).toEqual({ lost: [reply], stop: [] }); // the owner's name does not help
    expect(await t.mutation(api.leases.release, { secret: SECRET, owner: "a", workspace: "slack:B", reply })).toBe(false);
    vi.advanceTimersByTime(3_000);
    // So the lease went stale as its owner stopped: the sweep takes it, and says only which reply of which workspace.
    expect(await t.mutation(api.leases.takeOver, { secret: SECRET, owner: "b", staleS: 10, limit: 10, platforms: ["slack"] })).toEqual([
      { reply, workspace: WS },
    ]);
    expect(await t.mutation(api.leases.release, { secret: SECRET, owner: "b", workspace: WS, reply })).toBe(true);
    expect(await code(t.mutation(api.leases.heartbeat, { ...through(WS, "a"), secret: "wrong" }))).toBe("unauthorized");
    expect(await code(t.mutation(api.leases.release, { secret: SECRET, owner: "a", workspace: "nope", reply }))).toBe("invalid");
    vi.useRealTimers();
  });
});
