import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import {
  AttributeIds,
  ClientMonitoredItemGroup,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  type ClientSession,
  type DataValue,
} from "node-opcua";
import { defineTags, type Sample, type Tag, type TagDefinitionInput } from "@kiln/core";
import { OpcuaDriver } from "@kiln/plc-opcua";
import { startOpcuaSimulator } from "./_opcua-simulator";
import { stopChild } from "./harness";

// opcua-subscribe: 1,000 Double tags that all change every 50 ms on an OpcuaSimulator in another process. Value
// changes delivered per second into a current-value map, through OpcuaDriver.subscribe and through a raw
// node-opcua ClientMonitoredItemGroup with the same sampling, one side at a time.

const TAG_COUNT = 1_000;
const UPDATE_INTERVAL_MS = 50;
const ROUNDS = 4;
const SETTLE_MS = 750;
const ROUND_MS = 2_000;
function startSimulator() {
  return startOpcuaSimulator({
    tagCount: TAG_COUNT,
    signal: { kind: "counter", start: 0, step: 1 },
    updateIntervalMs: UPDATE_INTERVAL_MS,
  });
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Opens a subscription with `open`, lets the initial burst pass, then counts the changes it
 * delivers over ROUND_MS. `open` returns the closer and calls `onChange(count)` as changes land.
 */
async function measure(
  open: (onChanges: (count: number) => void) => Promise<() => Promise<void>>,
): Promise<{ changes: number; ms: number }> {
  let counting = false;
  let changes = 0;
  const close = await open((count) => {
    if (counting) changes += count;
  });
  await pause(SETTLE_MS);
  counting = true;
  const started = performance.now();
  await pause(ROUND_MS);
  counting = false;
  const ms = performance.now() - started;
  await close();
  return { changes, ms };
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const { child, ready } = await startSimulator();
  const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-opcua-"));
  const definitions: Record<string, TagDefinitionInput> = {};
  ready.addresses.forEach((address, index) => {
    definitions[`bench.${index}`] = { dataType: "float64", address };
  });
  const tags: readonly Tag[] = defineTags(definitions).list();
  const driver = new OpcuaDriver({ endpointUrl: ready.endpointUrl, security: { mode: "None" }, pki: { dir: pkiDir } });
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "raw") }),
    connectionStrategy: { maxRetry: 1, initialDelay: 500, maxDelay: 2_000, randomisationFactor: 0 },
  });
  let session: ClientSession | undefined;
  try {
    await driver.connect();
    await client.connect(ready.endpointUrl);
    session = await client.createSession();
    const rawSession = session;
    const namespaceIndex = (await rawSession.readNamespaceArray()).indexOf("urn:kiln:opcua-simulator");
    const itemsToMonitor = ready.addresses.map((_, index) => ({
      nodeId: `ns=${namespaceIndex};s=Bench.${index}`,
      attributeId: AttributeIds.Value,
    }));

    // The Kiln side: samples land in a current-value table, as the core's CVT would hold them.
    const kilnCvt = new Map<string, Sample>();
    const kiln = (onChanges: (count: number) => void) =>
      driver
        .subscribe(tags, { samplingIntervalMs: UPDATE_INTERVAL_MS, queueSize: 1 }, (samples) => {
          for (const sample of samples) kilnCvt.set(sample.tag, sample);
          onChanges(samples.length);
        })
        .then((dispose) => async () => dispose());

    // The baseline: the same items in one raw monitored-item group, values into the same kind of table.
    const rawCvt = new Map<number, DataValue>();
    const baseline = async (onChanges: (count: number) => void) => {
      const subscription = await rawSession.createSubscription2({
        requestedPublishingInterval: UPDATE_INTERVAL_MS,
        requestedMaxKeepAliveCount: 100,
        requestedLifetimeCount: 600,
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 0,
      });
      const group = ClientMonitoredItemGroup.create(
        subscription,
        itemsToMonitor,
        { samplingInterval: UPDATE_INTERVAL_MS, queueSize: 1, discardOldest: true },
        TimestampsToReturn.Both,
      );
      group.on("changed", (_item, dataValue: DataValue, index: number) => {
        rawCvt.set(index, dataValue);
        onChanges(1);
      });
      return async () => {
        await subscription.terminate();
      };
    };

    const totals = { kiln: { changes: 0, ms: 0 }, baseline: { changes: 0, ms: 0 } };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (["kiln", "baseline"] as const) : (["baseline", "kiln"] as const);
      for (const side of order) {
        const result = await measure(side === "kiln" ? kiln : baseline);
        totals[side].changes += result.changes;
        totals[side].ms += result.ms;
      }
    }
    if (kilnCvt.size !== TAG_COUNT || rawCvt.size !== TAG_COUNT) {
      throw new Error(`only ${kilnCvt.size} (kiln) / ${rawCvt.size} (raw) of ${TAG_COUNT} tags received values`);
    }
    const kilnRate = (totals.kiln.changes * 1_000) / totals.kiln.ms;
    const baselineRate = (totals.baseline.changes * 1_000) / totals.baseline.ms;
    return {
      name: "opcua-subscribe",
      unit: "changes/s",
      kiln: Number(kilnRate.toFixed(1)),
      baseline: Number(baselineRate.toFixed(1)),
      ratio: Number((kilnRate / baselineRate).toFixed(3)),
      offered_changes_per_s: (TAG_COUNT * 1_000) / UPDATE_INTERVAL_MS,
    };
  } finally {
    await driver.close();
    await session?.close().catch(() => undefined);
    await client.disconnect();
    await stopChild(child);
    await rm(pkiDir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run()));
}
