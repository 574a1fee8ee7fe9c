// The role decisions of core/roles.py, written once in TypeScript over the same rule book
// (lib/rules.ts, generated from core/policy/rules.json). Pure functions: the mutations load the
// facts and call these inside their own transaction. tests/policy/cases.json runs against both.
import { RULES } from "./rules";

export type RoleName = (typeof RULES.roles)[number];
export type Permission = keyof typeof RULES.permissions;

/** Rank of a role name: guest 1 ... owner 5, in the rule book's order. */
export const rankOf = (name: RoleName): number => RULES.roles.indexOf(name) + 1;
export const ROLES = Object.fromEntries(RULES.roles.map((name) => [name, rankOf(name)])) as Record<RoleName, number>;
export const ROLE_NAMES: readonly string[] = ["", ...RULES.roles];
export const LOWEST: Record<Permission, number> = Object.fromEntries(
  Object.entries(RULES.permissions).map(([permission, name]) => [permission, rankOf(name as RoleName)]),
) as Record<Permission, number>;
export const INITIAL_DEFAULT = rankOf(RULES.default_role.initial);
export const HIGHEST_DEFAULT = rankOf(RULES.default_role.highest);

export const withArticle = (role: number) => `${/^[aeiou]/.test(ROLE_NAMES[role]) ? "an" : "a"} ${ROLE_NAMES[role]}`;

/** A refusal: code is stable and shared with the Python store. */
export class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Facts = { isOwner: boolean; isAdmin: boolean; isGuest?: boolean; roleIds: readonly string[] };

/** Platform facts and mappings: the highest role they give, or null. */
export function platformRole(facts: Facts, mappings: Record<string, number>): number | null {
  const candidates: number[] = [];
  if (facts.isOwner) candidates.push(rankOf(RULES.platform.is_owner));
  if (facts.isAdmin) candidates.push(rankOf(RULES.platform.is_admin));
  for (const id of facts.roleIds) if (mappings[id] !== undefined) candidates.push(mappings[id]);
  return candidates.length ? Math.max(...candidates) : null;
}

/** max(explicit, platform facts and mappings, default), the blocked flag aside. */
export function rank(explicit: number | null, facts: Facts, mappings: Record<string, number>, defaultRole: number): number {
  const candidates = [facts.isGuest ? Math.min(defaultRole, rankOf(RULES.platform.guest_default_cap)) : defaultRole];
  if (explicit !== null) candidates.push(explicit);
  const mapped = platformRole(facts, mappings);
  if (mapped !== null) candidates.push(mapped);
  return Math.max(...candidates);
}

export function allows(role: number | null, permission: Permission, guestsMayAsk = false): boolean {
  if (role === null) return false;
  if (guestsMayAsk && permission === RULES.guests_may_ask.permission) {
    return role >= Math.min(rankOf(RULES.guests_may_ask.lowest), LOWEST[permission]);
  }
  return role >= LOWEST[permission];
}

/** Everything that gives a role change's target its rank: judged exactly like an actor. */
export type Target = {
  userId: string;
  explicit: number | null;
  blocked: boolean;
  facts: Facts;
  mappings: Record<string, number>;
  defaultRole: number;
};

const rankWith = (t: Target, explicit: number | null) => rank(explicit, t.facts, t.mappings, t.defaultRole);

function sourceOf(t: Target, role: number): string {
  const owner = rankOf(RULES.platform.is_owner);
  const admin = rankOf(RULES.platform.is_admin);
  if ((t.facts.isOwner && role === owner) || (t.facts.isAdmin && role === admin)) {
    return "their platform role (change it on the platform, or block them)";
  }
  if (t.facts.roleIds.some((id) => t.mappings[id] === role)) return "a role mapping (change the mapping with `rolemap`, or block them)";
  return "the workspace default role (lower it with `settings set default_role`, or block them)";
}

