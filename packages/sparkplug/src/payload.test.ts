import { KilnError } from "@kiln/core";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import type { SparkplugMetricDataType } from "./datatypes";
import {
  decodePayload,
  encodePayload,
  encodePayloadByReflection,
  scalarValueProblem,
  type SparkplugMetric,
  type SparkplugPayload,
  type SparkplugPropertySet,
} from "./payload";

const roundTrip = (payload: SparkplugPayload): SparkplugPayload => decodePayload(encodePayload(payload));

function issuesOf(run: () => unknown): { path: string; message: string }[] {
  try {
    run();
  } catch (error) {
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    return (error as KilnError & { issues: { path: string; message: string }[] }).issues;
  }
  throw new Error("expected KILN_VALIDATION");
}

describe("payload codec round trips", () => {
  test("payload fields: timestamp, seq, uuid, body and metric flags survive", () => {
    const payload: SparkplugPayload = {
      timestamp: 1_700_000_000_123,
      seq: 255,
      uuid: "kiln-1",
      body: new Uint8Array([1, 2, 3]),
      metrics: [
        {
          name: "a/b",
          alias: 7,
          timestamp: 1_700_000_000_000,
          datatype: "Double",
          isHistorical: true,
          isTransient: true,
          metadata: { isMultiPart: false, contentType: "text/plain", size: 12, seq: 1, fileName: "x", md5: "00" },
          value: 1.5,
        },
      ],
    };
    expect(roundTrip(payload)).toEqual(payload);
  });

  test("unset optional fields stay unset (proto2 presence), and a null value is is_null", () => {
    const decoded = roundTrip({ metrics: [{ name: "n", datatype: "Int32", value: null }, { alias: 2n ** 60n }] });
    expect(decoded).toEqual({ metrics: [{ name: "n", datatype: "Int32", value: null }, { alias: 2n ** 60n }] });
    expect(Object.keys(decoded)).toEqual(["metrics"]);
  });

  const cases: [SparkplugMetricDataType, unknown][] = [
    ["Int8", -128],
    ["Int8", 127],
    ["Int16", -32_768],
    ["Int32", -2_147_483_648],
    ["UInt8", 255],
    ["UInt16", 65_535],
    ["UInt32", 4_294_967_295],
    ["Int64", -(2n ** 63n)],
    ["Int64", 2n ** 63n - 1n],
    ["Int64", -5],
    ["UInt64", 2n ** 64n - 1n],
    ["UInt64", 2 ** 53 - 1],
    ["Float", 1.5],
    ["Float", Number.NaN],
    ["Double", -0],
    ["Double", Number.POSITIVE_INFINITY],
    ["Boolean", false],
    ["String", ""],
    ["String", "héllo\u0000"],
    ["Text", "long text"],
    ["UUID", "6f2c1e4e-3f3b-4b8a-9a83-2a9b2d7c1f00"],
    ["DateTime", 1_700_000_000_000],
    ["Bytes", new Uint8Array([0, 255])],
    ["File", new Uint8Array([9])],
    ["Int8Array", [-23, 123]],
    ["Int16Array", [-1, 32_767]],
    ["Int32Array", [-2_147_483_648, 7]],
    ["Int64Array", [-(2n ** 63n), 1]],
    ["UInt8Array", [0, 255]],
    ["UInt16Array", [65_535]],
    ["UInt32Array", [4_294_967_295]],
    ["UInt64Array", [2n ** 64n - 1n, 0]],
    ["FloatArray", [1.5, -2]],
    ["DoubleArray", [0.1, 1e300]],
    ["BooleanArray", [false, false, true, true, false, true, false, false, true, true, false, true]],
    ["StringArray", ["ABC", "hello", ""]],
    ["DateTimeArray", [0, 1_700_000_000_000]],
    [
      "DataSet",
      {
        columns: ["a", "b"],
        types: ["Int32", "String"],
        rows: [
          [1, "x"],
          [-2, "y"],
        ],
      },
    ],
    [
      "Template",
      {
        version: "1",
        templateRef: "Motor",
        isDefinition: false,
        metrics: [{ name: "rpm", datatype: "UInt16", value: 1200 }],
        parameters: [
          { name: "max", type: "Double", value: 1.5 },
          { name: "empty", type: "String" },
        ],
      },
    ],
  ];
  test.each(cases)("%s value %o survives encode and decode", (datatype, value) => {
    const metric = { name: "m", datatype, value } as SparkplugMetric;
    expect(roundTrip({ metrics: [metric] }).metrics[0]).toEqual(metric);
  });

  test("arrays use the specification's byte layout (6.4.17 examples)", () => {
    const bytesOf = (datatype: SparkplugMetricDataType, value: unknown): number[] => {
      const decoded = decodePayload(encodePayload({ metrics: [{ datatype, value } as SparkplugMetric] }), {});
      expect(decoded.metrics[0]!.value).toEqual(value);
      // Read the raw bytes back by decoding as Bytes.
      const raw = decodePayload(
        encodePayload({ metrics: [{ datatype, value } as SparkplugMetric] }, { omitDatatype: true }),
      );
      return [...(raw.metrics[0]!.value as Uint8Array)];
    };
    expect(bytesOf("Int8Array", [-23, 123])).toEqual([0xe9, 0x7b]);
    expect(
      bytesOf("BooleanArray", [false, false, true, true, false, true, false, false, true, true, false, true]),
    ).toEqual([0x0c, 0, 0, 0, 0x34, 0xd0]);
    expect(bytesOf("StringArray", ["ABC", "hello"])).toEqual([0x41, 0x42, 0x43, 0, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0]);
    expect(bytesOf("Int16Array", [-30_000, 30_000])).toEqual([0xd0, 0x8a, 0x30, 0x75]);
  });

  test("properties: every property type, null, and nested PropertySet / PropertySetList", () => {
    const properties: SparkplugPropertySet = {
      StatusCode: { type: "UInt32", value: 0x80310000 },
      engUnit: { type: "String", value: "mbar" },
      engLow: { type: "Double", value: 0 },
      big: { type: "UInt64", value: 2n ** 64n - 1n },
      small: { type: "Int8", value: -1 },
      when: { type: "DateTime", value: 5 },
      nothing: { type: "Float", value: null },
      nested: { type: "PropertySet", value: { inner: { type: "Boolean", value: true } } },
      list: {
        type: "PropertySetList",
        value: [{ a: { type: "Text", value: "t" } }, { b: { type: "Int64", value: -3 } }],
      },
      ["__proto__"]: { type: "String", value: "kept as a key" },
    };
    const decoded = roundTrip({ metrics: [{ name: "p", properties }] });
    expect(decoded.metrics[0]!.properties).toEqual(properties);
    expect(Object.keys(decoded.metrics[0]!.properties!)).toContain("__proto__");
  });

  test("omitDatatype leaves datatype off the wire; datatypeOf types the value again", () => {
    const bytes = encodePayload({ metrics: [{ alias: 3, datatype: "Int16", value: -2 }] }, { omitDatatype: true });
    expect(decodePayload(bytes).metrics[0]).toEqual({ alias: 3, value: 4_294_967_294 });
    const typed = decodePayload(bytes, { datatypeOf: ({ alias }) => (alias === 3 ? "Int16" : undefined) });
    expect(typed.metrics[0]).toEqual({ alias: 3, datatype: "Int16", value: -2 });
  });

  test("a signed value sent in its own width's two's complement decodes too (Int8 255 is -1)", () => {
    const raw = encodePayload({ metrics: [{ name: "x", datatype: "UInt8", value: 255 }] }, { omitDatatype: true });
    expect(decodePayload(raw, { datatypeOf: () => "Int8" }).metrics[0]!.value).toBe(-1);
  });

  test("property: every Int64, UInt64, Double and String value survives", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.double(),
        fc.string({ unit: "binary" }),
        fc.integer({ min: 0, max: 255 }),
        (int64, uint64, double, text, seq) => {
          const narrow = (value: bigint): number | bigint =>
            value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
              ? Number(value)
              : value;
          const payload: SparkplugPayload = {
            seq,
            metrics: [
              { alias: 1, datatype: "Int64", value: narrow(int64) },
              { alias: 2, datatype: "UInt64", value: narrow(uint64) },
              { alias: 3, datatype: "Double", value: double },
              { alias: 4, datatype: "String", value: text },
            ],
          };
          expect(roundTrip(payload)).toEqual(payload);
        },
      ),
    );
  });
});

