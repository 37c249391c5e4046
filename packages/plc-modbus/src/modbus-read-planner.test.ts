import { describe, expect, it } from "vitest";
import { KilnValidationError, defineTags, type TagDefinitionInput } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import type { ModbusArea } from "./modbus-address";
import {
  MODBUS_READ_LIMIT_DEFAULTS,
  ModbusReadPlanner,
  planModbusReads,
  readModbusRequest,
  splitModbusReadRequest,
  type ModbusAddressRange,
  type ModbusReadItem,
  type ModbusReadRequest,
  type ModbusReadLimits,
} from "./modbus-read-planner";

const limits = MODBUS_READ_LIMIT_DEFAULTS;
let nextIndex = 0;

function item(address: number, count = 1, area: ModbusArea = "holding-register", unitId = 1): ModbusReadItem {
  return { index: nextIndex++, unitId, area, address, count };
}

/** The request list as plain tuples: [unit, area, address, count]. */
function shape(requests: readonly ModbusReadRequest[]): [number, ModbusArea, number, number][] {
  return requests.map((request) => [request.unitId, request.area, request.address, request.count]);
}

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The fewest requests covering `items` (one unit, one area), found independently of the planner by dynamic
 * programming over the address-sorted items: a request may serve any run of consecutive items whose span fits
 * the limit, whose unused stretches are at most `maxGap` and contain no forbidden address.
 */
function optimalRequestCount(
  items: readonly ModbusReadItem[],
  limit: number,
  maxGap: number,
  forbidden: readonly ModbusAddressRange[] = [],
): number {
  const sorted = [...items].sort((a, b) => a.address - b.address || b.count - a.count);
  const n = sorted.length;
  const feasible = (from: number, to: number): boolean => {
    let start = Infinity;
    let covered = -Infinity;
    for (let index = from; index <= to; index++) {
      const current = sorted[index]!;
      const end = current.address + current.count - 1;
      if (index > from) {
        const gapStart = covered + 1;
        const gapEnd = current.address - 1;
        if (gapEnd >= gapStart) {
          if (gapEnd - gapStart + 1 > maxGap) return false;
          if (forbidden.some((range) => range.start <= gapEnd && range.end >= gapStart)) return false;
        }
      }
      start = Math.min(start, current.address);
      covered = Math.max(covered, end);
      if (covered - start + 1 > limit) return false;
    }
    return true;
  };
  const best = new Array<number>(n + 1).fill(Infinity);
  best[0] = 0;
  for (let end = 1; end <= n; end++) {
    for (let start = end - 1; start >= 0; start--) {
      if (!feasible(start, end - 1)) {
        // Span only grows as the run extends left, but a gap may close: keep looking while the span fits.
        const span = sorted[end - 1]!.address + sorted[end - 1]!.count - sorted[start]!.address;
        if (span > limit) break;
        continue;
      }
      best[end] = Math.min(best[end]!, best[start]! + 1);
    }
  }
  return best[n]!;
}

function expectWithinLimits(
  requests: readonly ModbusReadRequest[],
  items: readonly ModbusReadItem[],
  max: ModbusReadLimits,
): void {
  const served = new Map<number, number>();
  for (const request of requests) {
    const limit =
      request.area === "coil" || request.area === "discrete-input" ? max.maxBitsPerRead : max.maxRegistersPerRead;
    expect(request.count).toBeLessThanOrEqual(limit);
    for (const served_item of request.items) {
      expect(served_item.area).toBe(request.area);
      expect(served_item.unitId).toBe(request.unitId);
      expect(served_item.address).toBeGreaterThanOrEqual(request.address);
      expect(served_item.address + served_item.count).toBeLessThanOrEqual(request.address + request.count);
      served.set(served_item.index, (served.get(served_item.index) ?? 0) + 1);
    }
  }
  expect(served.size).toBe(items.length);
  for (const count of served.values()) expect(count).toBe(1);
}

