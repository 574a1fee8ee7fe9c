// Document metadata and pointers only: the chunks and their vectors live in the retriever (Weaviate).
import { v } from "convex/values";
import { LIMITS, actorValidator, audit, bounded, boundedInt, requirePermission, serviceMutation, serviceQuery } from "./lib/security";

const docStatus = v.union(v.literal("ingesting"), v.literal("ready"), v.literal("failed"));

function present(row: { sourceUri: string; title: string; contentHash: string; chunkCount: number; status: string; updatedAt: number }) {
  const { sourceUri, title, contentHash, chunkCount, status, updatedAt } = row;
  return { sourceUri, title, contentHash, chunkCount, status, updatedAt };
}

export const document = serviceQuery({
  args: { workspace: v.string(), sourceUri: v.string() },
  handler: async (ctx, { workspace, sourceUri }) => {
    const row = await ctx.db
      .query("documents")
      .withIndex("by_workspace_uri", (q) => q.eq("workspace", workspace).eq("sourceUri", sourceUri))
      .unique();
    return row ? present(row) : null;
  },
});

export const documents = serviceQuery({
  args: { workspace: v.string() },
  handler: async (ctx, { workspace }) => {
    const rows = await ctx.db
      .query("documents")
      .withIndex("by_workspace_uri", (q) => q.eq("workspace", workspace))
      .take(5000);
    return rows.map(present);
  },
});

export const putDocument = serviceMutation({
  args: {
    workspace: v.string(),
    actor: actorValidator,
    sourceUri: v.string(),
    title: v.string(),
    contentHash: v.string(),
    chunkCount: v.number(),
    status: docStatus,
  },
  handler: async (ctx, args) => {
    bounded(args.sourceUri, LIMITS.uri, "source uri");
    bounded(args.title, LIMITS.title, "title", { allowEmpty: true });
    bounded(args.contentHash, 128, "content hash", { allowEmpty: true });
    boundedInt(args.chunkCount, 0, 100_000, "chunk count");
    await requirePermission(ctx, args.workspace, args.actor, "manage_knowledge");
    const row = {
      workspace: args.workspace,
      sourceUri: args.sourceUri,
      title: args.title,
      contentHash: args.contentHash,
      chunkCount: args.chunkCount,
      status: args.status,
      updatedAt: Date.now() / 1000,
    };
    const existing = await ctx.db
      .query("documents")
      .withIndex("by_workspace_uri", (q) => q.eq("workspace", args.workspace).eq("sourceUri", args.sourceUri))
      .unique();
    if (existing) await ctx.db.replace(existing._id, row);
    else await ctx.db.insert("documents", row);
    if (args.status !== "ingesting") await audit(ctx, args.workspace, args.actor.userId, `document.${args.status}`, args.sourceUri);
  },
});

export const deleteDocument = serviceMutation({
  args: { workspace: v.string(), actor: actorValidator, sourceUri: v.string() },
  handler: async (ctx, { workspace, actor, sourceUri }) => {
    await requirePermission(ctx, workspace, actor, "manage_knowledge");
    const existing = await ctx.db
      .query("documents")
      .withIndex("by_workspace_uri", (q) => q.eq("workspace", workspace).eq("sourceUri", sourceUri))
      .unique();
    if (existing) await ctx.db.delete(existing._id);
    await audit(ctx, workspace, actor.userId, "document.delete", sourceUri);
  },
});
