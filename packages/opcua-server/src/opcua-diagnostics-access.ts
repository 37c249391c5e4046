import type { BaseNode } from "node-opcua-address-space-base";

/**
 * The permission a principal needs to read and browse the server's diagnostics beyond its own
 * session: `Server.ServerDiagnostics` (its ServerDiagnosticsSummary, SubscriptionDiagnosticsArray,
 * the SessionsDiagnosticsSummary's SessionDiagnosticsArray and SessionSecurityDiagnosticsArray,
 * and every other session's object with its SessionDiagnostics, SessionSecurityDiagnostics and
 * SubscriptionDiagnosticsArray). Checked with `system.can(principal, "opcua.diagnostics",
 * machineId)`, in the system's own role table: the default `admin` role (`*`) holds it, no other
 * default role does; a host grants it to a role of its own, e.g.
 * `roles: { ...defaultRoleTable(), support: ["read", "opcua.diagnostics"] }`.
 *
 * Without it a session still reads its own session's diagnostics (the object under
 * SessionsDiagnosticsSummary whose NodeId is its SessionId) and `ServerDiagnostics.EnabledFlag`.
 * Other sessions' diagnostics name their clients (ApplicationUri, SessionName, EndpointUrl)
 * and what they are doing. (SessionSecurityDiagnostics, with the client certificate, node-opcua
 * reserves further to its SecurityAdmin role, which Kiln gives no session: nobody reads them.) Rule sources: OPC UA Part 5, 12.12
 * (SessionSecurityDiagnosticsDataType: "because this information is security-related, it shall
 * only be accessible by authorised users"); Part 5, 6.3 (the diagnostics ObjectTypes) leaves the
 * access to the rest to the server, and Part 2's security considerations (information
 * disclosure, least privilege) and IEC 62443-3-3 CR 2.1 make it a right, not a default.
 */
export const OPCUA_DIAGNOSTICS_PERMISSION = "opcua.diagnostics";

/** `ns=0;i=2274`: Server.ServerDiagnostics. */
const SERVER_DIAGNOSTICS = 2274;
/** `ns=0;i=2294`: Server.ServerDiagnostics.EnabledFlag. */
const ENABLED_FLAG = 2294;
/** `ns=0;i=3706`: Server.ServerDiagnostics.SessionsDiagnosticsSummary. */
const SESSIONS_DIAGNOSTICS_SUMMARY = 3706;
/** Deeper than any diagnostics node (a session's SubscriptionDiagnosticsArray element's field is 5 below). */
const MAX_DEPTH = 16;

/**
 * Where a node stands with regard to the server's diagnostics:
 * - `none`: not a diagnostics node (the rule does not apply);
 * - `open`: readable by every session (ServerDiagnostics and SessionsDiagnosticsSummary
 *   themselves, which hold no value, and EnabledFlag);
 * - `{ session }`: in the diagnostics object of the session whose NodeId (SessionId) prints as `session`;
 * - `restricted`: any other diagnostics node (the summaries, the arrays of every session or subscription).
 */
export type DiagnosticsScope = "none" | "open" | "restricted" | { readonly session: string };

function isStandard(node: BaseNode, id: number): boolean {
  return node.nodeId.namespace === 0 && node.nodeId.value === id;
}

/**
 * The {@link DiagnosticsScope} of `node`, from its aggregate parents (HasComponent, HasProperty)
 * up to `Server.ServerDiagnostics`. node-opcua places each session's diagnostics object under
 * SessionsDiagnosticsSummary with the session's NodeId as its own (`ServerSession`).
 */
export function diagnosticsScopeOf(node: BaseNode): DiagnosticsScope {
  const chain: BaseNode[] = [];
  for (let at: BaseNode | null = node; at !== null && chain.length < MAX_DEPTH; at = parentOf(at)) {
    chain.push(at);
    if (!isStandard(at, SERVER_DIAGNOSTICS)) continue;
    const below = chain.length - 2;
    if (below < 0) return "open";
    const child = chain[below]!;
    if (isStandard(child, ENABLED_FLAG)) return "open";
    if (!isStandard(child, SESSIONS_DIAGNOSTICS_SUMMARY)) return "restricted";
    if (below === 0) return "open";
    const entry = chain[below - 1]!;
    // A session's object (an Object); the summary's arrays of every session are Variables.
    return entry.nodeClass === NODE_CLASS_OBJECT ? { session: entry.nodeId.toString() } : "restricted";
  }
  return "none";
}

/**
 * What a session may do with a node as far as the server's diagnostics go, the one rule every
 * service asks (issue 20, F4 and fix20e):
 * - `allowed`: not a diagnostics node, an open one (ServerDiagnostics, SessionsDiagnosticsSummary,
 *   EnabledFlag), a node of the session's own diagnostics object, or any diagnostics node for a
 *   principal holding {@link OPCUA_DIAGNOSTICS_PERMISSION} (`mayDiagnose`, asked only when needed);
 * - `denied`: a standard diagnostics node (namespace 0: the summary, the arrays of every session and
 *   subscription) that every OPC UA server has: it exists for everyone, its value is refused
 *   `BadUserAccessDenied` and Browse leaves it out;
 * - `hidden`: a node the server made for another session or its subscriptions (another session's
 *   diagnostics object and all under it, an array's element node): for this session it does not
 *   exist. Every service answers as for an unknown NodeId (`BadNodeIdUnknown`, no reference, no
 *   match, the NodeId given back by RegisterNodes): its NodeId, BrowseName and DisplayName (the
 *   SessionName its client chose) and how many there are stay the other sessions' own.
 */
export type DiagnosticsAccess = "allowed" | "denied" | "hidden";

/** The {@link DiagnosticsAccess} of `node` for the session whose NodeId prints as `sessionId`. */
export function diagnosticsAccessOf(node: BaseNode, sessionId: string, mayDiagnose: () => boolean): DiagnosticsAccess {
  // A node node-opcua disposed (a closed session's or deleted subscription's diagnostics, still
  // named by a monitored item or a continuation point) exists for nobody.
  if (isDisposedNode(node)) return "hidden";
  const scope = diagnosticsScopeOf(node);
  if (scope === "none" || scope === "open") return "allowed";
  if (scope !== "restricted" && scope.session === sessionId) return "allowed";
  if (mayDiagnose()) return "allowed";
  return scope === "restricted" && node.nodeId.namespace === 0 ? "denied" : "hidden";
}

/**
 * Whether node-opcua disposed `node` (removed from its address space): its private data is gone,
 * and node-opcua's own accessors (`addressSpace`, `isDisposed()`) then throw. A monitored item or a
 * continuation point may still name it (another session's diagnostics after that session closed);
 * every check of such a node must ask this first, or the error escapes from a publish timer
 * (adv20e F1: an uncaught TypeError that ended the process).
 */
export function isDisposedNode(node: BaseNode): boolean {
  try {
    return !node.addressSpace;
  } catch {
    return true;
  }
}

/** The node's aggregate parent (HasComponent, HasProperty), or null. */
function parentOf(node: BaseNode): BaseNode | null {
  const parent = node.parentNodeId;
  return parent === undefined ? null : node.addressSpace.findNode(parent);
}

/** `NodeClass.Object` (OPC UA Part 3, 8.29), without loading node-opcua. */
const NODE_CLASS_OBJECT = 1;