describe("planModbusReads: exact request lists", () => {
  it("dense map: contiguous registers become one request", () => {
    const items = [...Array.from({ length: 10 }, (_, index) => item(index)), item(10, 2)];
    expect(shape(planModbusReads(items, { limits }))).toEqual([[1, "holding-register", 0, 12]]);
  });

  it("dense map over the limit: 300 registers become 125 + 125 + 50", () => {
    const items = Array.from({ length: 300 }, (_, index) => item(index));
    expect(shape(planModbusReads(items, { limits }))).toEqual([
      [1, "holding-register", 0, 125],
      [1, "holding-register", 125, 125],
      [1, "holding-register", 250, 50],
    ]);
  });

  it("sparse map: tags far apart are read one by one", () => {
    const items = [item(200), item(0), item(100, 2)];
    expect(shape(planModbusReads(items, { limits }))).toEqual([
      [1, "holding-register", 0, 1],
      [1, "holding-register", 100, 2],
      [1, "holding-register", 200, 1],
    ]);
  });

  it("reads through a gap of exactly maxGap registers, not one more", () => {
    expect(shape(planModbusReads([item(0), item(9)], { limits }))).toEqual([[1, "holding-register", 0, 10]]);
    expect(shape(planModbusReads([item(0), item(10)], { limits }))).toEqual([
      [1, "holding-register", 0, 1],
      [1, "holding-register", 10, 1],
    ]);
    const tight = { ...limits, maxGap: 0 };
    expect(shape(planModbusReads([item(0), item(1), item(3)], { limits: tight }))).toEqual([
      [1, "holding-register", 0, 2],
      [1, "holding-register", 3, 1],
    ]);
  });

  it("mixed map: grouped by unit then area, each coalesced on its own", () => {
    const items = [
      item(5, 4, "holding-register", 2),
      item(0, 1, "holding-register"),
      item(3000, 1, "coil"),
      item(0, 1, "coil"),
      item(1, 1, "coil"),
      item(60, 1, "coil"),
      item(10, 1, "discrete-input"),
      item(0, 2, "input-register"),
      item(2, 2, "input-register"),
      item(4, 1, "holding-register"),
    ];
    expect(shape(planModbusReads(items, { limits }))).toEqual([
      [1, "coil", 0, 61],
      [1, "coil", 3000, 1],
      [1, "discrete-input", 10, 1],
      [1, "input-register", 0, 4],
      [1, "holding-register", 0, 5],
      [2, "holding-register", 5, 4],
    ]);
  });

  it("bits: joins through maxBitGap and splits at 2000", () => {
    expect(shape(planModbusReads([item(0, 1, "coil"), item(65, 1, "coil")], { limits }))).toEqual([[1, "coil", 0, 66]]);
    expect(shape(planModbusReads([item(0, 1, "coil"), item(66, 1, "coil")], { limits }))).toHaveLength(2);
    const coils = Array.from({ length: 2500 }, (_, index) => item(index, 1, "coil"));
    expect(shape(planModbusReads(coils, { limits }))).toEqual([
      [1, "coil", 0, 2000],
      [1, "coil", 2000, 500],
    ]);
  });

  it("overlapping tags (a word and its bits) share one request", () => {
    const items = [item(10), item(10), item(10), item(9, 2), item(11)];
    const requests = planModbusReads(items, { limits });
    expect(shape(requests)).toEqual([[1, "holding-register", 9, 3]]);
    expect(requests[0]!.items).toHaveLength(5);
  });

  it("never reads through a forbidden address, but reads a tag that sits in one", () => {
    const forbidden: ModbusAddressRange[] = [{ area: "holding-register", start: 3, end: 3 }];
    expect(shape(planModbusReads([item(0), item(5)], { limits, forbidden }))).toEqual([
      [1, "holding-register", 0, 1],
      [1, "holding-register", 5, 1],
    ]);
    expect(shape(planModbusReads([item(0), item(3), item(5)], { limits, forbidden }))).toEqual([
      [1, "holding-register", 0, 6],
    ]);
    const otherUnit: ModbusAddressRange[] = [{ area: "holding-register", start: 3, end: 3, unitId: 9 }];
    expect(shape(planModbusReads([item(0), item(5)], { limits, forbidden: otherUnit }))).toEqual([
      [1, "holding-register", 0, 6],
    ]);
    const otherArea: ModbusAddressRange[] = [{ area: "input-register", start: 0, end: 100 }];
    expect(shape(planModbusReads([item(0), item(5)], { limits, forbidden: otherArea }))).toHaveLength(1);
  });

  it("never spans a learned barrier", () => {
    const barriers = [{ unitId: 1, area: "holding-register" as const, from: 1, to: 2 }];
    expect(shape(planModbusReads([item(0), item(1), item(2), item(3)], { limits, barriers }))).toEqual([
      [1, "holding-register", 0, 2],
      [1, "holding-register", 2, 2],
    ]);
  });

  it("rejects an item larger than one request", () => {
    expect(() => planModbusReads([item(0, 20)], { limits: { ...limits, maxRegistersPerRead: 10 } })).toThrow(
      RangeError,
    );
  });
});

