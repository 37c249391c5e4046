import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import type { SampleWriteResult } from "../ports/sample-sink";
import { bisectBatch, conflictsOf, refusalReason } from "./batch-bisect";

const T0 = Date.UTC(2026, 0, 1);

function batchOf(size: number, poison: readonly number[]): Sample[] {
  return Array.from({ length: size }, (_, index) => ({
    tag: `tag.${index}`,
    value: poison.includes(index) ? "poison" : index,
    timestamp: T0 + index,
    quality: GOOD,
  }));
}

/** A sink that refuses, whole and non-retryably, any part holding a "poison" value. */
function fakeSink(abortAfterWrites = Infinity) {
  const stored = new Map<string, Sample>();
  let writes = 0;
  const write = async (part: readonly Sample[]): Promise<void> => {
    writes++;
    if (writes > abortAfterWrites) throw new KilnError("KILN_ABORTED", "stopping");
    const bad = part.findIndex((sample) => sample.value === "poison");
    if (bad >= 0) {
      throw new KilnValidationError("sample batch", [{ path: `[${bad}].value`, message: "cannot be stored" }]);
    }
    for (const sample of part) stored.set(sample.tag, sample);
  };
  return { stored, write, writes: () => writes };
}

const isRefusal = (error: unknown): boolean => KilnError.is(error) && error.code === "KILN_VALIDATION";
const firstError = new KilnValidationError("sample batch", [{ path: "[0].value", message: "cannot be stored" }]);

describe("bisectBatch", () => {
  test("refuses only the poison sample of a batch and stores every other one", async () => {
    const sink = fakeSink();
    const batch = batchOf(64, [37]);
    const outcome = await bisectBatch(batch, firstError, sink.write, isRefusal);
    expect(outcome.written).toBe(63);
    expect(outcome.refused.map((refusal) => refusal.sample.tag)).toEqual(["tag.37"]);
    expect(isRefusal(outcome.refused[0]!.error)).toBe(true);
    expect([...sink.stored.keys()].sort()).toEqual(
      batch
        .filter((sample) => sample.tag !== "tag.37")
        .map((sample) => sample.tag)
        .sort(),
    );
    // log2(64) = 6 levels, at most two writes each.
    expect(sink.writes()).toBeLessThanOrEqual(12);
  });

  test("isolates several poison samples, adjacent ones and both ends included", async () => {
    const sink = fakeSink();
    const poison = [0, 5, 6, 99];
    const outcome = await bisectBatch(batchOf(100, poison), firstError, sink.write, isRefusal);
    expect(outcome.refused.map((refusal) => refusal.sample.tag)).toEqual(poison.map((index) => `tag.${index}`));
    expect(outcome.written).toBe(96);
    expect(sink.stored.size).toBe(96);
  });

  test("refuses a single-sample batch without writing it again", async () => {
    const sink = fakeSink();
    const outcome = await bisectBatch(batchOf(1, [0]), firstError, sink.write, isRefusal);
    expect(outcome).toEqual({
      written: 0,
      conflicts: [],
      refused: [{ sample: batchOf(1, [0])[0], error: firstError }],
    });
    expect(sink.writes()).toBe(0);
  });

  test("rethrows a failure that is not a refusal and keeps what it already stored", async () => {
    const sink = fakeSink(2);
    await expect(bisectBatch(batchOf(16, [15]), firstError, sink.write, isRefusal)).rejects.toMatchObject({
      code: "KILN_ABORTED",
    });
    expect(sink.stored.size).toBe(12); // tag.0..7, then tag.8..11, before the third write is aborted
  });

  test("does not bisect when the first error is not a refusal", async () => {
    const sink = fakeSink();
    const error = new KilnError("KILN_ABORTED", "stopping");
    await expect(bisectBatch(batchOf(4, [1]), error, sink.write, isRefusal)).rejects.toBe(error);
    expect(sink.writes()).toBe(0);
  });
});

describe("refusalReason", () => {
  test("names the Kiln code and the broken rule", () => {
    expect(refusalReason(firstError)).toBe("KILN_VALIDATION: Invalid sample batch: [0].value: cannot be stored");
    expect(refusalReason(new Error("boom"))).toBe("Error: boom");
  });
});

describe("conflicts of bisected parts", () => {
  test("the conflicts each stored part reports are collected, in the order the parts were written", async () => {
    const sink = fakeSink();
    const write = async (part: readonly Sample[]): Promise<SampleWriteResult> => {
      await sink.write(part);
      // Every sample with an odd index conflicts with a stored one.
      return {
        conflicts: part
          .filter((sample) => (sample.value as number) % 2 === 1)
          .map((sample) => ({ sample, existing: "stored" as const })),
      };
    };
    const outcome = await bisectBatch(batchOf(16, [6]), firstError, write, isRefusal);
    expect(outcome.refused.map((refusal) => refusal.sample.tag)).toEqual(["tag.6"]);
    expect(outcome.written).toBe(15);
    expect(outcome.conflicts.map((conflict) => conflict.sample.tag)).toEqual(
      [1, 3, 5, 7, 9, 11, 13, 15].map((index) => `tag.${index}`),
    );
  });

  test("conflictsOf reads a sink's result, and none from void or anything that is not one", () => {
    const conflict = { sample: batchOf(1, [])[0]!, existing: "batch" as const };
    expect(conflictsOf({ conflicts: [conflict] })).toEqual([conflict]);
    expect(conflictsOf(undefined)).toEqual([]);
    expect(conflictsOf(null as unknown as void)).toEqual([]);
    expect(conflictsOf(42 as unknown as void)).toEqual([]);
    expect(conflictsOf({ conflicts: "none" } as unknown as SampleWriteResult)).toEqual([]);
  });
});