describe("the direct writer of scalar payloads", () => {
  test("property: writes exactly the bytes protobuf-es reflection writes, for every scalar type, flag and quality property", () => {
    const scalar = fc.oneof(
      fc.record({ datatype: fc.constant("Int8" as const), value: fc.integer({ min: -128, max: 127 }) }),
      fc.record({ datatype: fc.constant("UInt16" as const), value: fc.integer({ min: 0, max: 65_535 }) }),
      fc.record({ datatype: fc.constant("Int32" as const), value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
      fc.record({ datatype: fc.constant("UInt32" as const), value: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
      fc.record({
        datatype: fc.constant("Int64" as const),
        value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      }),
      fc.record({ datatype: fc.constant("UInt64" as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.record({ datatype: fc.constant("Float" as const), value: fc.float() }),
      fc.record({ datatype: fc.constant("Double" as const), value: fc.double() }),
      fc.record({ datatype: fc.constant("Boolean" as const), value: fc.boolean() }),
      fc.record({ datatype: fc.constant("String" as const), value: fc.string({ unit: "binary" }) }),
      fc.record({ datatype: fc.constant("Bytes" as const), value: fc.uint8Array() }),
      fc.record({ datatype: fc.constant("Double" as const), value: fc.constant(null) }),
    );
    const metric = fc.record(
      {
        name: fc.string(),
        alias: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        isHistorical: fc.boolean(),
        isTransient: fc.boolean(),
        scalar,
        properties: fc.option(
          fc.record({
            Quality: fc.record({ type: fc.constant("Int32" as const), value: fc.constantFrom(0, 192, 500) }),
            StatusCode: fc.record({
              type: fc.constant("UInt32" as const),
              value: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
            }),
            StatusReason: fc.record({
              type: fc.constant("String" as const),
              value: fc.option(fc.string(), { nil: null }),
            }),
          }),
          { nil: undefined },
        ),
      },
      { requiredKeys: ["scalar"] },
    );
    fc.assert(
      fc.property(
        fc.array(metric, { maxLength: 8 }),
        fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
        fc.boolean(),
        (metrics, seq, timestamp, omitDatatype) => {
          const payload: SparkplugPayload = {
            ...(seq === undefined ? {} : { seq }),
            ...(timestamp === undefined ? {} : { timestamp }),
            metrics: metrics.map(({ scalar: { datatype, value }, properties, ...rest }) => ({
              ...rest,
              datatype,
              value,
              ...(properties === undefined ? {} : { properties: properties as SparkplugPropertySet }),
            })),
          };
          const direct = encodePayload(payload, { omitDatatype });
          expect(Buffer.from(direct).equals(Buffer.from(encodePayloadByReflection(payload, { omitDatatype })))).toBe(
            true,
          );
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("Float is single precision (issue 15, fault 1)", () => {
  test("a finite value beyond ±FLT_MAX is no Float, as a scalar, an array element and a property; FLT_MAX and ±Infinity are", () => {
    expect(scalarValueProblem("Float", 3.5e39)).toMatch(/within ±3.4028234663852886e\+38/);
    expect(scalarValueProblem("Float", -3.5e39)).toBeDefined();
    expect(scalarValueProblem("Float", 3.4028234663852886e38)).toBeUndefined();
    expect(scalarValueProblem("Float", Number.POSITIVE_INFINITY)).toBeUndefined();
    expect(scalarValueProblem("Double", 3.5e39)).toBeUndefined();
    const issues = issuesOf(() =>
      encodePayload({
        metrics: [
          { name: "a", datatype: "Float", value: 3.5e39 },
          { name: "b", datatype: "FloatArray", value: [1, -3.5e39] },
          { name: "c", datatype: "Double", value: 1, properties: { p: { type: "Float", value: 1e40 } } },
        ],
      }),
    );
    expect(issues.map((issue) => issue.path)).toEqual([
      "metrics[0].value",
      "metrics[1].value[1]",
      "metrics[2].properties.p.value",
    ]);
  });
});

describe("payload codec refuses what breaks a rule (KILN_VALIDATION, never a crash)", () => {
  test("encode: a value that does not fit its datatype names the field", () => {
    const issues = issuesOf(() =>
      encodePayload({
        seq: 256,
        metrics: [
          { name: "a", datatype: "Int8", value: 128 },
          { name: "b", datatype: "UInt64", value: -1 },
          { name: "c", datatype: "Boolean", value: 1 as never },
          { name: "d", value: 1 },
          { name: "e", datatype: "DataSet", value: { columns: ["x"], types: ["Int8"], rows: [[1, 2]] } },
          { name: "f", datatype: "StringArray", value: ["a\0b"] },
          { name: "g", datatype: "Double", value: 1, properties: { q: { type: "Bytes" as never, value: 1 } } },
          { name: "h", datatype: "PropertySet" as never, value: 1 },
        ],
      }),
    );
    expect(issues.map((issue) => issue.path)).toEqual([
      "seq",
      "metrics[0].value",
      "metrics[1].value",
      "metrics[2].value",
      "metrics[3].datatype",
      "metrics[4].value.rows[0]",
      "metrics[5].value[0]",
      "metrics[6].properties.q.type",
      "metrics[7].datatype",
    ]);
  });

  test("decode: bytes that are not a protobuf payload", () => {
    for (const bytes of [
      new Uint8Array([0xff, 0xff, 0xff]),
      new Uint8Array([0x12, 0x05, 0x0a]),
      new Uint8Array([0x0a]),
      new TextEncoder().encode('{"online":true}'),
    ]) {
      expect(issuesOf(() => decodePayload(bytes))[0]!.path).toBe("");
    }
  });

  test("decode: a string that is not UTF-8 (a metric name, a String value, a property key) is refused, never read as U+FFFD (issue 19)", () => {
    // Two names differing only in invalid bytes ("x\xff", "x\xfe") would both read "x\ufffd" and merge.
    const named = (bytes: number[]) => new Uint8Array([0x12, bytes.length + 2, 0x0a, bytes.length, ...bytes]);
    for (const bytes of [
      named([0x78, 0xff]),
      named([0x78, 0xfe]),
      named([0xc3]),
      // A String value 0xed 0xa0 0x80 (an encoded lone surrogate).
      new Uint8Array([0x12, 0x07, 0x20, 0x0c, 0x7a, 0x03, 0xed, 0xa0, 0x80]),
    ]) {
      expect(issuesOf(() => decodePayload(bytes))[0]).toMatchObject({
        path: "",
        message: expect.stringContaining("UTF-8") as unknown,
      });
    }
    // U+FFFD written as UTF-8 is a character like any other.
    expect(decodePayload(named([0x78, 0xef, 0xbf, 0xbd])).metrics[0]!.name).toBe("x\ufffd");
  });

  test("decode: a value in the wrong field, out of range, or with a datatype that does not exist", () => {
    const wrongField = encodePayload(
      { metrics: [{ name: "a", datatype: "String", value: "x" }] },
      { omitDatatype: true },
    );
    expect(issuesOf(() => decodePayload(wrongField, { datatypeOf: () => "Int32" }))[0]).toMatchObject({
      path: "metrics[0].value",
      message: expect.stringContaining("string_value") as unknown,
    });
    const tooBig = encodePayload({ metrics: [{ name: "a", datatype: "UInt16", value: 300 }] }, { omitDatatype: true });
    expect(issuesOf(() => decodePayload(tooBig, { datatypeOf: () => "UInt8" }))[0]!.path).toBe("metrics[0].value");
    expect(issuesOf(() => decodePayload(tooBig, { datatypeOf: () => "Int8" }))[0]!.path).toBe("metrics[0].value");
    // datatype 99 (field 4, varint 99)
    expect(issuesOf(() => decodePayload(new Uint8Array([0x12, 0x02, 0x20, 99])))[0]!.path).toBe("metrics[0].datatype");
    // seq 256 (field 3, varint 256)
    expect(issuesOf(() => decodePayload(new Uint8Array([0x18, 0x80, 0x02])))[0]!.path).toBe("seq");
  });

  test("decode: arrays that are not whole elements, and a repeated property key", () => {
    const odd = encodePayload(
      { metrics: [{ datatype: "Bytes", value: new Uint8Array([1, 2, 3]) }] },
      { omitDatatype: true },
    );
    expect(issuesOf(() => decodePayload(odd, { datatypeOf: () => "Int16Array" }))[0]!.path).toBe("metrics[0].value");
    expect(issuesOf(() => decodePayload(odd, { datatypeOf: () => "BooleanArray" }))[0]!.path).toBe("metrics[0].value");
    expect(issuesOf(() => decodePayload(odd, { datatypeOf: () => "StringArray" }))[0]!.path).toBe("metrics[0].value");
    // PropertySet with keys ["k","k"] and two UInt32 values.
    const value = [0x08, 0x07, 0x18, 0x01];
    const set = [0x0a, 0x01, 0x6b, 0x0a, 0x01, 0x6b, 0x12, value.length, ...value, 0x12, value.length, ...value];
    const metric = [0x4a, set.length, ...set];
    const bytes = new Uint8Array([0x12, metric.length, ...metric]);
    expect(issuesOf(() => decodePayload(bytes))[0]).toMatchObject({ path: "metrics[0].properties.k" });
  });

  test("property: decoding any bytes returns a payload or throws KILN_VALIDATION, nothing else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodePayload(bytes);
        } catch (error) {
          expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
