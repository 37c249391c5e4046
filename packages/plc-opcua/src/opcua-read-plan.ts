import { AttributeIds, type ReadValueIdOptions } from "node-opcua-client";
import type { NamespaceTable } from "./opcua-namespace-table";
import { namespaceProblem, resolveNodeAddress, type OpcuaNodeAddress } from "./opcua-node-id";

/** One ReadRequest of a plan: the nodes to read and, for each, the index of its tag. */
export interface ReadChunk {
  readonly nodesToRead: readonly ReadValueIdOptions[];
  readonly indexes: readonly number[];
}

/**
 * How one scan group is read on one connection: its tags split into ReadRequests no larger
 * than the server's MaxNodesPerRead, and the tags whose namespace the server does not have.
 */
export interface ReadPlan {
  /** The connection generation the plan was made for (namespace indexes and limits). */
  readonly generation: number;
  readonly chunks: readonly ReadChunk[];
  /** Tags that cannot be read on this server, by index, with their status code and the reason. */
  readonly unresolved: ReadonlyMap<number, { readonly statusCode: number; readonly reason: string }>;
}

/**
 * Plans the reads of `addresses` (one per tag, in tag order) against a server with the given
 * namespace table, in chunks of at most `maxNodesPerRead` nodes (0: no limit). While the table is
 * not read yet on this session, every `nsu=` tag is unresolved (BadWaitingForInitialData).
 */
export function planReads(
  addresses: readonly OpcuaNodeAddress[],
  table: NamespaceTable,
  maxNodesPerRead: number,
  generation: number,
): ReadPlan {
  const unresolved = new Map<number, { readonly statusCode: number; readonly reason: string }>();
  const nodes: ReadValueIdOptions[] = [];
  const indexes: number[] = [];
  addresses.forEach((address, index) => {
    const problem = namespaceProblem(address, table);
    const nodeId = problem ? undefined : resolveNodeAddress(address, table);
    if (!nodeId) {
      unresolved.set(index, {
        statusCode: problem?.statusCode ?? 0x80340000,
        reason: problem?.reason ?? `namespace ${address.namespaceUri} is not on the server`,
      });
      return;
    }
    nodes.push({ nodeId, attributeId: AttributeIds.Value });
    indexes.push(index);
  });
  const size = maxNodesPerRead > 0 ? maxNodesPerRead : Math.max(1, nodes.length);
  const chunks: ReadChunk[] = [];
  for (let start = 0; start < nodes.length; start += size) {
    chunks.push({ nodesToRead: nodes.slice(start, start + size), indexes: indexes.slice(start, start + size) });
  }
  return { generation, chunks, unresolved };
}
