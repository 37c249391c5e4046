import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import {
  Authorizer,
  createControlSystem,
  defaultRoleTable,
  defineTags,
  MemoryStore,
  type Principal,
  quality,
  type Sample,
  SimulatedPlc,
  type Store,
} from "@kiln/core";
import { PostgresStore } from "@kiln/store-postgres";
import {
  AttributeIds,
  type DataValue,
  type HistoryData,
  HistoryReadRequest,
  ReadAtTimeDetails,
  ReadProcessedDetails,
  ReadRawModifiedDetails,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua-client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import {
  AGGREGATE_FUNCTION_NODE_IDS,
  OpcuaServer,
  type OpcuaUserIdentity,
  statusCodeOfAggregate,
  statusCodeOfSample,
} from "../src/index";
import { connect, makeTestPki, type TestPki, USERS } from "./support/opcua-fixture";

const tags = defineTags({
  "hist.temp": { dataType: "float64", unit: "degC" },
  "hist.valve": { dataType: "bool" },
  "hist.counter": { dataType: "uint64" },
  "live.only": { dataType: "float64", logging: { mode: "none" } },
});

const T0 = Date.UTC(2026, 0, 1, 8, 0, 0);
const COUNT = 40;
/** 40 samples 1 s apart; the 11th is bad (a sensor failure) and keeps its value, the 21st uncertain. */
const HISTORY: Sample[] = Array.from({ length: COUNT }, (_, i) => ({
  tag: "hist.temp",
  timestamp: T0 + i * 1_000,
  value: 20 + i * 1.5,
  quality:
    i === 10
      ? quality("bad", "sensor failure", 0x808b0000)
      : i === 20
        ? quality("uncertain", "last usable", 0x40900000)
        : quality("good"),
}));

/** A uint64 counter near 2^64 and 2^63 (history docs' example): its Delta is a negative exact integer. */
const COUNTER: Sample[] = [2n ** 64n - 2n, 2n ** 64n - 1n, 2n ** 63n, 2n ** 63n - 1n].map((value, i) => ({
  tag: "hist.counter",
  timestamp: T0 + i * 1_000,
  value,
  quality: quality("good"),
}));

const ROLES = { ...defaultRoleTable(), blind: [] };
const BOB = { password: "blind-Pa55", principal: { id: "bob", roles: ["blind"] } satisfies Principal };

function identify(identity: OpcuaUserIdentity): Principal | undefined {
  if (identity.type !== "username") return undefined;
  if (identity.userName === "bob") return identity.password === BOB.password ? BOB.principal : undefined;
  const known = USERS[identity.userName];
  return known && known.password === identity.password ? known.principal : undefined;
}

/** A store of each kind: MemoryStore, and PostgreSQL (DATABASE_URL, else PGlite) on a schema of its own. */
const STORES: { name: string; make(): Promise<{ store: Store; close(): Promise<void> }> }[] = [
  { name: "MemoryStore", make: async () => ({ store: new MemoryStore(), close: async () => undefined }) },
  {
    name: process.env.DATABASE_URL
      ? "PostgresStore (DATABASE_URL)"
      : "PostgresStore (PGlite; set DATABASE_URL for the server)",
    make: async () => {
      const schema = `kiln_uahist_${process.pid}_${randomBytes(4).toString("hex")}`;
      if (process.env.DATABASE_URL) {
        const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
        return {
          store: new PostgresStore({ pool, schema }),
          close: async () => {
            await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
            await pool.end();
          },
        };
      }
      const pglite = await PGlite.create();
      return { store: new PostgresStore({ pglite, schema }), close: () => pglite.close() };
    },
  },
];

/**
 * Waits until the system's logger has stored a good live `hist.temp` sample (the simulated PLC's,
 * at about now): it is the later bounding value of every time after HISTORY's last sample. A
 * test that reads such times twice (over OPC UA, then `valueAt` as the oracle) would otherwise
 * compare two states of the store when the first flush lands between the reads, as it did on a
 * loaded machine (78.5, held past the last sample, against 78.49997, sloped toward the live 0).
 */
async function untilLiveSampleStored(system: { history: { samples: SampleHistoryReader } }): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const live = await system.history.samples.readSamples({
      tag: "hist.temp",
      from: T0 + COUNT * 1_000,
      to: Date.now() + 60_000,
      limit: 10,
    });
    if (live.some((sample) => sample.quality.severity === "good")) return;
    if (Date.now() > deadline) throw new Error("no live hist.temp sample was stored within 30 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The part of `system.history.samples` {@link untilLiveSampleStored} reads. */
interface SampleHistoryReader {
  readSamples(query: { tag: string; from: number; to: number; limit: number }): Promise<readonly Sample[]>;
}

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki?.dispose();
});

