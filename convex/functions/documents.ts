// Document metadata and pointers only: the chunks and their vectors live in the retriever (Weaviate).
import { v } from "convex/values";
import { acting, actorValidator, audit, bounded, boundedInt, requirePermission, serviceMutation, serviceQuery, workspaceKey } from "./lib/security";

const docStatus = v.union(v.literal("ingesting"), v.literal("ready"), v.literal("failed"));

function present(row: { sourceUri: string; title: string; contentHash: string; chunkCount: number; status: string; updatedAt: number }) {
  const { sourceUri, title, contentHash, chunkCount, status, updatedAt } = row;
  return { sourceUri, title, contentHash, chunkCount, status, updatedAt };
}

export const document = serviceQuery({
  args: { workspace: v.string(), sourceUri: v.string() },
  handler: async (ctx, { workspace, sourceUri }) => {
    workspaceKey(workspace);
    bounded(sourceUri, "uri", "source uri");
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
    workspaceKey(workspace);
    const rows = await ctx.db
      .query("documents")
      .withIndex("by_workspace_uri", (q) => q.eq("workspace", workspace))
      .take(5000);
    return rows.map(present);
  },
});

export const putDocument = serviceMutation({
  name: "documents:putDocument",
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
    bounded(args.sourceUri, "uri", "source uri");
    bounded(args.title, "title", "title", { allowEmpty: true });
    bounded(args.contentHash, "content_hash", "content hash", { allowEmpty: true });
    boundedInt(args.chunkCount, "chunk_count", "chunk count");
    return await acting(ctx, args.workspace, args.actor.userId, `document put ${args.sourceUri}`, async () => {
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
      // Every state a document enters is audited, `ingesting` over a ready one included.
      await audit(ctx, args.workspace, args.actor.userId, `document.${args.status}`, args.sourceUri);
      return null;
    });
  },
});

/** True if the document existed (its deletion is audited); false changes and audits nothing. */
export const deleteDocument = serviceMutation({
  name: "documents:deleteDocument",
  args: { workspace: v.string(), actor: actorValidator, sourceUri: v.string() },
  handler: async (ctx, { workspace, actor, sourceUri }) => {
    bounded(sourceUri, "uri", "source uri");
    return await acting(ctx, workspace, actor.userId, `document delete ${sourceUri}`, async () => {
      await requirePermission(ctx, workspace, actor, "manage_knowledge");
      const existing = await ctx.db
        .query("documents")
        .withIndex("by_workspace_uri", (q) => q.eq("workspace", workspace).eq("sourceUri", sourceUri))
        .unique();
      if (!existing) return false;
      await ctx.db.delete(existing._id);
      await audit(ctx, workspace, actor.userId, "document.delete", sourceUri);
      return true;
    });
  },
});
