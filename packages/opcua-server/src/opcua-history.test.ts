import { KilnError, MemoryStore, quality } from "@kiln/core";
import { describe, expect, test } from "vitest";
import {
  HISTORIAN_CALCULATED,
  HISTORIAN_INTERPOLATED,
  type HistoryHost,
  HistoryService,
  historyStatusOfError,
  statusCodeOfAggregate,
} from "./opcua-history";
import { loadServerRuntime } from "./opcua-server-runtime-loader";

describe("statusCodeOfAggregate (Part 13 quality of a Kiln aggregate)", () => {
  test("good is Good with the HistorianCalculated bit, Interpolative with HistorianInterpolated", () => {
    expect(statusCodeOfAggregate("Average", { value: 1, quality: quality("good") })).toBe(HISTORIAN_CALCULATED);
    expect(statusCodeOfAggregate("Interpolative", { value: 1, quality: quality("good") })).toBe(HISTORIAN_INTERPOLATED);
  });

  test("uncertain is UncertainDataSubNormal unless it has its own uncertain code, never good", () => {
    const resting = statusCodeOfAggregate("Average", { value: 1, quality: quality("uncertain", "rests on bad data") });
    expect(resting).toBe((0x40a40000 | HISTORIAN_CALCULATED) >>> 0);
    const own = statusCodeOfAggregate("Maximum", { value: 1, quality: quality("uncertain", "x", 0x40900000) });
    expect(own).toBe((0x40900000 | HISTORIAN_CALCULATED) >>> 0);
  });

  test("bad with no data is BadNoData; a bad result keeps its own code (overflow: BadOutOfRange)", () => {
    expect(statusCodeOfAggregate("Average", { value: null, quality: quality("bad", "no data") })).toBe(0x809b0000);
    expect(statusCodeOfAggregate("Total", { value: null, quality: quality("bad", "overflow", 0x803c0000) })).toBe(
      0x803c0000,
    );
    // a null value is never served good or uncertain
    expect(statusCodeOfAggregate("Average", { value: null, quality: quality("good") })).toBe(0x809b0000);
  });
});

describe("historyStatusOfError", () => {
  test("maps Kiln's errors of the history port to Bad codes", () => {
    expect(historyStatusOfError(new KilnError("KILN_VALIDATION", "x"))).toBe(0x80ab0000);
    expect(historyStatusOfError(new KilnError("KILN_TIMEOUT", "x"))).toBe(0x800a0000);
    expect(historyStatusOfError(new KilnError("KILN_LIFECYCLE", "x"))).toBe(0x80040000);
    expect(historyStatusOfError(new Error("boom"))).toBe(0x80020000);
  });

  test("a raw page continuing across samples the store evicted is BadContinuationPointInvalid (#16 fix16b)", async () => {
    const store = new MemoryStore({ retention: { maxSamples: 2 } });
    await store.open([]);
    const T0 = Date.UTC(2026, 0, 1);
    await store.samples.writeBatch(
      [0, 1, 2, 3].map((i) => ({ tag: "t", value: i, timestamp: T0 + i, quality: quality("good") })),
    );
    const error = await store.samples
      .readSamples({ tag: "t", from: T0, to: T0 + 10, after: T0 })
      .catch((caught: unknown) => caught);
    expect(historyStatusOfError(error)).toBe(0x804a0000);
  });

  test("a first raw read over samples the store evicted is BadDataLost, not an invalid continuation point (#16 fix16m)", async () => {
    const store = new MemoryStore({ retention: { maxSamples: 2 } });
    await store.open([]);
    const T0 = Date.UTC(2026, 0, 1);
    await store.samples.writeBatch(
      [0, 1, 2, 3].map((i) => ({ tag: "t", value: i, timestamp: T0 + i, quality: quality("good") })),
    );
    const error = await store.samples
      .readSamples({ tag: "t", from: T0, to: T0 + 10 })
      .catch((caught: unknown) => caught);
    expect(historyStatusOfError(error)).toBe(0x809d0000);
  });
});

describe("a MemoryStore aggregate over evicted history is served Uncertain, never Good (#16 fix16b)", () => {
  test("the marked quality maps to UncertainDataSubNormal with HistorianCalculated", async () => {
    const store = new MemoryStore({ retention: { maxSamples: 2 } });
    const T0 = Date.UTC(2026, 0, 1);
    await store.open([{ name: "t", dataType: "float64" } as never]);
    await store.samples.writeBatch(
      [0, 10, 20, 30].map((i) => ({ tag: "t", value: i, timestamp: T0 + i, quality: quality("good") })),
    );
    const [interval] = await store.history.aggregate(["t"], {
      start: T0 + 10,
      end: T0 + 40,
      intervalMs: 30,
      aggregates: ["Count"],
    });
    expect(statusCodeOfAggregate("Count", interval!.values.Count!)).toBe((0x40a40000 | HISTORIAN_CALCULATED) >>> 0);
  });
});

describe("StartOfOnlineArchive (#16 fix16m)", () => {
  const serviceOver = async (samples: HistoryHost["history"]["samples"]) =>
    new HistoryService(await loadServerRuntime(), { history: { samples } } as unknown as HistoryHost);

  test("a store that keeps everything (no retainedFrom) serves none: no invented time", async () => {
    const store = new MemoryStore();
    const { retainedFrom: _dropped, ...keepsEverything } = store.samples;
    expect((await serviceOver(keepsEverything)).startOfOnlineArchive()).toBeUndefined();
  });

  test("a bounded store serves its horizon, read at each call; null while nothing was evicted", async () => {
    const store = new MemoryStore({ retention: { maxSamples: 2 } });
    await store.open([]);
    const read = (await serviceOver(store.samples)).startOfOnlineArchive()!;
    expect(read().value.value).toBeNull();
    const T0 = Date.UTC(2026, 0, 1);
    await store.samples.writeBatch(
      [0, 1, 2, 3].map((i) => ({ tag: "t", value: i, timestamp: T0 + i, quality: quality("good") })),
    );
    expect((read().value.value as Date).getTime()).toBe(store.retainedFrom);
  });
});
