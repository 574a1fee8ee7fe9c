import { describe, expect, test, vi } from "vitest";
import { api } from "../functions/_generated/api";
import { RULES } from "../functions/lib/rules";
import { SECRET, WS, backend, code } from "./setup";

const record = {
  workspace: WS,
  ref: "a1b2c3",
  asker: "U-member",
  question: "when do we deploy?",
  context: "{}",
  state: "complete" as const,
  answer: "On Fridays.",
  sources: ["https://docs/deploy"],
  model: "m",
};

describe("reply controls", () => {
  test("need the service secret to keep or read", async () => {
    const t = await backend();
    expect(await code(t.mutation(api.controls.put, { ...record, secret: "nope" }))).toBe("unauthorized");
    await t.mutation(api.controls.put, { ...record, secret: SECRET });
    expect(await code(t.query(api.controls.get, { secret: "nope", workspace: WS, ref: "a1b2c3" }))).toBe("unauthorized");
  });

  test("are found only in the workspace they were kept in", async () => {
    const t = await backend();
    await t.mutation(api.controls.put, { ...record, secret: SECRET });
    const mine = await t.query(api.controls.get, { secret: SECRET, workspace: WS, ref: "a1b2c3" });
    expect(mine?.asker).toBe("U-member");
    expect(await t.query(api.controls.get, { secret: SECRET, workspace: "slack:B", ref: "a1b2c3" })).toBeNull();
  });

  test("are bounded", async () => {
    const t = await backend();
    const put = (changes: Partial<typeof record>) => t.mutation(api.controls.put, { ...record, ...changes, secret: SECRET });
    expect(await code(put({ answer: "x".repeat(100_000) }))).toBe("invalid");
    expect(await code(put({ workspace: "no-platform" }))).toBe("invalid");
    expect(await code(put({ ref: "" }))).toBe("invalid");
  });

  test("are pruned once their reply ended longer ago than the rule book keeps them", async () => {
    vi.useFakeTimers();
    const t = await backend();
    const get = (ref: string) => t.query(api.controls.get, { secret: SECRET, workspace: WS, ref });
    await t.mutation(api.controls.put, { ...record, ref: "old", secret: SECRET });
    vi.advanceTimersByTime((RULES.retention.reply_controls_s - 60) * 1000);
    await t.mutation(api.controls.put, { ...record, ref: "newer", secret: SECRET });
    expect(await get("old")).not.toBeNull(); // within the retention: kept
    vi.advanceTimersByTime(120_000);
    await t.mutation(api.controls.put, { ...record, ref: "newest", secret: SECRET });
    expect(await get("old")).toBeNull(); // pruned by a later put
    expect((await get("newer"))?.ref).toBe("newer");
    expect((await get("newest"))?.ref).toBe("newest");
    vi.useRealTimers();
  });
});