describe("planModbusReads: limits and optimality on random maps", () => {
  const gaps = [0, 3, 8, 20];
  for (let seed = 1; seed <= 40; seed++) {
    it(`map #${seed} stays within the limits and reaches the optimum`, () => {
      const random = mulberry32(seed);
      const maxGap = gaps[seed % gaps.length]!;
      const maxRegistersPerRead = seed % 5 === 0 ? 40 : 125;
      const max: ModbusReadLimits = { ...limits, maxGap, maxRegistersPerRead };
      const widths = [1, 1, 2, 2, 4];
      const items = Array.from({ length: 50 + Math.floor(random() * 250) }, () =>
        item(Math.floor(random() * 4000), widths[Math.floor(random() * widths.length)]!),
      );
      const forbidden: ModbusAddressRange[] =
        seed % 3 === 0
          ? Array.from({ length: 20 }, () => {
              const start = Math.floor(random() * 4000);
              return { area: "holding-register" as const, start, end: start + Math.floor(random() * 3) };
            })
          : [];
      const requests = planModbusReads(items, { limits: max, forbidden });
      expectWithinLimits(requests, items, max);
      expect(requests.length).toBe(optimalRequestCount(items, maxRegistersPerRead, maxGap, forbidden));
    });
  }

  it("1,000 tags over 4,000 registers: the optimum, never over 125 registers", () => {
    const random = mulberry32(2024);
    const items = Array.from({ length: 1000 }, () => item(Math.floor(random() * 3998), random() < 0.5 ? 1 : 2));
    const requests = planModbusReads(items, { limits });
    expectWithinLimits(requests, items, limits);
    expect(requests.length).toBe(optimalRequestCount(items, 125, limits.maxGap));
  });
});

describe("splitModbusReadRequest", () => {
  it("splits by items in the middle", () => {
    const [request] = planModbusReads([item(0), item(1), item(2), item(3)], { limits });
    const halves = splitModbusReadRequest(request!);
    expect(halves && shape(halves)).toEqual([
      [1, "holding-register", 0, 2],
      [1, "holding-register", 2, 2],
    ]);
  });

  it("prefers a split point between items that do not overlap", () => {
    // The middle (between the 2-register item at 1 and the item at 2) would cut an overlap: split at 1.
    const [request] = planModbusReads([item(0), item(1, 2), item(2), item(3)], { limits });
    const halves = splitModbusReadRequest(request!);
    expect(halves && shape(halves)).toEqual([
      [1, "holding-register", 0, 1],
      [1, "holding-register", 1, 3],
    ]);
  });

  it("cannot split a single item", () => {
    const [request] = planModbusReads([item(7)], { limits });
    expect(splitModbusReadRequest(request!)).toBeUndefined();
  });
});

interface FakeError {
  readonly exception: number;
}

/** A device refusing any read that covers one of `bad` with exception 2; counts reads. */
function fakeDevice(bad: ReadonlySet<number>) {
  const device = {
    calls: 0,
    read: (request: ModbusReadRequest): Promise<number[]> => {
      device.calls++;
      for (let address = request.address; address < request.address + request.count; address++) {
        if (bad.has(address)) return Promise.reject<number[]>({ exception: 2 } satisfies FakeError);
      }
      return Promise.resolve(Array.from({ length: request.count }, (_, offset) => request.address + offset));
    },
  };
  return device;
}

const splitCode = (error: unknown): number | undefined => (error as FakeError).exception;

function holdingTags(addresses: readonly number[]) {
  const definitions: Record<string, TagDefinitionInput> = {};
  for (const address of addresses) definitions[`r${address}`] = { dataType: "int16", address: `HR${address}` };
  return defineTags(definitions).list();
}

