import { KilnError, TAG_ARRAY_LENGTH_MAX, type BrowsedVariable } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  BrowseDirection,
  DataType,
  NodeClass,
  NodeClassMask,
  ObjectIds,
  ReferenceTypeIds,
  browseAll,
  resolveNodeId,
  type BrowseDescriptionOptions,
  type NodeId,
  type ReferenceDescription,
} from "node-opcua-client";
import type { Connection } from "./opcua-connection";
import { statusNameOf } from "./opcua-errors";
import { formatNodeAddress } from "./opcua-node-id";
import { tagDataTypeOf } from "./opcua-values";

const MAX_BROWSED_NODES = 100_000;
/** DataType, UserAccessLevel, ValueRank, ArrayDimensions. */
const ATTRIBUTES_PER_VARIABLE = 4;

/**
 * Lists the variables under `rootId`, following hierarchical references through objects and
 * folders (breadth first, in batches of the server's MaxNodesPerBrowse, at most 100 000 nodes),
 * with each variable's data type, access, value rank and array dimensions (a one-dimensional
 * array of known length proposes `arrayLength`, docs/adr/0038-array-tags.md). Each result
 * carries an `nsu=` address.
 *
 * @throws KilnError `KILN_NOT_FOUND` when the server refuses to browse the root itself
 *   (BadNodeIdUnknown: no such node), with `details.statusName`.
 */
export async function browseVariables(
  connection: Connection,
  rootId: NodeId,
  skipServerObject: boolean,
): Promise<BrowsedVariable[]> {
  // Node ids are namespace indexes of this session's table: a table re-read as different while
  // the browse runs (the generation bump) makes them unformattable (docs/adr/0022, fix13w).
  const generation = connection.generation;
  const serverObject = resolveNodeId(ObjectIds.Server).toString();
  const hasProperty = resolveNodeId(ReferenceTypeIds.HasProperty).toString();
  const visited = new Set<string>([rootId.toString()]);
  const variables: { nodeId: NodeId; name: string }[] = [];
  let frontier: NodeId[] = [rootId];
  const batch = connection.limits.maxNodesPerBrowse > 0 ? connection.limits.maxNodesPerBrowse : 500;
  while (frontier.length > 0 && visited.size < MAX_BROWSED_NODES) {
    const next: NodeId[] = [];
    for (let start = 0; start < frontier.length; start += batch) {
      const descriptions: BrowseDescriptionOptions[] = frontier.slice(start, start + batch).map((nodeId) => ({
        nodeId,
        browseDirection: BrowseDirection.Forward,
        referenceTypeId: resolveNodeId(ReferenceTypeIds.HierarchicalReferences),
        includeSubtypes: true,
        nodeClassMask: NodeClassMask.Object | NodeClassMask.Variable,
        resultMask: 0x3f,
      }));
      const results = await browseAll(connection.session, descriptions);
      const rootResult = frontier[0] === rootId ? results[0] : undefined;
      if (rootResult && !rootResult.statusCode.isGood()) {
        const statusCode = rootResult.statusCode.value >>> 0;
        const statusName = statusNameOf(statusCode);
        throw new KilnError("KILN_NOT_FOUND", `The OPC UA server cannot browse ${rootId.toString()} (${statusName}).`, {
          details: { root: rootId.toString(), statusCode, statusName },
        });
      }
      for (const result of results) {
        for (const reference of result.references ?? []) {
          const child = reference.nodeId as unknown as NodeId;
          const key = child.toString();
          if (visited.has(key) || reference.referenceTypeId.toString() === hasProperty) continue;
          if (skipServerObject && key === serverObject) continue;
          visited.add(key);
          if (reference.nodeClass === NodeClass.Variable) variables.push({ nodeId: child, name: nameOf(reference) });
          else next.push(child);
        }
      }
    }
    frontier = next;
  }
  return describeVariables(connection, variables, generation);
}

async function describeVariables(
  connection: Connection,
  variables: readonly { nodeId: NodeId; name: string }[],
  generation: number,
): Promise<BrowsedVariable[]> {
  const perRead =
    connection.limits.maxNodesPerRead > 0
      ? Math.max(1, Math.floor(connection.limits.maxNodesPerRead / ATTRIBUTES_PER_VARIABLE))
      : 1_000;
  const out: BrowsedVariable[] = [];
  for (let start = 0; start < variables.length; start += perRead) {
    const slice = variables.slice(start, start + perRead);
    const values = await connection.session.read(
      slice.flatMap(({ nodeId }) => [
        { nodeId, attributeId: AttributeIds.DataType },
        { nodeId, attributeId: AttributeIds.UserAccessLevel },
        { nodeId, attributeId: AttributeIds.ValueRank },
        { nodeId, attributeId: AttributeIds.ArrayDimensions },
      ]),
    );
    if (connection.generation !== generation) {
      throw new KilnError("KILN_CONNECTION_FAILED", "The server's namespace table changed during the browse.", {
        retryable: true,
      });
    }
    const table = connection;
    for (let index = 0; index < slice.length; index++) {
      const { nodeId, name } = slice[index]!;
      const dataTypeValue = values[index * ATTRIBUTES_PER_VARIABLE];
      const accessValue = values[index * ATTRIBUTES_PER_VARIABLE + 1];
      const rankValue = values[index * ATTRIBUTES_PER_VARIABLE + 2];
      const dimensionsValue = values[index * ATTRIBUTES_PER_VARIABLE + 3];
      const valueRank = rankValue?.statusCode.isGood() ? Number(rankValue.value.value) : undefined;
      const rawDimensions = dimensionsValue?.statusCode.isGood() ? dimensionsValue.value.value : undefined;
      const arrayDimensions =
        rawDimensions !== null && rawDimensions !== undefined && typeof rawDimensions === "object"
          ? Array.from(rawDimensions as ArrayLike<number>, Number)
          : undefined;
      // A one-dimensional array of a known length (ArrayDimensions [n], n > 0) proposes arrayLength.
      const length = valueRank === 1 && arrayDimensions?.length === 1 ? arrayDimensions[0]! : 0;
      const arrayLength = length > 0 && length <= TAG_ARRAY_LENGTH_MAX ? length : undefined;
      const dataTypeId = dataTypeValue?.statusCode.isGood() ? (dataTypeValue.value.value as NodeId) : undefined;
      let builtIn: DataType | undefined;
      if (dataTypeId && dataTypeId.namespace === 0 && typeof dataTypeId.value === "number" && dataTypeId.value <= 25) {
        builtIn = dataTypeId.value as DataType;
      }
      const accessLevel = accessValue?.statusCode.isGood() ? Number(accessValue.value.value) : 1;
      const kilnType = builtIn === undefined ? undefined : tagDataTypeOf(builtIn);
      out.push({
        name,
        address: formatNodeAddress(nodeId, table),
        ...(kilnType ? { dataType: kilnType } : {}),
        ...(dataTypeId
          ? {
              nativeType: builtIn === undefined ? formatNodeAddress(dataTypeId, table) : DataType[builtIn],
            }
          : {}),
        access: (accessLevel & 0x02) !== 0 ? "readwrite" : "read",
        ...(valueRank === undefined || Number.isNaN(valueRank) ? {} : { valueRank }),
        ...(arrayDimensions === undefined || arrayDimensions.length === 0 ? {} : { arrayDimensions }),
        ...(arrayLength === undefined ? {} : { arrayLength }),
      });
    }
  }
  return out;
}

function nameOf(reference: ReferenceDescription): string {
  return reference.displayName?.text ?? reference.browseName?.name ?? reference.nodeId.toString();
}
