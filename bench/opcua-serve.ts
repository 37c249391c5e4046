import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import {
  AttributeIds,
  ClientMonitoredItemGroup,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  type UAVariable,
} from "node-opcua";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc, type TagDefinitionInput } from "@kiln/core";
import { OpcuaServer } from "@kiln/opcua-server";
import { bareOpcuaServer } from "./_bare-opcua-server";
import { machine, round } from "./harness";

// opcua-serve: 10,000 Double tags that all change once a second, served to one client that
// monitors all 10,000 (sampling interval 0: every change). Kiln: a ControlSystem on a
// SimulatedPlc scanning every second, served by @kiln/opcua-server. Baseline: a bare node-opcua
// server whose 10,000 variables are set with setValueFromSource every second. Changes delivered
// per second to the client, and the process's CPU share while serving (server and client share
// this process, on both sides). One side at a time, SecurityPolicy None (the bench measures
// serving, not encryption).

const TAG_COUNT = 10_000;
const UPDATE_MS = 1_000;
const SETTLE_MS = 3_000;
const MEASURE_MS = 6_000;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Side {
  readonly endpointUrl: string;
  readonly namespaceUri: string;
  stop(): Promise<void>;
}

/** Connects, monitors every tag, counts the changes delivered over MEASURE_MS after SETTLE_MS, with the process CPU. */
async function measure(side: Side, pkiDir: string): Promise<{ rate: number; cpuShare: number; tags: number }> {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "client") }),
    connectionStrategy: { maxRetry: 1, initialDelay: 500, maxDelay: 2_000 },
  });
  await client.connect(side.endpointUrl);
  try {
    const session = await client.createSession();
    const namespace = (await session.readNamespaceArray()).indexOf(side.namespaceUri);
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 100,
      requestedMaxKeepAliveCount: 100,
      requestedLifetimeCount: 600,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 0,
    });
    const items = Array.from({ length: TAG_COUNT }, (_, index) => ({
      nodeId: `ns=${namespace};s=bench.${index}`,
      attributeId: AttributeIds.Value,
    }));
    const group = ClientMonitoredItemGroup.create(
      subscription,
      items,
      { samplingInterval: 0, queueSize: 1, discardOldest: true },
      TimestampsToReturn.Both,
    );
    let counting = false;
    let changes = 0;
    const seen = new Set<number>();
    group.on("changed", (_item, dataValue, index: number) => {
      if (dataValue.statusCode.value === StatusCodes.Good.value) seen.add(index);
      if (counting) changes++;
    });
    await pause(SETTLE_MS);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    counting = true;
    await pause(MEASURE_MS);
    counting = false;
    const ms = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    await subscription.terminate();
    await session.close();
    return { rate: (changes * 1_000) / ms, cpuShare: (cpu.user + cpu.system) / 1_000 / ms, tags: seen.size };
  } finally {
    await client.disconnect();
  }
}

async function kilnSide(pkiDir: string): Promise<Side> {
  const definitions: Record<string, TagDefinitionInput> = {};
  for (let index = 0; index < TAG_COUNT; index++) {
    definitions[`bench.${index}`] = { dataType: "float64", logging: { mode: "none" } };
  }
  const tags = defineTags(definitions);
  const sources = Object.fromEntries(
    tags.names.map((name, index) => [name, { kind: "counter", start: index, step: 1 } as const]),
  );
  const system = createControlSystem({
    machineId: "bench",
    tags,
    driver: new SimulatedPlc({ tags, sources }),
    store: new MemoryStore(),
    scanGroups: { default: { periodMs: UPDATE_MS } },
  });
  const server = new OpcuaServer(system, {
    port: 0,
    host: "127.0.0.1",
    pki: { dir: path.join(pkiDir, "kiln-server"), acceptUnknownClientCertificates: true },
    securityModes: ["None"],
    allowAnonymous: true,
    identify: () => ({ id: "bench", roles: ["viewer"] }),
    // One client monitoring every tag in one subscription, created in one call: the defaults
    // (1,000 per call and per subscription, 2,000 per session) refuse it with
    // BadTooManyOperations / BadTooManyMonitoredItems, so the bench raises them to its size.
    limits: {
      maxMonitoredItemsPerCall: TAG_COUNT,
      maxMonitoredItemsPerSubscription: TAG_COUNT,
      maxMonitoredItemsPerSession: TAG_COUNT,
    },
  });
  await system.start();
  await server.start();
  return {
    endpointUrl: server.endpointUrl,
    namespaceUri: server.namespaceUri,
    async stop() {
      await server.stop();
      await system.stop();
    },
  };
}

async function bareSide(pkiDir: string): Promise<Side> {
  const namespaceUri = "urn:bench:bare";
  const { server, certificateManager, addressSpace, namespace } = await bareOpcuaServer(
    path.join(pkiDir, "bare-server"),
    namespaceUri,
  );
  const folder = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "bench" });
  const variables: UAVariable[] = [];
  for (let index = 0; index < TAG_COUNT; index++) {
    variables.push(
      namespace.addVariable({
        organizedBy: folder,
        browseName: `bench.${index}`,
        nodeId: `s=bench.${index}`,
        dataType: "Double",
        minimumSamplingInterval: 0,
        value: { dataType: DataType.Double, value: index },
      }),
    );
  }
  let tick = 0;
  const timer = setInterval(() => {
    tick++;
    const now = new Date();
    variables.forEach((variable, index) =>
      variable.setValueFromSource({ dataType: DataType.Double, value: index + tick }, StatusCodes.Good, now),
    );
  }, UPDATE_MS);
  await server.start();
  return {
    endpointUrl: `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`,
    namespaceUri,
    async stop() {
      clearInterval(timer);
      await server.shutdown(0);
      server.dispose();
      await certificateManager.dispose();
    },
  };
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-serve-"));
  try {
    const bare = await bareSide(pkiDir);
    const baseline = await measure(bare, pkiDir).finally(() => bare.stop());
    const kiln = await kilnSide(pkiDir);
    const served = await measure(kiln, pkiDir).finally(() => kiln.stop());
    if (served.tags !== TAG_COUNT || baseline.tags !== TAG_COUNT) {
      throw new Error(`only ${served.tags} (kiln) / ${baseline.tags} (bare) of ${TAG_COUNT} items got a good value`);
    }
    return {
      name: "opcua-serve",
      unit: "changes/s",
      kiln: round(served.rate, 1),
      baseline: round(baseline.rate, 1),
      ratio: round(served.rate / baseline.rate),
      offered_changes_per_s: (TAG_COUNT * 1_000) / UPDATE_MS,
      monitored_items: TAG_COUNT,
      kiln_process_cpu_share: round(served.cpuShare),
      baseline_process_cpu_share: round(baseline.cpuShare),
      ...machine(),
    };
  } finally {
    await rm(pkiDir, { recursive: true, force: true });
  }
}
