import type { Tag, TagCatalog } from "@kiln/core";
import { type AggregateName, interpolationOf } from "@kiln/core/driver-kit";
import type { BaseNode, IAddressSpace, ISessionContext, UAVariable } from "node-opcua-address-space-base";
import type { HistoryReadResult } from "node-opcua-types";
import { type HistoryService, OPCUA_HISTORY_LIMITS } from "./opcua-history";

/** NodeIds (namespace 0) of the Part 13 aggregate functions Kiln computes (Part 6, NodeIds.csv). */
export const AGGREGATE_FUNCTION_NODE_IDS: Readonly<Record<AggregateName, number>> = {
  Interpolative: 2341,
  Average: 2342,
  TimeAverage: 2343,
  Total: 2344,
  Minimum: 2346,
  Maximum: 2347,
  Count: 2352,
  Start: 2357,
  End: 2358,
  Delta: 2359,
  DurationGood: 2360,
  PercentGood: 2362,
};

const SERVER_CAPABILITIES_AGGREGATE_FUNCTIONS = 2997;
const HISTORY_SERVER_CAPABILITIES_AGGREGATE_FUNCTIONS = 11201;

/** What of node-opcua's server engine the history wiring sets (both read lazily by the engine). */
interface EngineCapabilities {
  readonly historyServerCapabilities: Record<string, boolean | number>;
  readonly serverCapabilities: {
    maxHistoryContinuationPoints: number;
    readonly operationLimits: { maxNodesPerHistoryReadData: number };
  };
}

/**
 * Makes the variables of the tags the store logs (`logging.mode` not `none`) historical (Part
 * 11, 5.2): node-opcua's `installHistoricalDataNode` (Historizing true, AccessLevel and
 * UserAccessLevel HistoryRead, the `HA Configuration` object) with a historian that keeps nothing
 * (the store is the historian), `Stepped` from the tag's interpolation, the configuration's
 * invented times (Min/MaxTimeInterval, StartOfArchive, and StartOfOnlineArchive unless the store's
 * history is bounded, see {@link HistoryService.startOfOnlineArchive}) removed; then HistoryRead of each
 * goes to `service` (see ADR 0032). Sets HistoryServerCapabilities truthfully: data access only,
 * MaxReturnDataValues, MaxHistoryContinuationPoints, MaxNodesPerHistoryReadData, and the AggregateFunctions folders (of the
 * server and of the history capabilities) listing exactly the aggregates the store computes.
 */
export function serveHistory(
  addressSpace: IAddressSpace,
  engine: EngineCapabilities,
  tags: TagCatalog,
  variables: ReadonlyMap<string, UAVariable>,
  service: HistoryService,
): void {
  const historian = { push: () => Promise.resolve(), extractDataValues: () => undefined };
  for (const [name, variable] of variables) {
    const tag = tags.get(name);
    if (tag.logging.mode === "none") continue;
    addressSpace.installHistoricalDataNode(variable, { historian } as never);
    const configuration = (
      variable as unknown as { $historicalDataConfiguration?: Record<string, BaseNode | undefined> }
    ).$historicalDataConfiguration;
    if (configuration) {
      (configuration.stepped as UAVariable | undefined)?.setValueFromSource({
        dataType: "Boolean",
        value: interpolationOf(tag) === "stepped",
      });
      // A bounded store (MemoryStore's retention) says from when its history is complete: served
      // live as StartOfOnlineArchive (fix16m). A store keeping everything has no such time.
      const startOfOnlineArchive = service.startOfOnlineArchive();
      const served = configuration.startOfOnlineArchive as UAVariable | undefined;
      if (startOfOnlineArchive && served) served.bindVariable({ timestamped_get: startOfOnlineArchive }, true);
      for (const invented of ["maxTimeInterval", "minTimeInterval", "startOfArchive", "startOfOnlineArchive"]) {
        const node = configuration[invented];
        if (node && !(invented === "startOfOnlineArchive" && startOfOnlineArchive)) addressSpace.deleteNode(node);
      }
    }
    interceptHistoryRead(tag, variable, service);
  }
  Object.assign(engine.historyServerCapabilities, {
    accessHistoryDataCapability: true,
    accessHistoryEventsCapability: false,
    maxReturnDataValues: OPCUA_HISTORY_LIMITS.maxValuesPerNode,
    maxReturnEventValues: 0,
    insertDataCapability: false,
    replaceDataCapability: false,
    updateDataCapability: false,
    deleteRawCapability: false,
    deleteAtTimeCapability: false,
    insertEventCapability: false,
    replaceEventCapability: false,
    updateEventCapability: false,
    deleteEventCapability: false,
    insertAnnotationCapability: false,
  });
  engine.serverCapabilities.maxHistoryContinuationPoints = OPCUA_HISTORY_LIMITS.maxContinuationPoints;
  engine.serverCapabilities.operationLimits.maxNodesPerHistoryReadData = OPCUA_HISTORY_LIMITS.maxNodesPerRequest;
  const supported = new Set<number>(service.aggregates.map((name) => AGGREGATE_FUNCTION_NODE_IDS[name]));
  for (const folderId of [SERVER_CAPABILITIES_AGGREGATE_FUNCTIONS, HISTORY_SERVER_CAPABILITIES_AGGREGATE_FUNCTIONS]) {
    const folder = addressSpace.findNode(`i=${folderId}`);
    if (!folder) continue;
    for (const reference of folder.findReferences("Organizes", true)) {
      const id = reference.nodeId;
      if (id.namespace === 0 && !supported.has(Number(id.value))) folder.removeReference(reference);
    }
    const present = new Set(
      folder.findReferences("Organizes", true).map((reference) => Number(reference.nodeId.value)),
    );
    for (const id of supported) {
      if (!present.has(id)) folder.addReference({ referenceType: "Organizes", isForward: true, nodeId: `i=${id}` });
    }
  }
}

/** The Kiln aggregate of an aggregate function NodeId (namespace 0), if it is one Kiln computes. */
export function aggregateNameOf(nodeId: unknown): AggregateName | undefined {
  const id = nodeId as { namespace?: number; value?: unknown } | null | undefined;
  if (!id || id.namespace !== 0 || typeof id.value !== "number") return undefined;
  for (const [name, value] of Object.entries(AGGREGATE_FUNCTION_NODE_IDS)) {
    if (value === id.value) return name as AggregateName;
  }
  return undefined;
}

type HistoryReadCallback = (error: Error | null, result?: HistoryReadResult) => void;

/**
 * Answers the variable's HistoryRead from `service`: its `historyRead` method (the one
 * node-opcua's HistoryRead service calls, with or without a callback) is replaced on the
 * instance, as `writeValue` is for Writes (ADR 0026, ADR 0032).
 */
function interceptHistoryRead(tag: Tag, variable: UAVariable, service: HistoryService): void {
  Object.defineProperty(variable, "historyRead", {
    configurable: true,
    writable: true,
    value: (
      context: ISessionContext,
      details: unknown,
      indexRange: unknown,
      _dataEncoding: unknown,
      continuationData: { continuationPoint?: Buffer | null; releaseContinuationPoints?: boolean } | undefined,
      callback?: HistoryReadCallback,
    ) => {
      const result = service.read(tag, context, details, continuationData ?? {}, indexRange);
      if (!callback) return result;
      result.then(
        (value) => callback(null, value),
        (error: unknown) => callback(error as Error),
      );
      return undefined;
    },
  });
}
