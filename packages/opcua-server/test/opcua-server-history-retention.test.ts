import {
  Authorizer,
  createControlSystem,
  defaultRoleTable,
  defineTags,
  MemoryStore,
  quality,
  type Sample,
  SimulatedPlc,
} from "@kiln/core";
import {
  type DataValue,
  type HistoryData,
  HistoryReadRequest,
  ReadProcessedDetails,
  ReadRawModifiedDetails,
  resolveNodeId,
  AttributeIds,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua-client";
import { afterAll, beforeAll, expect, test } from "vitest";
import { AGGREGATE_FUNCTION_NODE_IDS, OpcuaServer } from "../src/index";
import { connect, identify, makeTestPki, type TestPki, USERS } from "./support/opcua-fixture";

// Issue 16, fix16b: HistoryRead served from a MemoryStore whose retention evicted part of the range.
const tags = defineTags({
  "hist.temp": { dataType: "float64", unit: "degC" },
  "hist.valve": { dataType: "bool" },
});
const T0 = Date.UTC(2026, 0, 1, 8, 0, 0);
const HISTORY: Sample[] = Array.from({ length: 40 }, (_, i) => ({
  tag: "hist.temp",
  timestamp: T0 + i * 1_000,
  value: 20 + i,
  quality: quality("good"),
}));

let pki: TestPki;
let store: MemoryStore;
let system: ReturnType<typeof createControlSystem>;
let server: OpcuaServer;
let client: Awaited<ReturnType<typeof connect>>;
let node: string;

beforeAll(async () => {
  pki = await makeTestPki();
  store = new MemoryStore({ retention: { maxSamples: 20 } });
  system = createControlSystem({
    machineId: "reactor-1",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    // One scan at start, then none for the test: the live samples do not move the horizon meanwhile.
    scanGroups: { default: { periodMs: 3_600_000 } },
  });
  server = new OpcuaServer(system, {
    port: 0,
    host: "127.0.0.1",
    pki: { dir: pki.serverDir },
    identify,
    authorizer: new Authorizer({ roles: defaultRoleTable() }),
  });
  await system.start();
  await system.ready();
  await system.unchecked.store.samples.writeBatch(HISTORY);
  await server.start();
  client = await connect(server, pki.trusted, {
    type: UserTokenType.UserName,
    userName: "vic",
    password: USERS.vic!.password,
  });
  node = server.nodeIdOf("hist.temp");
}, 60_000);

afterAll(async () => {
  await client?.close();
  await server?.stop();
  await system?.stop();
  await pki?.dispose();
});

async function read(details: unknown, continuationPoint?: Buffer) {
  const response = await client.session.historyRead(
    new HistoryReadRequest({
      historyReadDetails: details as ReadRawModifiedDetails,
      nodesToRead: [{ nodeId: node, ...(continuationPoint ? { continuationPoint } : {}) }],
      timestampsToReturn: TimestampsToReturn.Source,
      releaseContinuationPoints: false,
    }),
  );
  return response.results![0]!;
}
const valuesOf = (result: { historyData?: unknown }): DataValue[] =>
  ((result.historyData as HistoryData | undefined)?.dataValues ?? []) as DataValue[];
const severity = (value: DataValue): number => (value.statusCode.value & 0xc0000000) >>> 0;

test("Processed intervals over evicted history are served Uncertain or Bad, never Good; later ones stay Good", async () => {
  const retainedFrom = store.retainedFrom!;
  expect(retainedFrom).toBeGreaterThan(T0);
  const result = await read(
    new ReadProcessedDetails({
      startTime: new Date(T0),
      endTime: new Date(T0 + 40_000),
      processingInterval: 5_000,
      aggregateConfiguration: { useServerCapabilitiesDefaults: true },
      aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Count}`],
    }),
  );
  const values = valuesOf(result);
  expect(values).toHaveLength(8);
  for (const value of values) {
    const start = value.sourceTimestamp!.getTime();
    if (start < retainedFrom) expect(severity(value)).not.toBe(0);
  }
  expect(severity(values.at(-1)!)).toBe(0);
  expect(values.at(-1)!.value.value).toBe(5);
});

test("a raw read continued across samples evicted since its last page answers BadContinuationPointInvalid", async () => {
  const from = T0 + 30_000;
  const first = await read(
    new ReadRawModifiedDetails({
      startTime: new Date(from),
      endTime: new Date(T0 + 40_000),
      numValuesPerNode: 3,
      isReadModified: false,
      returnBounds: false,
    }),
  );
  expect(valuesOf(first).map((value) => value.sourceTimestamp!.getTime() - T0)).toEqual([30_000, 31_000, 32_000]);
  expect(first.continuationPoint).toBeTruthy();
  // Newer samples of another tag push the horizon past the page cursor (32 s).
  await system.unchecked.store.samples.writeBatch(
    Array.from({ length: 15 }, (_, i) => ({
      tag: "hist.valve",
      timestamp: T0 + 100_000 + i,
      value: i % 2 === 0,
      quality: quality("good"),
    })),
  );
  const next = await read(
    new ReadRawModifiedDetails({
      startTime: new Date(from),
      endTime: new Date(T0 + 40_000),
      numValuesPerNode: 3,
      isReadModified: false,
      returnBounds: false,
    }),
    first.continuationPoint!,
  );
  expect(next.statusCode.value).toBe(StatusCodes.BadContinuationPointInvalid.value);
});

/** 40 samples of hist.temp from `base`, one a second (the store keeps 20 samples in all). */
async function writeTemp(base: number): Promise<void> {
  await system.unchecked.store.samples.writeBatch(
    Array.from({ length: 40 }, (_, i) => ({
      tag: "hist.temp",
      timestamp: base + i * 1_000,
      value: 100 + i,
      quality: quality("good"),
    })),
  );
}

test("adv16b F0a: a reverse raw read continued after the horizon moved into what it has left to read answers BadContinuationPointInvalid, never a short page that ends Good", async () => {
  const base = T0 + 200_000;
  await writeTemp(base);
  // Of [base, base + 40 s) the newest samples are kept: the read covers kept time only (a first page
  // over evicted time answers BadDataLost, fix16m).
  const details = new ReadRawModifiedDetails({
    startTime: new Date(base + 40_000),
    endTime: new Date(base + 25_000),
    numValuesPerNode: 3,
    isReadModified: false,
    returnBounds: false,
  });
  const first = await read(details);
  expect(valuesOf(first).map((value) => value.sourceTimestamp!.getTime() - base)).toEqual([39_000, 38_000, 37_000]);
  expect(first.continuationPoint).toBeTruthy();
  // Another tag's samples push the horizon past 34 s: 20 s to 34 s, kept when the read began, are evicted.
  await system.unchecked.store.samples.writeBatch(
    Array.from({ length: 15 }, (_, i) => ({
      tag: "hist.valve",
      timestamp: base + 300_000 + i,
      value: i % 2 === 0,
      quality: quality("good"),
    })),
  );
  const next = await read(details, first.continuationPoint!);
  expect(next.statusCode.value).toBe(StatusCodes.BadContinuationPointInvalid.value);
});

test("fix16m: a first raw read whose range holds evicted samples answers BadDataLost, never the kept samples as the whole range; forward and reverse", async () => {
  const base = T0 + 600_000; // newer than every sample before: the store keeps its 20 newest
  await writeTemp(base);
  const retainedFrom = store.retainedFrom!;
  expect(retainedFrom).toBeGreaterThan(base);
  for (const [startTime, endTime] of [
    [base, base + 40_000],
    [base + 40_000, base],
  ] as const) {
    const result = await read(
      new ReadRawModifiedDetails({
        startTime: new Date(startTime),
        endTime: new Date(endTime),
        numValuesPerNode: 100,
        isReadModified: false,
        returnBounds: false,
      }),
    );
    // Before: the kept samples from retainedFrom on, Good, as if they were all of [base, base + 40 s).
    expect(result.statusCode.value).toBe(StatusCodes.BadDataLost.value);
    expect(valuesOf(result)).toEqual([]);
  }
  // Read from the horizon on, the same range is served whole.
  const kept = await read(
    new ReadRawModifiedDetails({
      startTime: new Date(retainedFrom),
      endTime: new Date(base + 40_000),
      numValuesPerNode: 100,
      isReadModified: false,
      returnBounds: false,
    }),
  );
  expect(kept.statusCode.value & 0xc0000000).toBe(0);
  expect(valuesOf(kept).length).toBe((base + 40_000 - retainedFrom) / 1_000);
});

test("adv16n M2: the newest N values of a tag that lost older ones are served Good (no start time, and start after end); N beyond what is kept answers BadDataLost", async () => {
  const base = T0 + 900_000; // newer than every sample before: the store keeps its 20 newest
  await writeTemp(base);
  for (const startTime of [null, new Date(base + 40_000)]) {
    const result = await read(
      new ReadRawModifiedDetails({
        startTime: startTime as never,
        endTime: startTime === null ? new Date(base + 40_000) : new Date(base),
        numValuesPerNode: 5,
        isReadModified: false,
        returnBounds: false,
      }),
    );
    // Before: BadDataLost with no values whenever the tag had lost anything.
    expect(result.statusCode.value & 0xc0000000).toBe(0);
    expect(valuesOf(result).map((value) => value.sourceTimestamp!.getTime() - base)).toEqual([
      39_000, 38_000, 37_000, 36_000, 35_000,
    ]);
  }
  // Sibling: asking for more than is kept would end Good with fewer values, as if there were no more.
  const all = await read(
    new ReadRawModifiedDetails({
      startTime: null as never,
      endTime: new Date(base + 40_000),
      numValuesPerNode: 100,
      isReadModified: false,
      returnBounds: false,
    }),
  );
  expect(all.statusCode.value).toBe(StatusCodes.BadDataLost.value);
});

test("adv16n M3: samples evicted while a first page is read are seen: BadDataLost, never that page Good as the whole range", async () => {
  const base = T0 + 1_200_000;
  await writeTemp(base); // keeps base + 20 s .. base + 39 s
  const retainedFrom = store.retainedFrom!;
  const samples = store.samples;
  const readSamples = samples.readSamples.bind(samples);
  let armed = true;
  // Another tag's batch lands just after the page is read (a logger flush): 10 more of hist.temp are evicted.
  samples.readSamples = async (query) => {
    const rows = await readSamples(query);
    if (armed && query.tag === "hist.temp" && query.acceptEvicted === true && (query.limit ?? 0) > 1) {
      armed = false;
      await samples.writeBatch(
        Array.from({ length: 10 }, (_, i) => ({
          tag: "hist.valve",
          timestamp: base + 100_000 + i,
          value: i % 2 === 0,
          quality: quality("good"),
        })),
      );
    }
    return rows;
  };
  try {
    const result = await read(
      new ReadRawModifiedDetails({
        startTime: new Date(retainedFrom),
        endTime: new Date(base + 40_000),
        numValuesPerNode: 100,
        isReadModified: false,
        returnBounds: false,
      }),
    );
    expect(armed).toBe(false);
    // Before: Good, the 20 samples read before the eviction, no continuation point.
    expect(result.statusCode.value).toBe(StatusCodes.BadDataLost.value);
  } finally {
    samples.readSamples = readSamples;
  }
});

test("adv16b F0b: a bound found across evicted time is never served Good (the evicted sample may have been the bound)", async () => {
  const base = T0 + 900_000;
  await writeTemp(base);
  const retainedFrom = store.retainedFrom!;
  // [retainedFrom - 500 ms, retainedFrom + 3 s) lost nothing itself; its start bound lies before
  // the horizon, where the sample just before (retainedFrom - 1 s) was evicted.
  const result = await read(
    new ReadRawModifiedDetails({
      startTime: new Date(retainedFrom - 500),
      endTime: new Date(retainedFrom + 3_000),
      numValuesPerNode: 10,
      isReadModified: false,
      returnBounds: true,
    }),
  );
  const values = valuesOf(result);
  expect(values.length).toBeGreaterThan(1);
  expect(severity(values[0]!)).not.toBe(0);
  expect(values.slice(1, -1).every((value) => severity(value) === 0)).toBe(true);
});

/** Reads the StartOfOnlineArchive property of `hist.temp`'s HA Configuration, in ms since the epoch. */
async function readStartOfOnlineArchive(): Promise<number> {
  const result = await client.session.translateBrowsePath({
    startingNode: node,
    relativePath: {
      elements: [
        {
          referenceTypeId: resolveNodeId("HasHistoricalConfiguration"),
          isInverse: false,
          includeSubtypes: true,
          targetName: { namespaceIndex: 0, name: "HA Configuration" },
        },
        {
          referenceTypeId: resolveNodeId("HasProperty"),
          isInverse: false,
          includeSubtypes: true,
          targetName: { namespaceIndex: 0, name: "StartOfOnlineArchive" },
        },
      ],
    },
  } as never);
  expect(result.statusCode.value).toBe(StatusCodes.Good.value);
  const value = await client.session.read({ nodeId: result.targets![0]!.targetId, attributeId: AttributeIds.Value });
  expect(value.statusCode.value).toBe(StatusCodes.Good.value);
  return (value.value.value as Date).getTime();
}

test("fix16m: each historical node's StartOfOnlineArchive (Part 11) is the store's horizon, read live", async () => {
  const readStart = readStartOfOnlineArchive;
  expect(await readStart()).toBe(store.retainedFrom);
  await writeTemp(T0 + 1_200_000);
  // The horizon moved: read live, not a copy taken at start.
  expect(await readStart()).toBe(store.retainedFrom);
  expect(store.retainedFrom).toBeGreaterThan(T0 + 1_200_000);
});

test("fix16o: samples stamped ahead of the clock (a device an hour ahead) do not move StartOfOnlineArchive into the future (adv16n L1)", async () => {
  const ahead = Date.now() + 3_600_000;
  await system.unchecked.store.samples.writeBatch(
    Array.from({ length: 30 }, (_, i) => ({
      tag: "hist.temp",
      timestamp: ahead + i * 1_000,
      value: i,
      quality: quality("good"),
    })),
  );
  const start = await readStartOfOnlineArchive();
  expect(start).toBe(store.retainedFrom);
  // Before: the stamp of an evicted ahead sample's successor, an hour in the future.
  expect(start).toBeLessThanOrEqual(Date.now());
});