describe("split on failure", () => {
  it("isolates one bad address among 500 good ones, poisons it, and plans around it next time", async () => {
    const addresses = Array.from({ length: 501 }, (_, index) => index);
    const tags = holdingTags(addresses);
    const badIndex = 333;
    const device = fakeDevice(new Set([badIndex]));
    const planner = new ModbusReadPlanner();
    const plan = planner.plan(tags);
    expect(plan.requests).toHaveLength(5);

    const outcomes = [];
    for (const request of plan.requests) {
      outcomes.push(...(await readModbusRequest(request, device.read, { splitCode, learner: planner })));
    }
    const failed = outcomes.filter((outcome) => !outcome.ok);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.request.items.map((served) => served.index)).toEqual([badIndex]);
    const good = outcomes.filter((outcome) => outcome.ok).flatMap((outcome) => outcome.request.items);
    expect(good).toHaveLength(500);
    expect(new Set(good.map((served) => served.index)).size).toBe(500);
    // 5 planned reads, plus about two per halving of the 125-register request holding the bad address, plus
    // one to confirm the refusal after the split.
    expect(device.calls).toBeGreaterThan(5);
    expect(device.calls).toBeLessThanOrEqual(5 + 2 * Math.ceil(Math.log2(125)) + 1);

    const next = planner.plan(tags);
    expect(next).not.toBe(plan);
    expect([...next.poisoned].map(([index, hole]) => [index, hole.exceptionCode])).toEqual([[badIndex, 2]]);
    expect(next.requests.flatMap((request) => request.items).some((served) => served.index === badIndex)).toBe(false);
    // Nor is the poisoned register read through as a gap.
    expect(
      next.requests.some((request) => request.address <= badIndex && request.address + request.count > badIndex),
    ).toBe(false);
    device.calls = 0;
    for (const request of next.requests) {
      const result = await readModbusRequest(request, device.read, { splitCode, learner: planner });
      expect(result.every((outcome) => outcome.ok)).toBe(true);
    }
    expect(device.calls).toBe(next.requests.length);
  });

  it("a device that refuses everything for a moment teaches no holes (no part of the split was read)", async () => {
    const tags = holdingTags([0, 1, 2, 3, 10, 11]);
    const clock = new SimulatedClock();
    const planner = new ModbusReadPlanner({ clock });
    const refuseAll = (): Promise<number[]> => Promise.reject<number[]>({ exception: 2 } satisfies FakeError);
    const plan = planner.plan(tags);
    const outcomes = await readModbusRequest(plan.requests[0]!, refuseAll, { splitCode, learner: planner });
    expect(outcomes.length).toBeGreaterThan(1);
    expect(outcomes.every((outcome) => !outcome.ok)).toBe(true);
    expect(planner.learned.poisoned).toEqual([]);
    // Served again: every tag is read in the next plan.
    const next = planner.plan(tags);
    expect(next.poisoned.size).toBe(0);
    const served = await readModbusRequest(next.requests[0]!, fakeDevice(new Set()).read, {
      splitCode,
      learner: planner,
    });
    expect(served.every((outcome) => outcome.ok)).toBe(true);
    planner.served(next.requests[0]!); // as the driver does: the strikes start again
    // Refused in every part of the split in 3 reads in a row over 10 s, though, it is learned (unproven strikes).
    for (let read = 0; read < 3; read++) {
      if (read > 0) await clock.advance(5_000);
      await readModbusRequest(planner.plan(tags).requests[0]!, refuseAll, { splitCode, learner: planner });
    }
    expect(planner.plan(tags).poisoned.size).toBe(tags.length);
  });

  it("a device whose blanket refusal ends during the split teaches no holes: the refused parts are read again once", async () => {
    // Seen under load (modbus-learned-holes "every holding register refused for 1.5 s"): the device refused
    // the whole request and the left halves, then served again; the right halves read fine and "proved" the
    // left ones holes, bad for 30 s with the device serving them.
    const tags = holdingTags([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const refusedCalls of [1, 2, 3, 4]) {
      const planner = new ModbusReadPlanner();
      let calls = 0;
      const read = (request: ModbusReadRequest): Promise<number[]> =>
        ++calls <= refusedCalls
          ? Promise.reject<number[]>({ exception: 2 } satisfies FakeError)
          : Promise.resolve(Array.from({ length: request.count }, (_, offset) => request.address + offset));
      const outcomes = await readModbusRequest(planner.plan(tags).requests[0]!, read, { splitCode, learner: planner });
      expect({ refusedCalls, learned: planner.learned.poisoned }).toEqual({ refusedCalls, learned: [] });
      expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
      expect(outcomes.flatMap((outcome) => outcome.request.items.map((item) => item.index))).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7,
      ]);
    }
  });

  it("a real hole is still proven by the split: refused again when read once more, learned", async () => {
    const tags = holdingTags([0, 1, 2, 3, 4, 5, 6, 7]);
    const device = fakeDevice(new Set([5]));
    const planner = new ModbusReadPlanner();
    const outcomes = await readModbusRequest(planner.plan(tags).requests[0]!, device.read, {
      splitCode,
      learner: planner,
    });
    expect(outcomes.filter((outcome) => !outcome.ok).map((outcome) => outcome.request.address)).toEqual([5]);
    expect(planner.learned.poisoned.map((hole) => hole.address)).toEqual([5]);
  });

  it("learns a barrier when the refused address is in a gap, not a tag", async () => {
    const tags = holdingTags(Array.from({ length: 60 }, (_, index) => index * 2));
    const device = fakeDevice(new Set([51]));
    const planner = new ModbusReadPlanner();
    const plan = planner.plan(tags);
    expect(plan.requests).toHaveLength(1);
    const outcomes = await readModbusRequest(plan.requests[0]!, device.read, { splitCode, learner: planner });
    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
    expect(planner.learned.poisoned).toEqual([]);
    // Seen once: remembered, not learned (one refusal may be transient); the second time it is learned.
    expect(planner.learned.barriers).toEqual([]);
    expect(planner.plan(tags).requests).toHaveLength(1);
    await readModbusRequest(planner.plan(tags).requests[0]!, device.read, { splitCode, learner: planner });
    expect(planner.learned.barriers).toEqual([
      expect.objectContaining({ unitId: 1, area: "holding-register", from: 50, to: 52 }),
    ]);
    const next = planner.plan(tags);
    expect(shape(next.requests)).toEqual([
      [1, "holding-register", 0, 51],
      [1, "holding-register", 52, 67],
    ]);
  });

  it("a single transient refusal across a gap learns no barrier (adv12e LOW; sibling: served across it in between)", async () => {
    const tags = holdingTags(Array.from({ length: 60 }, (_, index) => index * 2));
    let refuse = true;
    const device = fakeDevice(new Set([51]));
    const read = (request: ModbusReadRequest) =>
      refuse ? device.read(request) : Promise.resolve(new Array<number>(request.count).fill(0));
    const planner = new ModbusReadPlanner();
    const readOnce = async () => {
      const request = planner.plan(tags).requests[0]!;
      const outcomes = await readModbusRequest(request, read, { splitCode, learner: planner });
      for (const outcome of outcomes) if (outcome.ok) planner.served(outcome.request);
    };
    await readOnce(); // refused once (the device was busy), halves served
    refuse = false;
    await readOnce(); // served whole across the gap: the sighting is forgotten
    refuse = true;
    await readOnce(); // refused once more: a first sighting again
    expect(planner.learned.barriers).toEqual([]);
    expect(planner.plan(tags).requests).toHaveLength(1);
  });

  it("returns other failures as outcomes without splitting", async () => {
    const [request] = planModbusReads([item(0), item(1)], { limits });
    const outcomes = await readModbusRequest(request!, () => Promise.reject(new Error("busy")), {
      splitCode: () => undefined,
    });
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.ok).toBe(false);
  });
});

