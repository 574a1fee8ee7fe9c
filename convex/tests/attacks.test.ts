// The reply attacks of issue #11 (class 3) with values only a direct caller can send (NaN, Infinity).
import { describe, expect, test } from "vitest";
import { api } from "../functions/_generated/api";
import { type Backend, SECRET, WS, backend, code } from "./setup";

async function liveReply(t: Backend) {
  const thread = await t.mutation(api.threads.threadFor, { secret: SECRET, workspace: WS, channel: "C", externalThread: "a" });
  return await t.mutation(api.threads.addMessage, {
    secret: SECRET, workspace: WS, thread, role: "assistant", text: "", authorId: "", status: "streaming", idempotencyKey: "",
  });
}

describe("completing a reply", () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1, 1.5]) {
    test(`usage ${bad} and source score ${bad} are refused`, async () => {
      const t = await backend();
      const id = await liveReply(t);
      const complete = (usage: { inputTokens: number; outputTokens: number }, score: number) =>
        t.mutation(api.threads.completeMessage, {
          secret: SECRET, workspace: WS, id, text: "x", status: "complete", platformMessageId: "", usage,
          sources: [{ index: 1, title: "t", uri: "u", text: "s", score }],
        });
      expect(await code(complete({ inputTokens: bad, outputTokens: 0 }, 0.5))).toBe("invalid");
      expect(await code(complete({ inputTokens: 0, outputTokens: bad }, 0.5))).toBe("invalid");
      if (!Number.isInteger(bad) && bad !== 1.5) expect(await code(complete({ inputTokens: 0, outputTokens: 0 }, bad))).toBe("invalid");
      expect((await t.query(api.threads.message, { secret: SECRET, workspace: WS, id }))?.status).toBe("streaming");
    });
  }
});