const peerExempt = (actorRole: number) => actorRole === ROLES.owner && RULES.owner_may_change_peers;

function requireAdmin(actorId: string, actorRole: number | null, targetId: string, what: string): number {
  if (actorRole === null) throw new Refusal("blocked", "you are blocked in this workspace");
  if (!allows(actorRole, "manage_roles")) throw new Refusal("forbidden", `you need the ${RULES.permissions.manage_roles} role to ${what}`);
  if (actorId === targetId) throw new Refusal("self_change", `nobody can ${what} for themselves`);
  return actorRole;
}

export function checkRoleChange(a: { actorId: string; actorRole: number | null; target: Target; newRole: number | null; ownerRows: number }) {
  const actorRole = requireAdmin(a.actorId, a.actorRole, a.target.userId, "change roles");
  const current = rankWith(a.target, a.target.explicit);
  if (a.newRole !== null && a.newRole >= actorRole && !peerExempt(actorRole)) {
    throw new Refusal("escalation", `${withArticle(actorRole)} can only grant roles below ${ROLE_NAMES[actorRole]}`);
  }
  if (current >= actorRole && !peerExempt(actorRole)) {
    throw new Refusal("peer_or_higher", `${withArticle(actorRole)} cannot change the role of ${withArticle(current)}`);
  }
  if (a.target.explicit === ROLES.owner && !a.target.blocked && a.newRole !== ROLES.owner && a.ownerRows <= 1) {
    throw new Refusal("last_owner", "the last owner cannot be removed");
  }
  const after = rankWith(a.target, a.newRole);
  if (a.newRole !== null && after > a.newRole) {
    throw new Refusal("no_effect", `that changes nothing: they stay ${withArticle(after)} through ${sourceOf(a.target, after)}`);
  }
}

export function checkBlock(a: { actorId: string; actorRole: number | null; target: Target; blocked: boolean; ownerRows: number }) {
  const actorRole = requireAdmin(a.actorId, a.actorRole, a.target.userId, "block or unblock");
  const current = rankWith(a.target, a.target.explicit);
  if (current >= actorRole && !peerExempt(actorRole)) {
    throw new Refusal("peer_or_higher", `${withArticle(actorRole)} cannot block ${withArticle(current)}`);
  }
  if (a.blocked && a.target.explicit === ROLES.owner && !a.target.blocked && a.ownerRows <= 1) {
    throw new Refusal("last_owner", "the last owner cannot be blocked");
  }
}

/** The default is a grant to everyone: both the old and the new default stay below the actor's rank. */
export function checkDefaultChange(actorRole: number, oldRole: number, newRole: number) {
  if (newRole > HIGHEST_DEFAULT) {
    throw new Refusal("invalid", `the default role can be at most ${RULES.default_role.highest}; grant more person by person`);
  }
  if (oldRole >= actorRole) throw new Refusal("peer_or_higher", `${withArticle(actorRole)} cannot change a default role of ${ROLE_NAMES[oldRole]}`);
  if (newRole >= actorRole) throw new Refusal("escalation", `${withArticle(actorRole)} can only set a default role below ${ROLE_NAMES[actorRole]}`);
}

export function checkMappingChange(actorRole: number | null, existing: number | null, next: number | null) {
  if (actorRole === null) throw new Refusal("blocked", "you are blocked in this workspace");
  if (!allows(actorRole, "manage_roles")) throw new Refusal("forbidden", "you need the admin role to map roles");
  if (next !== null && next >= actorRole && !peerExempt(actorRole)) {
    throw new Refusal("escalation", `${withArticle(actorRole)} can only map roles below ${ROLE_NAMES[actorRole]}`);
  }
  if (existing !== null && existing >= actorRole && !peerExempt(actorRole)) {
    throw new Refusal("peer_or_higher", `${withArticle(actorRole)} cannot change the mapping to ${ROLE_NAMES[existing]}`);
  }
}
