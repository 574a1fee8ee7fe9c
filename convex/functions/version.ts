// Which functions this deployment runs: the fingerprint of their sources, written by scripts/codegen.mjs.
// `chatbot doctor` compares it with the checkout's, so a stale deployment is found before users meet it.
import { SOURCE_HASH } from "./_generated/version.js";
import { serviceQuery } from "./lib/security";

export const version = serviceQuery({
  args: {},
  handler: async () => ({ sourceHash: SOURCE_HASH }),
});
