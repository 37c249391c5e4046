import { KilnError, KilnValidationError, TAG_ARRAY_LENGTH_MAX, type BrowsedVariable } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  BrowseDirection,
  DataType,
  DataTypeIds,
  findBasicDataType,
  NodeClass,
  NodeClassMask,
  ObjectIds,
  ReferenceTypeIds,
  resolveNodeId,
  type BrowseDescriptionOptions,
  type BrowseResult,
  type ClientSession,
  type NodeId,
  type ReferenceDescription,
} from "node-opcua-client";
import type { Connection } from "./opcua-connection";
import { isTransientStatus, statusNameOf } from "./opcua-errors";
import { formatNodeAddress } from "./opcua-node-id";
import { tagDataTypeOf } from "./opcua-values";

const MAX_BROWSED_NODES = 100_000;
/** The name of each standard DataType node (ns=0) by its numeric id: `UtcTime` for i=294. */
const STANDARD_DATA_TYPE_NAMES = new Map<number, string>(
  Object.entries(DataTypeIds).map(([name, id]) => [id as number, name]),
);
/** DataType, UserAccessLevel, ValueRank, ArrayDimensions. */
const ATTRIBUTES_PER_VARIABLE = 4;

/**
 * Lists the variables under `rootId` (a Variable root: itself alone; a root given by the caller
 * that is neither an Object, a View nor a Variable: KilnValidationError naming its NodeClass),
 * following hierarchical references through objects and folders (breadth first, in batches of the server's MaxNodesPerBrowse, at most 100 000 nodes),
 * with each variable's data type, access, value rank and array dimensions (a one-dimensional
 * array of known length proposes `arrayLength`, docs/adr/0038-array-tags.md). Each result
 * carries an `nsu=` address.
 *
 * The list is complete or the browse fails: a node the server does not browse Good (a folder
 * answered BadUserAccessDenied or BadNoContinuationPoints, a BrowseNext refused) fails the whole
 * browse, never dropping its subtree silently. Nodes a server refused BadNoContinuationPoints
 * while this browse held continuation points are browsed again once those are done. Every
 * continuation point the browse still holds when it fails is released (BrowseNext with
 * releaseContinuationPoints), so a failed browse leaves none on the server (docs/adr/0022,
 * amendment fix13af).
 *
 * @throws KilnError `KILN_NOT_FOUND` when the server answers the root itself BadNodeIdUnknown or
 *   BadNodeIdInvalid (no such node), with `details.statusName`.
 * @throws KilnError `KILN_DEVICE_ERROR` when the server does not browse a node Good (the root
 *   with any other status, or any node below it), with `details.node`, `details.statusCode`,
 *   `details.statusName`: retryable for a shortage (BadNoContinuationPoints,
 *   BadContinuationPointInvalid, BadServerTooBusy, BadResourceUnavailable...) or a node that
 *   vanished during the browse, not retryable otherwise (BadUserAccessDenied...).
 */
