import { NodeId, coerceNodeId } from "node-opcua-client";
import { verifiedNamespaces, type NamespaceTable } from "./opcua-namespace-table";

/**
 * A tag address parsed from its text, not yet bound to a server: the NodeId as written, and
 * the namespace URI when the address names one (`nsu=`), to be looked up in the server's
 * namespace array after connecting.
 */
export interface OpcuaNodeAddress {
  /** The address as the user wrote it (for messages). */
  readonly text: string;
  /** The namespace URI, when the address uses `nsu=` or the object form's `namespaceUri`. */
  readonly namespaceUri?: string;
  /** The NodeId; when {@link namespaceUri} is set, its namespace index is a placeholder (0). */
  readonly nodeId: NodeId;
}

const NSU_PREFIX = /^nsu=/i;
const IDENTIFIER_START = /;([isgb])=/;

/**
 * Parses a NodeId in any of the forms OPC UA tools print: `ns=2;s=Reactor.Pressure`,
 * `ns=3;i=1001`, `ns=4;g=<guid>`, `ns=1;b=<base64>`, `i=2258` (namespace 0), or
 * `nsu=<namespace uri>;s=Reactor.Pressure`. The object form `{ nodeId, namespaceUri? }` takes a
 * NodeId string and, optionally, a namespace URI that replaces its namespace index.
 *
 * @throws Error with a message saying what is wrong (callers turn it into a validation issue).
 */
export function parseNodeAddress(address: unknown): OpcuaNodeAddress {
  if (typeof address === "string") return parseText(address.trim());
  if (typeof address === "object" && address !== null && !Array.isArray(address)) {
    const { nodeId, namespaceUri, ...rest } = address as Record<string, unknown>;
    const unknownKeys = Object.keys(rest);
    if (unknownKeys.length > 0) throw new Error(`unknown address field(s): ${unknownKeys.join(", ")}`);
    if (typeof nodeId !== "string" || nodeId.trim() === "") throw new Error("nodeId must be a non-empty string");
    if (namespaceUri === undefined) return parseText(nodeId.trim());
    if (typeof namespaceUri !== "string" || namespaceUri === "") {
      throw new Error("namespaceUri must be a non-empty string");
    }
    const parsed = parseText(nodeId.trim());
    return {
      text: `nsu=${namespaceUri};${identifierText(parsed.nodeId)}`,
      namespaceUri,
      nodeId: parsed.nodeId,
    };
  }
  throw new Error("an OPC UA address must be a NodeId string such as ns=2;s=Reactor.Pressure");
}

function parseText(text: string): OpcuaNodeAddress {
  if (text === "") throw new Error("the address is empty");
  if (NSU_PREFIX.test(text)) {
    const body = text.slice(4);
    const match = IDENTIFIER_START.exec(body);
    if (!match || match.index === 0) {
      throw new Error(`"${text}" is not a valid NodeId: expected nsu=<namespace uri>;s=<name> (or i=, g=, b=)`);
    }
    const namespaceUri = body.slice(0, match.index);
    const nodeId = coerce(body.slice(match.index + 1), text);
    return { text, namespaceUri, nodeId };
  }
  return { text, nodeId: coerce(text, text) };
}

function coerce(nodeIdText: string, original: string): NodeId {
  try {
    return coerceNodeId(nodeIdText);
  } catch {
    throw new Error(
      `"${original}" is not a valid NodeId: use ns=<index>;s=<name>, ns=<index>;i=<number>, ns=<index>;g=<guid>, ns=<index>;b=<base64> or nsu=<uri>;s=<name>`,
    );
  }
}

/**
 * Binds a parsed address to a server's namespace table. Returns undefined when the address
 * names a namespace URI the server does not have; a numeric `ns=` address never consults the
 * table. Throws as {@link verifiedNamespaces} for an `nsu=` address while the table is unread.
 */
export function resolveNodeAddress(address: OpcuaNodeAddress, table: NamespaceTable): NodeId | undefined {
  if (address.namespaceUri === undefined) return address.nodeId;
  const index = verifiedNamespaces(table, `resolve ${address.text}`).indexOf(address.namespaceUri);
  if (index < 0) return undefined;
  return new NodeId(address.nodeId.identifierType, address.nodeId.value, index);
}

/** Why `address` cannot be bound against `table`, with the status a tag then has; undefined when it can. */
export function namespaceProblem(
  address: OpcuaNodeAddress,
  table: NamespaceTable,
): { readonly statusCode: number; readonly reason: string; readonly unread: boolean } | undefined {
  if (address.namespaceUri === undefined) return undefined;
  if (table.namespacesUnread !== undefined) {
    return {
      statusCode: 0x80320000, // BadWaitingForInitialData
      reason: `namespace table not read yet: ${table.namespacesUnread}`,
      unread: true,
    };
  }
  if (verifiedNamespaces(table, "bind an address").includes(address.namespaceUri)) return undefined;
  return {
    statusCode: 0x80340000, // BadNodeIdUnknown
    reason: `namespace ${address.namespaceUri} is not on the server`,
    unread: false,
  };
}

/**
 * Binds `address` to `table`: undefined when {@link namespaceProblem} names a problem (a
 * namespace URI the server does not have, or a table not read yet on this session). Numeric
 * `ns=` addresses never depend on the table.
 */
export function bindNodeAddress(address: OpcuaNodeAddress, table: NamespaceTable): NodeId | undefined {
  if (namespaceProblem(address, table)) return undefined;
  return resolveNodeAddress(address, table);
}

/**
 * Formats a NodeId as a portable address: `nsu=<uri>;s=...` for every namespace but 0 (whose
 * index is fixed by the standard), so the address survives servers that order namespaces
 * differently. Namespace 0 needs no table; any other throws as {@link verifiedNamespaces} while
 * the table is unread on the current session.
 */
export function formatNodeAddress(nodeId: NodeId, table: NamespaceTable): string {
  const uri = nodeId.namespace === 0 ? undefined : verifiedNamespaces(table, "format an address")[nodeId.namespace];
  if (uri === undefined) return nodeId.namespace === 0 ? identifierText(nodeId) : nodeId.toString();
  return `nsu=${uri};${identifierText(nodeId)}`;
}

function identifierText(nodeId: NodeId): string {
  const text = nodeId.toString();
  // node-opcua prints "ns=<n>;<type>=<value>"; keep the identifier part.
  return text.replace(/^ns=\d+;/, "");
}
