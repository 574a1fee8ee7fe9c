// A loopback server that runs the real Convex functions in convex-test and answers the deployment
// HTTP API (POST /api/query, /api/mutation, /api/action) the way a Convex deployment does, so the
// Python ConvexStore can be tested end to end against the real functions.
//
//   CHATBOT_SERVICE_SECRET=... node --import tsx testserver/server.ts [port]   (prints "listening on URL")
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { convexTest } from "convex-test";
import { internal } from "../functions/_generated/api";
import schema from "../functions/schema";

const functionsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "functions");

function moduleMap(dir: string): Record<string, () => Promise<unknown>> {
  const entries: Record<string, () => Promise<unknown>> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(entries, moduleMap(path));
    else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      entries[`./functions/${relative(functionsDir, path)}`] = () => import(pathToFileURL(path).href);
    }
  }
  return entries;
}

const modules = moduleMap(functionsDir);
let t = convexTest(schema, modules);

// A deployment runs mutations as serializable transactions; here one at a time gives the same guarantee.
let mutations: Promise<unknown> = Promise.resolve();
function serially<T>(run: () => Promise<T>): Promise<T> {
  const next = mutations.then(run, run);
  mutations = next.catch(() => undefined);
  return next;
}

function reference(path: string) {
  const [module, name] = path.split(":");
  if (!module || !name) throw new Error(`function path must look like module:function, got ${path}`);
  let ref: any = anyApi;
  for (const part of module.split("/")) ref = ref[part];
  return ref[name];
}

async function body(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

function send(res: ServerResponse, status: number, payload: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(payload));
}

const server = createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/test/reset") {
    // Tests start from an empty deployment; a real deployment has no such route.
    await mutations;
    t = convexTest(schema, modules);
    send(res, 200, { status: "success", value: null });
    return;
  }
  if (req.method === "POST" && req.url === "/test/env") {
    // The deployment's environment (bot tokens, platform API URLs): a real deployment sets it with `npx convex env set`.
    const changes = (await body(req)) as Record<string, string | null>;
    for (const [name, value] of Object.entries(changes)) {
      if (value === null) delete process.env[name];
      else process.env[name] = value;
    }
    send(res, 200, { status: "success", value: null });
    return;
  }
  if (req.method === "POST" && req.url === "/test/facts") {
    // What the platform confirmed about a user, recorded as facts:refresh records it after asking Slack
    // or Discord: suites about the role rules state their users' platform facts this way (the asking
    // itself is tested against the loopback platforms). A real deployment has no such route.
    const facts = await body(req);
    await serially(() => t.mutation(internal.facts.store, facts));
    send(res, 200, { status: "success", value: null });
    return;
  }
  const kind = req.method === "POST" ? /^\/api\/(query|mutation|action)$/.exec(req.url ?? "")?.[1] : undefined;
  if (!kind) {
    send(res, 404, { code: "NotFound", message: `no route ${req.method} ${req.url}` });
    return;
  }
  let request: any;
  try {
    request = await body(req);
  } catch {
    send(res, 400, { code: "BadJsonBody", message: "the body is not JSON" });
    return;
  }
  try {
    const ref = reference(String(request.path));
    const args = request.args ?? {};
    const value =
      kind === "query" ? await t.query(ref, args) : kind === "mutation" ? await serially(() => t.mutation(ref, args)) : await t.action(ref, args);
    send(res, 200, { status: "success", value: value ?? null, logLines: [] });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const errorData = error instanceof ConvexError ? error.data : undefined;
    send(res, errorData === undefined ? 500 : 400, { status: "error", errorMessage: message, errorData, logLines: [] });
  }
});

const port = Number(process.argv[2] ?? 0);
server.listen(port, "127.0.0.1", () => {
  const address = server.address();
  const actual = typeof address === "object" && address ? address.port : port;
  console.log(`listening on http://127.0.0.1:${actual}`);
});
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => server.close(() => process.exit(0)));