export async function browseVariables(
  connection: Connection,
  rootId: NodeId,
  skipServerObject: boolean,
): Promise<BrowsedVariable[]> {
  // Node ids are namespace indexes of this session's table: a table re-read as different while
  // the browse runs (the generation bump) makes them unformattable (docs/adr/0022, fix13w).
  const generation = connection.generation;
  if (!skipServerObject) {
    // A root given by the caller may be a Variable (the variable itself is the list) or a node
    // that holds no variables (a Method, a DataType): said so, not answered with an empty list.
    const root = await rootNodeClass(connection.session, rootId);
    if (root.nodeClass === NodeClass.Variable) {
      return describeVariables(connection, [{ nodeId: rootId, name: root.name }], generation);
    }
    if (root.nodeClass !== NodeClass.Object && root.nodeClass !== NodeClass.View) {
      throw new KilnValidationError("browse root", [
        {
          path: "root",
          message: `${rootId.toString()} is a ${NodeClass[root.nodeClass] ?? root.nodeClass} node; browse lists the variables under an Object, a folder or a View, or a Variable itself`,
        },
      ]);
    }
  }
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
      const results = await browseComplete(connection.session, descriptions, rootId);
      for (const references of results) {
        for (const reference of references) {
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

/** The NodeClass and display name of `rootId`, read in one request; a root not read Good is refused as by Browse. */
async function rootNodeClass(session: ClientSession, rootId: NodeId): Promise<{ nodeClass: number; name: string }> {
  const [nodeClass, displayName] = await session.read([
    { nodeId: rootId, attributeId: AttributeIds.NodeClass },
    { nodeId: rootId, attributeId: AttributeIds.DisplayName },
  ]);
  if (!nodeClass?.statusCode.isGood()) throw browseRefused(rootId, rootId, nodeClass?.statusCode.value ?? 0x80020000);
  const text = displayName?.statusCode.isGood()
    ? (displayName.value.value as { text?: string } | null)?.text
    : undefined;
  return { nodeClass: Number(nodeClass.value.value), name: text ?? rootId.toString() };
}

const NOT_FOUND = new Set(["BadNodeIdUnknown", "BadNodeIdInvalid"]);
/** Refusals a later browse may not meet: a shortage of the server or a node that changed meanwhile. */
const RETRYABLE_BROWSE = new Set([
  "BadNoContinuationPoints",
  "BadContinuationPointInvalid",
  "BadTimeout",
  "BadRequestTimeout",
  "BadNodeIdUnknown",
]);

/** The error of a node the server did not browse Good. */
function browseRefused(node: NodeId, rootId: NodeId, code: number): KilnError {
  const statusCode = code >>> 0;
  const statusName = statusNameOf(statusCode);
  const details = { root: rootId.toString(), node: node.toString(), statusCode, statusName };
  const isRoot = node.toString() === rootId.toString();
  if (isRoot && NOT_FOUND.has(statusName)) {
    return new KilnError("KILN_NOT_FOUND", `The OPC UA server cannot browse ${rootId.toString()} (${statusName}).`, {
      details,
    });
  }
  return new KilnError(
    "KILN_DEVICE_ERROR",
    `The OPC UA server did not browse ${node.toString()} (${statusName})${isRoot ? "" : ` under ${rootId.toString()}`}; the browse is incomplete, so no list is returned.`,
    { retryable: RETRYABLE_BROWSE.has(statusName) || isTransientStatus(statusName), details },
  );
}

/**
 * Browses every node of `descriptions` to its last reference: Browse, then BrowseNext on each
 * continuation point until none is left. Returns the references of each node, in order. Throws
 * {@link browseRefused}'s error for the first node or continuation point not answered Good; a node
 * refused BadNoContinuationPoints is browsed again after the continuation points this call held
 * are done (only then can the server have one free). Every continuation point still held when it
 * throws is released, best effort, without waiting.
 */
async function browseComplete(
  session: ClientSession,
  descriptions: readonly BrowseDescriptionOptions[],
  rootId: NodeId,
): Promise<ReferenceDescription[][]> {
  const references: ReferenceDescription[][] = descriptions.map(() => []);
  const nodes = descriptions.map((description) => description.nodeId as NodeId);
  const nodeOf = (index: number): NodeId => nodes[index]!;
  let toBrowse = descriptions.map((_, index) => index);
  while (toBrowse.length > 0) {
    const results: BrowseResult[] = await session.browse(toBrowse.map((index) => descriptions[index]!));
    if (results.length !== toBrowse.length) {
      throw new KilnError(
        "KILN_DEVICE_ERROR",
        `The OPC UA server answered a Browse of ${toBrowse.length} nodes with ${results.length} results.`,
        { retryable: true, details: { root: rootId.toString() } },
      );
    }
    /** Continuation points the server holds for this browse, with the node each continues. */
    let held: { index: number; point: Buffer }[] = [];
    const redo: number[] = [];
    let refused: KilnError | undefined;
    results.forEach((result, position) => {
      const index = toBrowse[position]!;
      if (result.statusCode.isGood()) {
        references[index]!.push(...(result.references ?? []));
        if (result.continuationPoint?.length) held.push({ index, point: result.continuationPoint });
      } else if (statusNameOf(result.statusCode.value) === "BadNoContinuationPoints") {
        redo.push(index);
      } else {
        refused ??= browseRefused(nodeOf(index), rootId, result.statusCode.value);
      }
    });
    // Without a point of its own to give back, a browse refused for lack of points fails.
    if (!refused && redo.length > 0 && held.length === 0) {
      refused = browseRefused(nodeOf(redo[0]!), rootId, results[toBrowse.indexOf(redo[0]!)]!.statusCode.value);
    }
    try {
      if (refused) throw refused;
      while (held.length > 0) {
        const sent = held;
        const next: BrowseResult[] = await session.browseNext(
          sent.map((entry) => entry.point),
          false,
        );
        if (next.length !== sent.length) {
          throw new KilnError(
            "KILN_DEVICE_ERROR",
            `The OPC UA server answered a BrowseNext of ${sent.length} continuation points with ${next.length} results.`,
            { retryable: true, details: { root: rootId.toString() } },
          );
        }
        held = [];
        next.forEach((result, position) => {
          const { index } = sent[position]!;
          if (!result.statusCode.isGood()) {
            refused ??= browseRefused(nodeOf(index), rootId, result.statusCode.value);
            return;
          }
          references[index]!.push(...(result.references ?? []));
          if (result.continuationPoint?.length) held.push({ index, point: result.continuationPoint });
        });
        if (refused) throw refused;
      }
    } catch (error) {
      if (held.length > 0) {
        // The server holds a point for each until its session ends: give them back.
        session
          .browseNext(
            held.map((entry) => entry.point),
            true,
          )
          .catch(() => undefined);
      }
      throw error;
    }
    toBrowse = redo;
  }
  return references;
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
  // A DataType that is no built-in type (UtcTime, Duration, an enumeration, a vendor's subtype of
  // Double) is resolved to its built-in base by browsing its supertypes, once per type per browse; a
  // type the server does not resolve proposes no Kiln dataType, and does not fail the browse.
  const resolved = new Map<string, Promise<DataType | undefined>>();
  const builtInOf = (dataTypeId: NodeId): Promise<DataType | undefined> => {
    if (dataTypeId.namespace === 0 && typeof dataTypeId.value === "number" && dataTypeId.value <= 25)
      return Promise.resolve(dataTypeId.value as DataType);
    const key = dataTypeId.toString();
    let base = resolved.get(key);
    if (base === undefined) {
      base = findBasicDataType(connection.session, dataTypeId).then(
        (found) => (found === DataType.Null ? undefined : found),
        () => undefined,
      );
      resolved.set(key, base);
    }
    return base;
  };
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
      const builtIn = dataTypeId === undefined ? undefined : await builtInOf(dataTypeId);
      const accessLevel = accessValue?.statusCode.isGood() ? Number(accessValue.value.value) : 1;
      const kilnType = builtIn === undefined ? undefined : tagDataTypeOf(builtIn);
      out.push({
        name,
        address: formatNodeAddress(nodeId, table),
        ...(kilnType ? { dataType: kilnType } : {}),
        ...(dataTypeId ? { nativeType: nativeTypeName(dataTypeId, table) } : {}),
        access: (accessLevel & 0x02) !== 0 ? "readwrite" : "read",
        ...(valueRank === undefined || Number.isNaN(valueRank) ? {} : { valueRank }),
        ...(arrayDimensions === undefined || arrayDimensions.length === 0 ? {} : { arrayDimensions }),
        ...(arrayLength === undefined ? {} : { arrayLength }),
      });
    }
  }
  return out;
}

/**
 * The `nativeType` of a browsed variable: a built-in type's name (`Double`), a standard type's name
 * (`UtcTime`, `Duration`, `ServerState`), otherwise the DataType node's `nsu=` address.
 */
function nativeTypeName(dataTypeId: NodeId, table: Connection): string {
  if (dataTypeId.namespace === 0 && typeof dataTypeId.value === "number") {
    const name = dataTypeId.value <= 25 ? DataType[dataTypeId.value] : STANDARD_DATA_TYPE_NAMES.get(dataTypeId.value);
    if (name !== undefined) return name;
  }
  return formatNodeAddress(dataTypeId, table);
}

function nameOf(reference: ReferenceDescription): string {
  return reference.displayName?.text ?? reference.browseName?.name ?? reference.nodeId.toString();
}