describe("ModbusReadPlanner", () => {
  it("caches one plan per tag array", () => {
    const tags = holdingTags([0, 1, 2]);
    const planner = new ModbusReadPlanner();
    const plan = planner.plan(tags);
    expect(planner.plan(tags)).toBe(plan);
    expect(planner.plan([...tags])).not.toBe(plan);
  });

  it("uses the tag's unit id, else the default one", () => {
    const tags = defineTags({
      a: { dataType: "int16", address: "HR0@7" },
      b: { dataType: "int16", address: "HR1" },
    }).list();
    const plan = new ModbusReadPlanner({ defaultUnitId: 3 }).plan(tags);
    expect(shape(plan.requests)).toEqual([
      [3, "holding-register", 1, 1],
      [7, "holding-register", 0, 1],
    ]);
  });

  it("probes a learned hole after 30 s, then twice as long after each relearning, up to relearnAfterMs", async () => {
    const clock = new SimulatedClock();
    const tags = holdingTags([0, 1]);
    const hole = { unitId: 1, area: "holding-register", address: 1, count: 1 } as const;
    const planner = new ModbusReadPlanner({ clock, relearnAfterMs: 100_000 });
    const intervals: number[] = [];
    for (let learning = 0; learning < 4; learning++) {
      planner.poison(hole, 2);
      const learnedAt = clock.now();
      expect(planner.plan(tags).poisoned.size).toBe(1);
      const nextProbeAt = planner.learned.poisoned[0]!.nextProbeAt;
      await clock.advance(nextProbeAt - learnedAt - 1);
      expect(planner.plan(tags).poisoned.size).toBe(1);
      await clock.advance(1);
      const plan = planner.plan(tags);
      expect(plan.poisoned.size).toBe(0);
      expect(shape(plan.requests)).toEqual([[1, "holding-register", 0, 2]]);
      intervals.push(nextProbeAt - learnedAt);
    }
    expect(intervals).toEqual([30_000, 60_000, 100_000, 100_000]);
    planner.forget();
    planner.poison(hole, 2);
    expect(planner.learned.poisoned[0]!.nextProbeAt - clock.now()).toBe(30_000);
  });

  it("learns a refusal of an item read alone only after refusals in 3 reads in a row over 10 s, and never a transient code", async () => {
    const hole = { unitId: 100, area: "holding-register", address: 266, count: 1 } as const;
    const clock = new SimulatedClock();
    const planner = new ModbusReadPlanner({ clock });
    const alone = (): ModbusReadRequest => ({ ...hole, items: [{ ...hole, index: 0 }] });
    planner.refused(hole, 2, false);
    await clock.advance(5_000);
    planner.refused(hole, 2, false);
    planner.served(alone());
    await clock.advance(5_000);
    planner.refused(hole, 2, false);
    await clock.advance(5_000);
    planner.refused(hole, 2, false);
    expect(planner.learned.poisoned).toEqual([]);
    await clock.advance(5_000);
    planner.refused(hole, 2, false);
    expect(planner.learned.poisoned).toEqual([expect.objectContaining({ address: 266, exceptionCode: 2 })]);
    for (const code of [4, 5, 6, 10, 11]) {
      const other = { ...hole, address: 300 + code };
      for (let read = 0; read < 5; read++) planner.refused(other, code, true);
    }
    expect(planner.learned.poisoned).toHaveLength(1);
    planner.refused({ ...hole, address: 400 }, 3, true);
    expect(planner.learned.poisoned).toHaveLength(2);
  });

  it("refusals bunched in less than learnRefusalSpanMs teach nothing, however many reads saw them (adv12 M4)", async () => {
    const hole = { unitId: 1, area: "holding-register", address: 3, count: 1 } as const;
    const clock = new SimulatedClock();
    const planner = new ModbusReadPlanner({ clock });
    // 15 reads 100 ms apart: a device refusing for 1.5 s while it reloads its map.
    for (let read = 0; read < 15; read++) {
      planner.refused(hole, 2, false);
      await clock.advance(100);
    }
    expect(planner.learned.poisoned).toEqual([]);
    // Still refused 10 s after the first refusal, with no read served between: a hole.
    await clock.advance(10_000 - 1_500);
    planner.refused(hole, 2, false);
    expect(planner.learned.poisoned).toEqual([expect.objectContaining({ address: 3 })]);
    // A split's proof needs no time.
    const spanned = new ModbusReadPlanner({ clock, learnRefusalSpanMs: 60_000 });
    spanned.refused({ ...hole, address: 7 }, 2, true);
    expect(spanned.learned.poisoned).toEqual([expect.objectContaining({ address: 7 })]);
  });

  it("lists every tag with a bad address in one validation error", () => {
    const tags = defineTags({
      good: { dataType: "int16", address: "HR0" },
      missing: { dataType: "int16" },
      wrong: { dataType: "bool", address: "HR5" },
      long: { dataType: "string", address: "HR10:string:50" },
    }).list();
    const planner = new ModbusReadPlanner({ limits: { maxRegistersPerRead: 40 } });
    let caught: unknown;
    try {
      planner.plan(tags);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KilnValidationError);
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "missing.address",
      "wrong.address",
      "long.address",
    ]);
  });

  it("rejects limits beyond the protocol", () => {
    expect(() => new ModbusReadPlanner({ limits: { maxRegistersPerRead: 126 } })).toThrow(RangeError);
    expect(() => new ModbusReadPlanner({ limits: { maxBitsPerRead: 2001 } })).toThrow(RangeError);
  });
});
