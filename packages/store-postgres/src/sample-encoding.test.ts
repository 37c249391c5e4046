import { GOOD, KilnError, QualityCodes, quality, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { checkSamples, encodeBinaryCopy, prepareSamples, SAMPLE_COLUMNS, unnestParameters } from "./sample-encoding";

const T0 = Date.UTC(2026, 0, 1);

function sample(tag: string, value: Sample["value"], timestamp: number, sampleQuality = GOOD): Sample {
  return { tag, value, timestamp, quality: sampleQuality };
}

type Field = number | bigint | boolean | string | null;

/**
 * A reader of PostgreSQL's binary COPY format, written from the protocol documentation, for the
 * column types of `samples`: int4, int4, timestamptz, float8, int8, bool, text, text.
 */
function decodeBinaryCopy(data: Uint8Array): Field[][] {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  expect(buffer.subarray(0, 11).toString("latin1")).toBe("PGCOPY\n\xff\r\n\0");
  expect([buffer.readInt32BE(11), buffer.readInt32BE(15)]).toEqual([0, 0]);
  let offset = 19;
  const rows: Field[][] = [];
  for (;;) {
    const fields = buffer.readInt16BE(offset);
    offset += 2;
    if (fields === -1) break;
    expect(fields).toBe(SAMPLE_COLUMNS.length);
    const row: Field[] = [];
    for (let column = 0; column < fields; column++) {
      const length = buffer.readInt32BE(offset);
      offset += 4;
      if (length === -1) {
        row.push(null);
        continue;
      }
      const bytes = buffer.subarray(offset, offset + length);
      offset += length;
      switch (column) {
        case 0:
        case 1:
          row.push(bytes.readInt32BE(0));
          break;
        case 2:
          // µs since 2000-01-01, back to ms since 1970.
          row.push(Number(bytes.readBigInt64BE(0)) / 1000 + 946_684_800_000);
          break;
        case 3:
          row.push(bytes.readDoubleBE(0));
          break;
        case 4:
          row.push(bytes.readBigInt64BE(0));
          break;
        case 5:
          row.push(bytes[0] === 1);
          break;
        default:
          row.push(bytes.toString("utf8"));
      }
    }
    rows.push(row);
  }
  expect(offset).toBe(buffer.length);
  return rows;
}

describe("checkSamples", () => {
  test("accepts a valid batch", () => {
    expect(() => checkSamples([sample("a", 1, T0), sample("b", true, T0), sample("a", 2, T0 + 1)])).not.toThrow();
  });

  test("rejects with KILN_VALIDATION listing every bad field by index", () => {
    const batch = [
      sample("", 1, T0),
      sample("a", 1, Number.POSITIVE_INFINITY),
      { tag: "a", value: [{}], timestamp: T0, quality: GOOD } as unknown as Sample,
      sample("a", 2n ** 64n, T0),
      sample("a", 1, T0, { severity: "fine" as never, code: 0 }),
      sample("a", 1, T0, { severity: "bad", code: 2 ** 32 }),
      null as unknown as Sample,
    ];
    let caught: unknown;
    try {
      checkSamples(batch);
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect((caught as { issues: { path: string }[] }).issues.map((issue) => issue.path)).toEqual([
      "[0].tag",
      "[1].timestamp",
      "[2].value[0]",
      "[3].value",
      "[4].quality.severity",
      "[5].quality.code",
      "[6]",
    ]);
  });
});

describe("prepareSamples", () => {
  const ids = new Map([
    ["a", 7],
    ["b", 9],
  ]);

  test("keeps the first of each (tag, timestamp) and maps tags to ids", () => {
    const batch = [
      sample("a", 1, T0),
      sample("b", 2, T0),
      sample("a", 3, T0),
      sample("a", 4, T0 + 1),
      sample("b", 5, T0),
      sample("b", 6, T0 + 1),
      sample("a", 7, T0 + 1),
    ];
    const prepared = prepareSamples(batch, ids);
    expect(prepared.length).toBe(4);
    expect(prepared.samples.map((kept) => kept.value)).toEqual([1, 2, 4, 6]);
    expect(Array.from(prepared.tagIds)).toEqual([7, 9, 7, 9]);
    expect(Array.from(prepared.micros)).toEqual([T0 * 1000, T0 * 1000, (T0 + 1) * 1000, (T0 + 1) * 1000]);
    expect(Array.from(prepared.positions)).toEqual([0, 1, 3, 5]);
    // The repeats, in batch order, each with the kept sample it repeats.
    expect(prepared.repeats.map(({ sample, position, first }) => [sample.value, position, first])).toEqual([
      [3, 2, 0],
      [5, 4, 1],
      [7, 6, 2],
    ]);
  });

  test("rounds timestamps to whole microseconds, so two that round alike are one sample", () => {
    const prepared = prepareSamples([sample("a", 1, T0 + 0.0002), sample("a", 2, T0), sample("a", 3, T0 + 0.25)], ids);
    expect(prepared.samples.map((kept) => kept.value)).toEqual([1, 3]);
    expect(Array.from(prepared.micros)).toEqual([T0 * 1000, T0 * 1000 + 250]);
  });
});

describe("encodeBinaryCopy", () => {
  test("writes one tuple per sample with exactly one value column set and the quality as signed int4", () => {
    const ids = new Map([["a", 3]]);
    const batch = [
      sample("a", 2.5, T0),
      sample("a", -(2n ** 62n), T0 + 1),
      sample("a", true, T0 + 2),
      sample("a", false, T0 + 3),
      sample("a", "ünïcödé \t\n\\ 𝄞", T0 + 4),
      sample("a", null, T0 + 5, quality("bad", "open circuit", QualityCodes.BadDeviceFailure)),
      sample("a", 1, T0 - 86_400_000 * 365 * 40, quality("uncertain")),
    ];
    const rows = decodeBinaryCopy(encodeBinaryCopy(prepareSamples(batch, ids)));
    expect(rows).toEqual([
      [3, 0, T0, 2.5, null, null, null, null],
      [3, 0, T0 + 1, null, -(2n ** 62n), null, null, null],
      [3, 0, T0 + 2, null, null, true, null, null],
      [3, 0, T0 + 3, null, null, false, null, null],
      [3, 0, T0 + 4, null, null, null, "ünïcödé \t\n\\ 𝄞", null],
      [3, QualityCodes.BadDeviceFailure | 0, T0 + 5, null, null, null, null, "open circuit"],
      [3, QualityCodes.Uncertain, T0 - 86_400_000 * 365 * 40, 1, null, null, null, null],
    ]);
    expect(rows[5]![1]).toBeLessThan(0);
  });

  test("an empty batch is a header and a trailer", () => {
    expect(decodeBinaryCopy(encodeBinaryCopy(prepareSamples([], new Map())))).toEqual([]);
  });
});

describe("unnestParameters", () => {
  test("gives twelve array literals in column order with NULL where a column does not apply", () => {
    const ids = new Map([["a", 3]]);
    const batch = [
      sample("a", 1.5, T0),
      sample("a", 5n, T0 + 1),
      sample("a", true, T0 + 2),
      sample("a", 'x"y', T0 + 3, quality("bad", "why")),
      sample("a", 2n ** 64n - 1n, T0 + 4),
      sample("a", -0, T0 + 5),
      sample("a", 0, T0 + 1),
    ];
    const prepared = prepareSamples(batch, ids);
    expect(prepared.unsigned).toBe(true);
    // The repeat of T0 + 1 comes last, with the key of the sample it repeats and its own payload.
    expect(unnestParameters(prepared)).toEqual([
      "{3,3,3,3,3,3,3}",
      `{0,0,0,${QualityCodes.Bad | 0},0,0,0}`,
      `{${[0, 1, 2, 3, 4, 5, 1].map((offset) => (T0 + offset) * 1000).join(",")}}`,
      "{1.5,NULL,NULL,NULL,NULL,-0,0}",
      "{NULL,5,NULL,NULL,NULL,NULL,NULL}",
      "{NULL,NULL,t,NULL,NULL,NULL,NULL}",
      '{NULL,NULL,NULL,"x\\"y",NULL,NULL,NULL}',
      '{NULL,NULL,NULL,"why",NULL,NULL,NULL}',
      "{NULL,NULL,NULL,NULL,18446744073709551615,NULL,NULL}",
      "{t,t,t,t,t,t,f}",
      "{0,1,2,3,4,5,6}",
      "{NULL,NULL,NULL,NULL,NULL,NULL,NULL}",
    ]);
  });

  test("an array value goes to value_array as JSON (ADR 0038) and sends the batch down the insert path", () => {
    const prepared = prepareSamples(
      [sample("a", [1.5, -0, Number.NaN, 2n ** 64n - 1n, "a\0"], T0), sample("a", 2, T0 + 1)],
      new Map([["a", 3]]),
    );
    expect(prepared.arrays).toBe(true);
    expect(prepared.unsigned).toBe(false);
    const parameters = unnestParameters(prepared);
    expect(parameters[3]).toBe("{NULL,2}");
    expect(parameters[11]).toBe(
      `{${JSON.stringify(JSON.stringify([1.5, "-0", "NaN", "18446744073709551615", "a\u00100000"]))},NULL}`,
    );
  });
});