describe.each(STORES)("HistoryRead from $name", ({ make }) => {
  let close: () => Promise<void>;
  let system: ReturnType<typeof createControlSystem>;
  let server: OpcuaServer;
  let client: Awaited<ReturnType<typeof connect>>;
  let node: string;
  /** The store's own sample reads (system.history.samples is a frozen view of them). */
  let storeSamples: { readSamples: (...args: never[]) => unknown };

  beforeAll(async () => {
    const made = await make();
    storeSamples = made.store.samples as unknown as typeof storeSamples;

    system = createControlSystem({
      machineId: "reactor-1",
      tags,
      driver: new SimulatedPlc({ tags }),
      store: made.store,
      scanGroups: { default: { periodMs: 200 } },
      authorization: { roles: ROLES },
    });
    server = new OpcuaServer(system, {
      port: 0,
      host: "127.0.0.1",
      pki: { dir: pki.serverDir },
      identify,
      authorizer: new Authorizer({ roles: ROLES }),
    });
    await system.start();
    await system.ready();
    await system.unchecked.store.samples.writeBatch([...HISTORY, ...COUNTER]);
    await untilLiveSampleStored(system);
    await server.start();
    client = await connect(server, pki.trusted, {
      type: UserTokenType.UserName,
      userName: "vic",
      password: USERS.vic!.password,
    });
    node = server.nodeIdOf("hist.temp");
    close = async () => {
      await client?.close();
      await server?.stop();
      await system?.stop();
      await made.close();
    };
  }, 60_000);

  afterAll(async () => {
    await close?.();
  });

  async function read(
    details: unknown,
    nodesToRead: { nodeId: string; continuationPoint?: Buffer | undefined }[],
    session = client.session,
  ) {
    const response = await session.historyRead(
      new HistoryReadRequest({
        historyReadDetails: details as ReadRawModifiedDetails,
        nodesToRead,
        timestampsToReturn: TimestampsToReturn.Source,
        releaseContinuationPoints: false,
      }),
    );
    return response.results ?? [];
  }

  const raw = (start: number, end: number, numValuesPerNode = 0, extra: Partial<ReadRawModifiedDetails> = {}) =>
    new ReadRawModifiedDetails({
      startTime: new Date(start),
      endTime: new Date(end),
      numValuesPerNode,
      isReadModified: false,
      returnBounds: false,
      ...extra,
    });

  const valuesOf = (result: { historyData?: unknown }): DataValue[] =>
    ((result.historyData as HistoryData | undefined)?.dataValues ?? []) as DataValue[];

  const asPlain = (values: DataValue[]) =>
    values.map((v) => ({
      t: v.sourceTimestamp?.getTime(),
      value: v.value.value as unknown,
      code: v.statusCode.value >>> 0,
    }));

  test("tags the store logs are Historizing with AccessLevel HistoryRead; unlogged tags are not", async () => {
    const [historizing, access, unlogged] = await client.session.read([
      { nodeId: node, attributeId: AttributeIds.Historizing },
      { nodeId: node, attributeId: AttributeIds.AccessLevel },
      { nodeId: server.nodeIdOf("live.only"), attributeId: AttributeIds.Historizing },
    ]);
    expect(historizing!.value.value).toBe(true);
    expect((access!.value.value as number) & 0x04).toBe(0x04);
    expect(unlogged!.value.value).toBe(false);
    const capabilities = await client.session.read([
      { nodeId: "i=11193", attributeId: AttributeIds.Value }, // AccessHistoryDataCapability
      { nodeId: "i=11273", attributeId: AttributeIds.Value }, // MaxReturnDataValues
      { nodeId: "i=11196", attributeId: AttributeIds.Value }, // InsertDataCapability
      { nodeId: "i=2737", attributeId: AttributeIds.Value }, // MaxHistoryContinuationPoints
    ]);
    expect(capabilities.map((c) => c.value.value)).toEqual([true, 1_000, false, 10]);
    for (const folder of ["i=11201", "i=2997"]) {
      const browsed = await client.session.browse(folder);
      const listed = (browsed.references ?? []).map((reference) => Number(reference.nodeId.value)).sort();
      expect(listed).toEqual(Object.values(AGGREGATE_FUNCTION_NODE_IDS).sort());
    }
  });

  test("raw values, timestamps and status codes equal system.history (bad stays bad, with no value)", async () => {
    const [result] = await read(raw(T0, T0 + COUNT * 1_000), [{ nodeId: node }]);
    expect(result!.statusCode.isGood()).toBe(true);
    const expected = await system.history.samples.readSamples({ tag: "hist.temp", from: T0, to: T0 + COUNT * 1_000 });
    expect(expected).toHaveLength(COUNT);
    // A Bad DataValue carries no value (Part 4, 7.7.1): the stored bad sample keeps its 35, the client gets null.
    expect(asPlain(valuesOf(result!))).toEqual(
      expected.map((s) => ({
        t: s.timestamp,
        value: statusCodeOfSample(s) >= 0x80000000 ? null : s.value,
        code: statusCodeOfSample(s),
      })),
    );
    expect(expected[10]!.value).toBe(35);
    expect(valuesOf(result!)[10]!.statusCode.value >>> 0).toBe(0x808b0000);
    expect(valuesOf(result!)[10]!.value.value ?? null).toBeNull();
    // An Uncertain sample keeps its value.
    expect(valuesOf(result!)[20]!.statusCode.value >>> 0).toBe(0x40900000);
    expect(valuesOf(result!)[20]!.value.value).toBe(50);
  });

  test("a long read comes in pages with continuation points, with no gap or duplicate", async () => {
    const pages: DataValue[][] = [];
    let continuationPoint: Buffer | undefined;
    do {
      const [result] = await read(raw(T0, T0 + COUNT * 1_000, 7), [{ nodeId: node, continuationPoint }]);
      expect(result!.statusCode.isGood()).toBe(true);
      pages.push(valuesOf(result!));
      continuationPoint = result!.continuationPoint ?? undefined;
      if (continuationPoint && continuationPoint.length === 0) continuationPoint = undefined;
    } while (continuationPoint);
    expect(pages.length).toBe(6);
    expect(pages.slice(0, 5).every((page) => page.length === 7)).toBe(true);
    expect(pages.flat().map((v) => v.sourceTimestamp!.getTime())).toEqual(HISTORY.map((s) => s.timestamp));
  });

  test("a continuation point read on with other details answers BadContinuationPointInvalid and stays usable", async () => {
    const [first] = await read(raw(T0, T0 + COUNT * 1_000, 7), [{ nodeId: node }]);
    const point = first!.continuationPoint!;
    expect(point.length).toBeGreaterThan(0);
    // Another range, another page size, bounds asked: each is not the read the point continues.
    for (const other of [
      raw(T0 + 10_000, T0 + 20_000, 7),
      raw(T0, T0 + COUNT * 1_000, 3),
      raw(T0, T0 + COUNT * 1_000, 7, { returnBounds: true }),
    ]) {
      const [changed] = await read(other, [{ nodeId: node, continuationPoint: point }]);
      expect(changed!.statusCode.value).toBe(StatusCodes.BadContinuationPointInvalid.value);
      expect(valuesOf(changed!)).toEqual([]);
    }
    // Nothing changed: the same details read on from where the first page ended.
    const [next] = await read(raw(T0, T0 + COUNT * 1_000, 7), [{ nodeId: node, continuationPoint: point }]);
    expect(next!.statusCode.isGood()).toBe(true);
    expect(valuesOf(next!).map((v) => v.sourceTimestamp!.getTime())).toEqual(
      HISTORY.slice(7, 14).map((sample) => sample.timestamp),
    );
    const rest = next!.continuationPoint;
    if (rest?.length) {
      const response = await client.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: raw(T0, T0 + 1, 1),
          nodesToRead: [{ nodeId: node, continuationPoint: rest }],
          timestampsToReturn: TimestampsToReturn.Source,
          releaseContinuationPoints: true, // a release frees the point whatever details it names
        }),
      );
      expect(response.results![0]!.statusCode.isGood()).toBe(true);
    }
  });

  test("start after end reads newest first, paged", async () => {
    const times: number[] = [];
    let continuationPoint: Buffer | undefined;
    do {
      const [result] = await read(raw(T0 + 30_000, T0 + 5_000, 10), [{ nodeId: node, continuationPoint }]);
      times.push(...valuesOf(result!).map((v) => v.sourceTimestamp!.getTime()));
      continuationPoint = result!.continuationPoint?.length ? result!.continuationPoint : undefined;
    } while (continuationPoint);
    // (end, start]: 30 s down to 6 s.
    expect(times).toEqual(Array.from({ length: 25 }, (_, i) => T0 + (30 - i) * 1_000));
  });

  test("returnBounds adds the bounding values, BadBoundNotFound where there is none", async () => {
    const [result] = await read(raw(T0 + 2_500, T0 + 5_500, 0, { returnBounds: true }), [{ nodeId: node }]);
    expect(valuesOf(result!).map((v) => v.sourceTimestamp!.getTime())).toEqual(
      [2, 3, 4, 5, 6].map((s) => T0 + s * 1_000),
    );
    // One value per page: the bounds take pages of their own.
    const paged: number[] = [];
    let continuationPoint: Buffer | undefined;
    do {
      const [page] = await read(raw(T0 + 2_500, T0 + 5_500, 1, { returnBounds: true }), [
        { nodeId: node, continuationPoint },
      ]);
      expect(valuesOf(page!)).toHaveLength(1);
      paged.push(valuesOf(page!)[0]!.sourceTimestamp!.getTime());
      continuationPoint = page!.continuationPoint?.length ? page!.continuationPoint : undefined;
    } while (continuationPoint);
    expect(paged).toEqual([2, 3, 4, 5, 6].map((s) => T0 + s * 1_000));
    const [before] = await read(raw(T0 - 5_000, T0 + 1_000, 0, { returnBounds: true }), [{ nodeId: node }]);
    expect(valuesOf(before!)[0]!.statusCode.value >>> 0).toBe(0x80d70000);
  });

  test("ReadModified is not supported", async () => {
    const [result] = await read(raw(T0, T0 + 10_000, 0, { isReadModified: true }), [{ nodeId: node }]);
    expect(result!.statusCode.value >>> 0).toBe(0x80720000);
  });

  test("AtTime equals system.history valueAt, interpolated between samples", async () => {
    const times = [T0 + 2_000, T0 + 2_500, T0 + 10_500, T0 - 60_000];
    const [result] = await read(
      new ReadAtTimeDetails({ reqTimes: times.map((t) => new Date(t)), useSimpleBounds: false }),
      [{ nodeId: node }],
    );
    const values = valuesOf(result!);
    expect(values).toHaveLength(times.length);
    for (const [i, time] of times.entries()) {
      const [expected] = await system.history.queries!.valueAt(["hist.temp"], time);
      expect(values[i]!.sourceTimestamp!.getTime()).toBe(time);
      expect(values[i]!.value.value ?? null).toBe(expected!.value);
      expect((values[i]!.statusCode.value & 0xc0000000) >>> 0).toBe((statusCodeOfSample(expected!) & 0xc0000000) >>> 0);
    }
    expect(values[0]!.statusCode.value >>> 0).toBe(0); // a raw good sample: no info bits
    expect(values[1]!.statusCode.value & 0x0402).toBe(0x0402); // interpolated
    expect(values[3]!.statusCode.isBad()).toBe(true); // nothing before
  });

  test("a store whose sample read throws synchronously answers that node Bad, and the server goes on", async () => {
    const readSamples = vi.spyOn(storeSamples, "readSamples").mockImplementation(() => {
      throw new Error("store driver bug");
    });
    try {
      const [result] = await read(raw(T0, T0 + 10_000), [{ nodeId: node }]);
      expect(result!.statusCode.isBad()).toBe(true);
      expect(readSamples).toHaveBeenCalled();
    } finally {
      readSamples.mockRestore();
    }
    const [again] = await read(raw(T0, T0 + 10_000), [{ nodeId: node }]);
    expect(again!.statusCode.isGood()).toBe(true);
    expect(valuesOf(again!).length).toBeGreaterThan(0);
  });

  test("AtTime of 1,000 evenly spaced times is one valuesAt read and no raw read, with each time's valueAt", async () => {
    const times = Array.from({ length: 1_000 }, (_, index) => T0 - 1_000 + index * 250);
    const queries = system.history.queries!;
    const spies = [
      vi.spyOn(queries, "valuesAt"),
      vi.spyOn(queries, "valueAt"),
      vi.spyOn(queries, "interpolated"),
      vi.spyOn(storeSamples, "readSamples"),
    ];
    try {
      const [result] = await read(
        new ReadAtTimeDetails({ reqTimes: times.map((t) => new Date(t)), useSimpleBounds: false }),
        [{ nodeId: node }],
      );
      expect(spies.map((spy) => spy.mock.calls.length)).toEqual([1, 0, 0, 0]);
      const values = valuesOf(result!);
      expect(values).toHaveLength(times.length);
      for (const [i, time] of times.entries()) {
        if (i % 50 !== 0 && i !== 12) continue; // 12: T0 + 2 s, a raw good sample
        const [expected] = await queries.valueAt(["hist.temp"], time);
        expect(values[i]!.sourceTimestamp!.getTime()).toBe(time);
        expect(values[i]!.value.value ?? null).toBe(expected!.value);
        expect((values[i]!.statusCode.value & 0xc0000000) >>> 0).toBe(
          (statusCodeOfSample(expected!) & 0xc0000000) >>> 0,
        );
      }
      expect(values[12]!.statusCode.value >>> 0).toBe(0); // a raw good sample: no info bits
      expect(values[13]!.statusCode.value & 0x0402).toBe(0x0402); // between samples: interpolated
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  test("AtTime of 1,000 uneven, unsorted, repeated times is one store read (was one valueAt per time, and a raw read per time over a dense span)", async () => {
    // Uneven, unsorted and repeated times across HISTORY and the live samples after it (the
    // simulated PLC's, every 200 ms), so the span holds more samples than maxValuesPerNode. The
    // store's one read is one statement (store-postgres test/history-values-at.test.ts).
    const live = Date.now();
    const times = Array.from({ length: 1_000 }, (_, index) =>
      index % 10 === 0 ? T0 + (index % 40) * 1_000 : T0 + Math.floor(((index * 7_919) % 1_000) * ((live - T0) / 1_000)),
    );
    const queries = system.history.queries!;
    const valuesAt = vi.spyOn(queries, "valuesAt");
    const valueAt = vi.spyOn(queries, "valueAt");
    const readSamples = vi.spyOn(storeSamples, "readSamples");
    try {
      const [result] = await read(
        new ReadAtTimeDetails({ reqTimes: times.map((t) => new Date(t)), useSimpleBounds: false }),
        [{ nodeId: node }],
      );
      expect([valuesAt.mock.calls.length, valueAt.mock.calls.length, readSamples.mock.calls.length]).toEqual([1, 0, 0]);
      const values = valuesOf(result!);
      expect(values.map((value) => value.sourceTimestamp!.getTime())).toEqual(times);
      const expected = await queries.valuesAt(["hist.temp"], times);
      for (const [i, value] of values.entries()) {
        expect(value.value.value ?? null).toBe(expected[i]!.value);
        // Raw (no info bits) exactly where a good sample is stored at the time; else Interpolated.
        if (expected[i]!.quality.severity !== "bad") {
          expect(value.statusCode.value & 0x0402).toBe(expected[i]!.raw ? 0 : 0x0402);
        }
      }
      expect(expected.filter((value) => value.raw).length).toBeGreaterThan(0);
    } finally {
      valuesAt.mockRestore();
      valueAt.mockRestore();
      readSamples.mockRestore();
    }
  });

  test.each(["Average", "Minimum", "Maximum", "Count", "TimeAverage", "Interpolative"] as const)(
    "Processed %s equals system.history.aggregate, with Part 13 status codes",
    async (aggregate) => {
      const start = T0;
      const end = T0 + COUNT * 1_000;
      const [result] = await read(
        new ReadProcessedDetails({
          startTime: new Date(start),
          endTime: new Date(end),
          processingInterval: 5_000,
          aggregateConfiguration: { useServerCapabilitiesDefaults: true },
          aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS[aggregate]}`],
        }),
        [{ nodeId: node }],
      );
      expect(result!.statusCode.isGood()).toBe(true);
      const expected = await system.history.queries!.aggregate(["hist.temp"], {
        start,
        end,
        intervalMs: 5_000,
        aggregates: [aggregate],
      });
      const values = valuesOf(result!);
      expect(values).toHaveLength(expected.length);
      for (const [i, row] of expected.entries()) {
        const value = row.values[aggregate]!;
        expect(values[i]!.sourceTimestamp!.getTime()).toBe(row.start);
        expect(values[i]!.value.value ?? null).toBe(value.value);
        expect(values[i]!.statusCode.value >>> 0).toBe(statusCodeOfAggregate(aggregate, value));
      }
      const severity = (value: DataValue) => (value.statusCode.value & 0xc0000000) >>> 0;
      // The interval holding the bad sample (10 s to 15 s) is never good; the first one is, and calculated.
      if (aggregate !== "Interpolative") expect(severity(values[2]!)).not.toBe(0);
      expect(severity(values[0]!)).toBe(0);
      expect(values[0]!.statusCode.value & 0x0403).toBe(aggregate === "Interpolative" ? 0x0402 : 0x0401);
    },
  );

  test("a huge processingInterval is one interval over the range or a Bad code, never a crash", async () => {
    const start = T0;
    const end = T0 + COUNT * 1_000;
    const processed = (processingInterval: number, from = start, to = end) =>
      new ReadProcessedDetails({
        startTime: new Date(from),
        endTime: new Date(to),
        processingInterval,
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
        aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Average}`],
      });
    const [whole] = await system.history.queries!.aggregate(["hist.temp"], {
      start,
      end,
      intervalMs: end - start,
      aggregates: ["Average"],
    });
    for (const interval of [1e15, 2 ** 53, Number.MAX_VALUE]) {
      const [result] = await read(processed(interval), [{ nodeId: node }]);
      expect(result!.statusCode.isGood()).toBe(true);
      const values = valuesOf(result!);
      expect(values).toHaveLength(1);
      expect(values[0]!.sourceTimestamp!.getTime()).toBe(start);
      expect(values[0]!.value.value ?? null).toBe(whole!.values.Average!.value);
    }
    // Reversed, the range is not a whole number of such intervals: refused, as any such reverse read.
    const [reverse] = await read(processed(1e15, end, start), [{ nodeId: node }]);
    expect(reverse!.statusCode.value >>> 0).toBe(0x80ab0000); // BadInvalidArgument
    for (const interval of [Number.POSITIVE_INFINITY, Number.NaN, -1, 0.5]) {
      const [result] = await read(processed(interval), [{ nodeId: node }]);
      expect(result!.statusCode.value >>> 0).toBe(0x80ab0000);
    }
  });

  test("a processed read's continuation point read on with another aggregate or interval is refused", async () => {
    const processed = (aggregate: number, processingInterval: number) =>
      new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + COUNT * 1_000),
        processingInterval,
        aggregateType: [`i=${aggregate}`],
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
      });
    const [first] = await read(processed(AGGREGATE_FUNCTION_NODE_IDS.Count, 10), [{ nodeId: node }]);
    const point = first!.continuationPoint!;
    expect(point.length).toBeGreaterThan(0);
    for (const other of [
      processed(AGGREGATE_FUNCTION_NODE_IDS.Maximum, 10),
      processed(AGGREGATE_FUNCTION_NODE_IDS.Count, 20),
    ]) {
      const [changed] = await read(other, [{ nodeId: node, continuationPoint: point }]);
      expect(changed!.statusCode.value).toBe(StatusCodes.BadContinuationPointInvalid.value);
    }
    const [next] = await read(processed(AGGREGATE_FUNCTION_NODE_IDS.Count, 10), [
      { nodeId: node, continuationPoint: point },
    ]);
    expect(next!.statusCode.isGood()).toBe(true);
    expect(valuesOf(next!)[0]!.sourceTimestamp!.getTime()).toBe(T0 + 1_000 * 10);
    const rest = next!.continuationPoint;
    if (rest?.length) {
      await client.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: processed(AGGREGATE_FUNCTION_NODE_IDS.Count, 10),
          nodesToRead: [{ nodeId: node, continuationPoint: rest }],
          timestampsToReturn: TimestampsToReturn.Source,
          releaseContinuationPoints: true,
        }),
      );
    }
  });

  test("a processed read of more intervals than a page continues, with no gap or duplicate", async () => {
    const start = T0;
    const end = T0 + COUNT * 1_000; // 4,000 intervals of 10 ms: 4 pages of 1,000
    const details = new ReadProcessedDetails({
      startTime: new Date(start),
      endTime: new Date(end),
      processingInterval: 10,
      aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Count}`],
      aggregateConfiguration: { useServerCapabilitiesDefaults: true },
    });
    const values: DataValue[] = [];
    let pages = 0;
    let continuationPoint: Buffer | undefined;
    do {
      const [result] = await read(details, [{ nodeId: node, continuationPoint }]);
      expect(result!.statusCode.isGood()).toBe(true);
      values.push(...valuesOf(result!));
      pages++;
      continuationPoint = result!.continuationPoint?.length ? result!.continuationPoint : undefined;
    } while (continuationPoint);
    expect(pages).toBe(4);
    expect(values.map((v) => v.sourceTimestamp!.getTime())).toEqual(
      Array.from({ length: 4_000 }, (_, i) => start + i * 10),
    );
    const expected = await system.history.queries!.aggregate(["hist.temp"], {
      start,
      end,
      intervalMs: 10,
      aggregates: ["Count"],
    });
    // An interval without data is Bad (no data) and, Bad, carries no value (Part 4, 7.7.1).
    expect(values.map((v) => v.value.value ?? null)).toEqual(
      expected.map((row) => (row.values.Count!.quality.severity === "bad" ? null : row.values.Count!.value)),
    );
  });

  test("64-bit integers stay exact: raw values as UInt64, a negative Delta of a uint64 tag as Int64", async () => {
    const counter = server.nodeIdOf("hist.counter");
    const words = (value: bigint) => {
      const bits = BigInt.asUintN(64, value);
      return [Number(bits >> 32n), Number(bits & 0xffffffffn)];
    };
    const [rawResult] = await read(raw(T0, T0 + 4_000), [{ nodeId: counter }]);
    expect(valuesOf(rawResult!).map((v) => v.value.value)).toEqual(COUNTER.map((s) => words(s.value as bigint)));
    const [delta] = await read(
      new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 4_000),
        processingInterval: 0,
        aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Delta}`],
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
      }),
      [{ nodeId: counter }],
    );
    const [expected] = await system.history.queries!.aggregate(["hist.counter"], {
      start: T0,
      end: T0 + 4_000,
      intervalMs: 4_000,
      aggregates: ["Delta"],
    });
    expect(expected!.values.Delta!.value).toBe(-(2n ** 63n) + 1n);
    expect(delta!.statusCode.toString()).toBe("Good (0x00000000)");
    const [value] = valuesOf(delta!);
    expect(value!.value.dataType).toBe(8); // Int64
    expect(value!.value.value).toEqual(words(-(2n ** 63n) + 1n));
  });

  test("a reverse processed read returns the intervals newest first", async () => {
    const [result] = await read(
      new ReadProcessedDetails({
        startTime: new Date(T0 + 20_000),
        endTime: new Date(T0),
        processingInterval: 5_000,
        aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Maximum}`],
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
      }),
      [{ nodeId: node }],
    );
    const expected = await system.history.queries!.aggregate(["hist.temp"], {
      start: T0,
      end: T0 + 20_000,
      intervalMs: 5_000,
      aggregates: ["Maximum"],
    });
    expect(valuesOf(result!).map((v) => v.value.value ?? null)).toEqual(
      expected.map((row) => row.values.Maximum!.value).reverse(),
    );
  });

  test("an aggregate configuration other than Kiln's is rejected", async () => {
    const [result] = await read(
      new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 10_000),
        processingInterval: 5_000,
        aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS.Average}`],
        aggregateConfiguration: {
          useServerCapabilitiesDefaults: false,
          treatUncertainAsBad: false,
          percentDataBad: 100,
          percentDataGood: 100,
        },
      }),
      [{ nodeId: node }],
    );
    expect(result!.statusCode.value >>> 0).toBe(0x80da0000);
  });

  test("a tag the store does not log has no history; too many nodes are refused", async () => {
    const [unlogged] = await read(raw(T0, T0 + 10_000), [{ nodeId: server.nodeIdOf("live.only") }]);
    expect(unlogged!.statusCode.isBad()).toBe(true);
    await expect(
      read(
        raw(T0, T0 + 10_000, 1),
        Array.from({ length: 101 }, () => ({ nodeId: node })),
      ),
    ).rejects.toThrow(/BadTooManyOperations/);
  });

  test("an aggregate Kiln does not compute answers BadAggregateNotSupported", async () => {
    const [result] = await read(
      new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 10_000),
        processingInterval: 5_000,
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
        aggregateType: ["i=2350"], // Range
      }),
      [{ nodeId: node }],
    );
    expect(result!.statusCode.value >>> 0).toBe(0x80d50000);
  });

  test("a ReadProcessed whose aggregates are not one per node answers BadAggregateListMismatch (Part 11, 6.5.4); one per node is read", async () => {
    const details = (aggregates: number[]) =>
      new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 10_000),
        processingInterval: 0,
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
        aggregateType: aggregates.map((id) => `i=${id}`),
      });
    const { Minimum, Maximum } = AGGREGATE_FUNCTION_NODE_IDS;
    await expect(read(details([Minimum, Maximum]), [{ nodeId: node }])).rejects.toThrow(/BadAggregateListMismatch/);
    await expect(read(details([Maximum]), [{ nodeId: node }, { nodeId: node }])).rejects.toThrow(
      /BadAggregateListMismatch/,
    );
    const results = await read(details([Minimum, Maximum]), [{ nodeId: node }, { nodeId: node }]);
    expect(results.map((result) => valuesOf(result)[0]!.value.value)).toEqual([20, 20 + 9 * 1.5]);
  });

  test("a principal without read is refused BadUserAccessDenied", async () => {
    const blind = await connect(server, pki.trusted, {
      type: UserTokenType.UserName,
      userName: "bob",
      password: BOB.password,
    });
    try {
      const [result] = await read(raw(T0, T0 + 10_000), [{ nodeId: node }], blind.session);
      expect(result!.statusCode.value >>> 0).toBe(0x801f0000);
      expect(valuesOf(result!)).toHaveLength(0);
    } finally {
      await blind.close();
    }
  });

  test("a tag read with a folder, an object or the Server node answers per node; the tag's continuation point is handed out, never leaked", async () => {
    const folder = `ns=${server.namespaceIndex};s=#hist`;
    const machine = `ns=${server.namespaceIndex};s=@`;
    for (let call = 0; call < 14; call++) {
      const results = await read(raw(T0, T0 + 10_000, 1), [
        { nodeId: node },
        { nodeId: folder },
        { nodeId: machine },
        { nodeId: "ns=0;i=2253" },
        { nodeId: "ns=0;i=85" },
      ]);
      expect(results[0]!.statusCode.isGood()).toBe(true);
      expect(results[0]!.continuationPoint?.length).toBeGreaterThan(0);
      expect(results.slice(1).map((result) => result.statusCode.value >>> 0)).toEqual([
        0x80720000, 0x80720000, 0x80720000, 0x80720000,
      ]); // BadHistoryOperationUnsupported
      // The client releases what it was given.
      await client.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: raw(T0, T0 + 10_000, 1),
          nodesToRead: [{ nodeId: node, continuationPoint: results[0]!.continuationPoint! }],
          timestampsToReturn: TimestampsToReturn.Source,
          releaseContinuationPoints: true,
        }),
      );
    }
    const [after] = await read(raw(T0, T0 + 10_000, 1), [{ nodeId: node }]);
    expect(after!.statusCode.isGood()).toBe(true);
  });

  test("a variable without history (the Server's CurrentTime) answers BadHistoryOperationUnsupported, not BadUserAccessDenied", async () => {
    const [current] = await read(raw(T0, T0 + 10_000), [{ nodeId: "ns=0;i=2258" }]);
    expect(current!.statusCode.value >>> 0).toBe(0x80720000);
  });

  test("bad input answers a Bad code, never a crash", async () => {
    const [both] = await read(new ReadRawModifiedDetails({ numValuesPerNode: 0, isReadModified: false }), [
      { nodeId: node },
    ]);
    expect(both!.statusCode.value >>> 0).toBe(0x80bd0000);
    const [unknown] = await read(raw(T0, T0 + 10_000, 5), [{ nodeId: node, continuationPoint: Buffer.from("nope") }]);
    expect(unknown!.statusCode.value >>> 0).toBe(0x804a0000);
  });
});
