import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

// Fields that a function takes whole as its arguments are declared once here, for the table and the function.

/** A 👍/👎 with what it answered (feedback.ts). */
export const feedbackFields = {
  workspace: v.string(),
  replyKey: v.string(),
  user: v.string(),
  rating: v.union(v.literal("up"), v.literal("down")),
  reason: v.string(),
  question: v.string(),
  answer: v.string(),
  sources: v.array(v.string()),
  model: v.string(),
};

/** What a click on a finished reply's buttons needs, under the reply's ref (controls.ts). */
export const replyControlFields = {
  workspace: v.string(),
  ref: v.string(),
  asker: v.string(),
  question: v.string(),
  context: v.string(),
  state: v.union(v.literal("complete"), v.literal("failed"), v.literal("cancelled")),
  answer: v.string(),
  sources: v.array(v.string()),
  model: v.string(),
};

/** A Slack installation, its bot token sealed by the bot (installations.ts). */
export const installationFields = {
  sealedToken: v.string(),
  botId: v.string(),
  botUserId: v.string(),
  botScopes: v.string(),
  appId: v.string(),
  installerUserId: v.string(),
  teamName: v.string(),
  enterpriseId: v.string(),
  installedAt: v.number(),
};

// Workspaces are referenced by their key ("slack:T123", "discord:456") so every row can be
// found with one index lookup and no joins.
export default defineSchema({
  workspaces: defineTable({
    key: v.string(),
    platform: v.string(),
    externalId: v.string(),
    settings: v.object({
      systemPrompt: v.string(),
      defaultRole: v.number(),
      guestsMayAsk: v.boolean(),
      answerWithoutMention: v.boolean(),
      model: v.string(),
      quotas: v.record(v.string(), v.number()),
      threads: v.string(),
    }),
  })
    .index("by_key", ["key"])
    .index("by_platform_external", ["platform", "externalId"]),
  members: defineTable({
    workspace: v.string(),
    user: v.string(),
    role: v.union(v.number(), v.null()),
    blocked: v.boolean(),
  }).index("by_workspace_user", ["workspace", "user"]),
  roleMappings: defineTable({ workspace: v.string(), platformRole: v.string(), role: v.number() }).index(
    "by_workspace_role",
    ["workspace", "platformRole"],
  ),
  channelRules: defineTable({
    workspace: v.string(),
    channel: v.string(),
    mode: v.union(v.literal("allow"), v.literal("deny"), v.literal("default")),
    withoutMention: v.boolean(),
  }).index("by_workspace_channel", ["workspace", "channel"]),
  feedback: defineTable({ ...feedbackFields, at: v.number() })
    .index("by_workspace_reply_user", ["workspace", "replyKey", "user"])
    .index("by_workspace_rating_at", ["workspace", "rating", "at"]),
  replyControls: defineTable({ ...replyControlFields, updatedAt: v.number() })
    .index("by_workspace_ref", ["workspace", "ref"])
    .index("by_updatedAt", ["updatedAt"]),
  channelPersonas: defineTable({
    workspace: v.string(),
    channel: v.string(),
    systemPrompt: v.string(),
    model: v.string(),
  }).index("by_workspace_channel", ["workspace", "channel"]),
  threads: defineTable({ workspace: v.string(), channel: v.string(), externalThread: v.string() }).index(
    "by_workspace_channel_thread",
    ["workspace", "channel", "externalThread"],
  ),
  messages: defineTable({
    thread: v.id("threads"),
    createdAt: v.number(),
    updatedAt: v.number(),
    role: v.union(v.literal("user"), v.literal("assistant")),
    text: v.string(),
    status: v.union(v.literal("streaming"), v.literal("complete"), v.literal("failed"), v.literal("cancelled")),
    authorId: v.string(),
    sources: v.array(
      v.object({ index: v.number(), title: v.string(), uri: v.string(), text: v.string(), score: v.number() }),
    ),
    // Cache reads and writes are optional so rows written before they were kept stay valid.
    usage: v.object({
      inputTokens: v.number(),
      outputTokens: v.number(),
      cacheReadTokens: v.optional(v.number()),
      cacheWriteTokens: v.optional(v.number()),
    }),
    platformMessageId: v.string(),
    idempotencyKey: v.optional(v.string()),
  })
    .index("by_thread_createdAt", ["thread", "createdAt"])
    .index("by_idempotency_key", ["idempotencyKey"])
    .index("by_status_updatedAt", ["status", "updatedAt"]),
  streamDeltas: defineTable({ message: v.id("messages"), seq: v.number(), text: v.string() }).index(
    "by_message_seq",
    ["message", "seq"],
  ),
  eventClaims: defineTable({ key: v.string(), claimant: v.string(), at: v.number() }).index("by_key", ["key"]).index("by_at", ["at"]),
  documents: defineTable({
    workspace: v.string(),
    sourceUri: v.string(),
    title: v.string(),
    contentHash: v.string(),
    chunkCount: v.number(),
    status: v.union(v.literal("ingesting"), v.literal("ready"), v.literal("failed")),
    updatedAt: v.number(),
  }).index("by_workspace_uri", ["workspace", "sourceUri"]),
  auditLog: defineTable({
    workspace: v.string(),
    at: v.number(),
    actor: v.string(),
    action: v.string(),
    detail: v.string(),
  }).index("by_workspace_at", ["workspace", "at"]),
  // What Slack or Discord itself said about a user (facts:refresh), trusted for RULES.platform_facts.ttl_s.
  platformFacts: defineTable({
    workspace: v.string(),
    user: v.string(),
    isOwner: v.boolean(),
    isAdmin: v.boolean(),
    isGuest: v.boolean(),
    roleIds: v.array(v.string()),
    checkedAt: v.number(),
  }).index("by_workspace_user", ["workspace", "user"]),
  usage: defineTable({ workspace: v.string(), user: v.string(), window: v.string(), count: v.number() }).index(
    "by_workspace_user_window",
    ["workspace", "user", "window"],
  ),
  // The token ledger (lib/usage.ts, charged by threads:completeMessage): tokens per day, user, channel
  // and model; running totals per period ("month:YYYY-MM", "day:YYYY-MM-DD:<user>") with the highest
  // budget threshold announced; budgets per scope ("month" or a role label, tokens per user per day).
  tokenUsage: defineTable({
    workspace: v.string(),
    day: v.string(),
    user: v.string(),
    channel: v.string(),
    model: v.string(),
    inputTokens: v.number(),
    outputTokens: v.number(),
    cacheReadTokens: v.number(),
    cacheWriteTokens: v.number(),
  }).index("by_workspace_day", ["workspace", "day", "user", "channel", "model"]),
  tokenTotals: defineTable({ workspace: v.string(), period: v.string(), tokens: v.number(), noticed: v.number() }).index(
    "by_workspace_period",
    ["workspace", "period"],
  ),
  tokenBudgets: defineTable({ workspace: v.string(), scope: v.string(), tokens: v.number() }).index("by_workspace_scope", [
    "workspace",
    "scope",
  ]),
  // Platform budgets shared by every bot process (leases.ts): GCRA state per scope.
  // `demands`: the processes' requests still waiting for tokens (leases.ts demandShare).
  budgetBuckets: defineTable({
    key: v.string(),
    tat: v.number(),
    seq: v.number(),
    demands: v.optional(v.array(v.object({ owner: v.string(), since: v.number(), at: v.number() }))),
  }).index("by_key", ["key"]),
  // Where each reply is on its platform, while it has not ended there (places.ts).
  replyPlaces: defineTable({
    reply: v.string(),
    workspace: v.string(),
    platform: v.string(),
    place: v.string(),
    updatedAt: v.number(),
  })
    .index("by_reply", ["reply"])
    .index("by_updatedAt", ["updatedAt"]),
  // Questions claimed and not yet answered on the platform: who holds each, and the question (questions.ts).
  heldQuestions: defineTable({
    key: v.string(),
    workspace: v.string(),
    platform: v.string(),
    message: v.string(),
    place: v.string(),
    owner: v.string(),
    claimant: v.string(),
    heartbeatAt: v.number(),
  })
    .index("by_key", ["key"])
    .index("by_heartbeat", ["heartbeatAt"]),
  // A streaming reply's ref (its buttons) and who asked; `stopBy` once a Stop was asked for (stops.ts).
  replyStops: defineTable({
    workspace: v.string(),
    ref: v.string(),
    reply: v.id("messages"),
    asker: v.string(),
    stopBy: v.string(),
    at: v.number(),
  })
    .index("by_workspace_ref", ["workspace", "ref"])
    .index("by_reply", ["reply"])
    .index("by_at", ["at"]),
  // Who is streaming a reply, and when it last said it is alive (leases.ts).
  replyLeases: defineTable({ message: v.id("messages"), owner: v.string(), heartbeatAt: v.number() })
    .index("by_message", ["message"])
    .index("by_heartbeat", ["heartbeatAt"]),
  // Slack workspaces that installed the app (installations.ts): the bot token sealed by the bot (Fernet),
  // never in the clear here; one-use OAuth states until they expire.
  installations: defineTable({ workspace: v.string(), ...installationFields }).index("by_workspace", ["workspace"]),
  oauthStates: defineTable({ state: v.string(), expiresAt: v.number() })
    .index("by_state", ["state"])
    .index("by_expiry", ["expiresAt"]),
  // The first result of each mutation request (see serviceMutation): a retry gets it back instead of a second write.
  requests: defineTable({ requestId: v.string(), result: v.any(), at: v.number() })
    .index("by_request", ["requestId"])
    .index("by_at", ["at"]),
});
