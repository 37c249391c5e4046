import { describe, expect, it } from "vitest";
import { KilnError, QualityCodes, type TagDataType } from "@kiln/core";
import type { TagTypeCoercion } from "@kiln/core/driver-kit";
import { registerCount, type ModbusByteOrder, type ModbusWireType } from "./modbus-address";
import {
  compileDecoder,
  decodeRegisters,
  encodeRegisters,
  engineeringFromRaw,
  rawFromEngineering,
  writeReadsBack,
  type ModbusRawValue,
} from "./modbus-codec";

interface Case {
  readonly type: ModbusWireType;
  readonly value: ModbusRawValue;
  readonly length?: number;
  /** Registers as they travel on the wire, per order, computed by hand from the big-endian bytes. */
  readonly wire: Readonly<Record<ModbusByteOrder, readonly number[]>>;
}

// Bytes of each value, most significant first (A B C D ...), and where each order puts them.
const CASES: readonly Case[] = [
  // int16 0x1234: A=12 B=34.
  { type: "int16", value: 0x1234, wire: { ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412] } },
  // int16 -12345 = 0xCFC7.
  { type: "int16", value: -12345, wire: { ABCD: [0xcfc7], CDAB: [0xcfc7], BADC: [0xc7cf], DCBA: [0xc7cf] } },
  // uint16 0xABCD.
  { type: "uint16", value: 0xabcd, wire: { ABCD: [0xabcd], CDAB: [0xabcd], BADC: [0xcdab], DCBA: [0xcdab] } },
  // int32 0x12345678: A=12 B=34 C=56 D=78.
  {
    type: "int32",
    value: 0x12345678,
    wire: { ABCD: [0x1234, 0x5678], CDAB: [0x5678, 0x1234], BADC: [0x3412, 0x7856], DCBA: [0x7856, 0x3412] },
  },
  // int32 -2 = 0xFFFFFFFE.
  {
    type: "int32",
    value: -2,
    wire: { ABCD: [0xffff, 0xfffe], CDAB: [0xfffe, 0xffff], BADC: [0xffff, 0xfeff], DCBA: [0xfeff, 0xffff] },
  },
  // uint32 0xDEADBEEF.
  {
    type: "uint32",
    value: 0xdeadbeef,
    wire: { ABCD: [0xdead, 0xbeef], CDAB: [0xbeef, 0xdead], BADC: [0xadde, 0xefbe], DCBA: [0xefbe, 0xadde] },
  },
  // float32 123.456 = 0x42F6E979 (IEEE 754 single).
  {
    type: "float32",
    value: Math.fround(123.456),
    wire: { ABCD: [0x42f6, 0xe979], CDAB: [0xe979, 0x42f6], BADC: [0xf642, 0x79e9], DCBA: [0x79e9, 0xf642] },
  },
  // float32 -1.5 = 0xBFC00000.
  {
    type: "float32",
    value: -1.5,
    wire: { ABCD: [0xbfc0, 0x0000], CDAB: [0x0000, 0xbfc0], BADC: [0xc0bf, 0x0000], DCBA: [0x0000, 0xc0bf] },
  },
  // float64 pi = 0x400921FB54442D18.
  {
    type: "float64",
    value: Math.PI,
    wire: {
      ABCD: [0x4009, 0x21fb, 0x5444, 0x2d18],
      CDAB: [0x2d18, 0x5444, 0x21fb, 0x4009],
      BADC: [0x0940, 0xfb21, 0x4454, 0x182d],
      DCBA: [0x182d, 0x4454, 0xfb21, 0x0940],
    },
  },
  // int64 0x0102030405060708.
  {
    type: "int64",
    value: 0x0102030405060708n,
    wire: {
      ABCD: [0x0102, 0x0304, 0x0506, 0x0708],
      CDAB: [0x0708, 0x0506, 0x0304, 0x0102],
      BADC: [0x0201, 0x0403, 0x0605, 0x0807],
      DCBA: [0x0807, 0x0605, 0x0403, 0x0201],
    },
  },
  // int64 -2 = 0xFFFFFFFFFFFFFFFE.
  {
    type: "int64",
    value: -2n,
    wire: {
      ABCD: [0xffff, 0xffff, 0xffff, 0xfffe],
      CDAB: [0xfffe, 0xffff, 0xffff, 0xffff],
      BADC: [0xffff, 0xffff, 0xffff, 0xfeff],
      DCBA: [0xfeff, 0xffff, 0xffff, 0xffff],
    },
  },
  // uint64 0xFEDCBA9876543210.
  {
    type: "uint64",
    value: 0xfedcba9876543210n,
    wire: {
      ABCD: [0xfedc, 0xba98, 0x7654, 0x3210],
      CDAB: [0x3210, 0x7654, 0xba98, 0xfedc],
      BADC: [0xdcfe, 0x98ba, 0x5476, 0x1032],
      DCBA: [0x1032, 0x5476, 0x98ba, 0xdcfe],
    },
  },
  // "Kiln!" in 3 registers: 4B 69 | 6C 6E | 21 00 (NUL padded). Strings honour the byte swap only.
  {
    type: "string",
    value: "Kiln!",
    length: 3,
    wire: {
      ABCD: [0x4b69, 0x6c6e, 0x2100],
      CDAB: [0x4b69, 0x6c6e, 0x2100],
      BADC: [0x694b, 0x6e6c, 0x0021],
      DCBA: [0x694b, 0x6e6c, 0x0021],
    },
  },
];

const ORDERS: readonly ModbusByteOrder[] = ["ABCD", "CDAB", "BADC", "DCBA"];

describe("modbus codec: every type × every byte order", () => {
  for (const testCase of CASES) {
    for (const order of ORDERS) {
      const address = { type: testCase.type, count: registerCount(testCase.type, testCase.length) };
      const registers = testCase.wire[order];
      it(`${testCase.type} ${String(testCase.value)} in ${order} is [${registers.map((r) => r.toString(16)).join(", ")}]`, () => {
        expect(encodeRegisters(testCase.value, address, order)).toEqual(registers);
        expect(decodeRegisters(registers, 0, address, order)).toEqual(testCase.value);
      });
    }
  }

  for (const testCase of CASES) {
    for (const order of ORDERS) {
      it(`the compiled decoder reads ${testCase.type} ${String(testCase.value)} in ${order} at an offset`, () => {
        const address = {
          area: "holding-register" as const,
          type: testCase.type,
          count: registerCount(testCase.type, testCase.length),
          scale: 1,
          offset: 0,
        };
        const tag = { name: "t", dataType: testCase.type as TagDataType };
        const block = [0xaaaa, ...testCase.wire[order], 0x5555];
        // 64-bit integers come out as numbers when safe integers, bigint beyond (core's coerceToTagType).
        const { value } = testCase;
        const expected = typeof value === "bigint" && Number.isSafeInteger(Number(value)) ? Number(value) : value;
        expect(compileDecoder(address, order, tag)(block, 1)).toEqual({ ok: true, value: expected });
      });
    }
  }

  const as = (dataType: TagDataType) => ({ name: "t", dataType });
  const value = (decoded: TagTypeCoercion) => (decoded.ok ? decoded.value : decoded.quality);

  it("compiled decoders apply scale, offset, bits and bool-from-integer", () => {
    const base = { area: "holding-register" as const, count: 1, scale: 1, offset: 0 };
    expect(
      value(compileDecoder({ ...base, type: "int16", scale: 0.5, offset: 1 }, "ABCD", as("float32"))([0xfffc], 0)),
    ).toBe(-1);
    expect(value(compileDecoder({ ...base, type: "uint16" }, "ABCD", as("bool"))([2], 0))).toBe(true);
    expect(value(compileDecoder({ ...base, type: "bit", bit: 1 }, "DCBA", as("bool"))([2], 0))).toBe(true);
    expect(value(compileDecoder({ ...base, type: "bool", area: "coil" }, "ABCD", as("bool"))([false, true], 1))).toBe(
      true,
    );
    const int64 = { ...base, type: "int64" as const, count: 4, scale: 2 };
    expect(value(compileDecoder(int64, "ABCD", as("float64"))([0, 0, 0, 21], 0))).toBe(42);
  });

  it("compiled decoders never hand out a value the tag's type cannot hold exactly (BadTypeMismatch)", () => {
    const base = { area: "holding-register" as const, scale: 1, offset: 0 };
    const mismatch = { severity: "bad", code: QualityCodes.BadTypeMismatch };
    // float32 1.5 read by an int32 tag
    const float = compileDecoder({ ...base, type: "float32", count: 2 }, "ABCD", as("int32"));
    expect(float([0x3fc0, 0], 0)).toMatchObject({ ok: false, quality: mismatch });
    expect(float([0x4000, 0], 0)).toEqual({ ok: true, value: 2 });
    // uint64 2^60 read by a float64 tag: a number cannot carry it exactly
    const big = compileDecoder({ ...base, type: "uint64", count: 4 }, "ABCD", as("float64"));
    expect(big([0x1000, 0, 0, 0], 0)).toMatchObject({ ok: false, quality: mismatch });
    expect(big([0, 0, 0, 7], 0)).toEqual({ ok: true, value: 7 });
    // uint32 3e9 read by an int16 tag; a scaled register that lands between integers for an int32 tag
    expect(
      compileDecoder({ ...base, type: "uint32", count: 2 }, "ABCD", as("int16"))([0xb2d0, 0x5e00], 0),
    ).toMatchObject({
      ok: false,
      quality: mismatch,
    });
    expect(
      compileDecoder({ ...base, type: "uint16", count: 1, scale: 0.5 }, "ABCD", as("int32"))([3], 0),
    ).toMatchObject({
      ok: false,
      quality: { reason: expect.stringMatching(/1\.5 .*int32 tag "t"/) },
    });
    // a string register block read by a number tag
    expect(compileDecoder({ ...base, type: "string", count: 1 }, "ABCD", as("uint16"))([0x4142], 0)).toMatchObject({
      ok: false,
      quality: mismatch,
    });
  });

  it("decodes at an offset inside a larger block", () => {
    const block = [0x1111, 0x2222, 0x42f6, 0xe979, 0x3333];
    expect(decodeRegisters(block, 2, { type: "float32", count: 2 }, "ABCD")).toBe(Math.fround(123.456));
    expect(decodeRegisters(block, 1, { type: "uint16", count: 1 }, "ABCD")).toBe(0x2222);
  });

  it("reads and encodes bit n of a register, 0 being the least significant", () => {
    expect(decodeRegisters([0b1000], 0, { type: "bit", bit: 3, count: 1 }, "ABCD")).toBe(true);
    expect(decodeRegisters([0b1000], 0, { type: "bit", bit: 2, count: 1 }, "ABCD")).toBe(false);
    expect(decodeRegisters([0x8000], 0, { type: "bit", bit: 15, count: 1 }, "DCBA")).toBe(true);
    expect(encodeRegisters(true, { type: "bit", bit: 15, count: 1 }, "ABCD")).toEqual([0x8000]);
  });

  it("stops a string at the first NUL and pads a short one with NULs", () => {
    expect(decodeRegisters([0x4142, 0x0043], 0, { type: "string", count: 2 }, "ABCD")).toBe("AB");
    expect(encodeRegisters("A", { type: "string", count: 2 }, "ABCD")).toEqual([0x4100, 0x0000]);
  });
});

describe("integer tags on scaled 16- and 32-bit wires are exact", () => {
  // In floating point -23400 × 0.7 is -16379.999999999998: a whole -16380 read bad and its write was refused.
  const tag = (dataType: TagDataType) => ({ name: "flow", dataType });

  it.each([
    ["int16", "int16", 0.7, 0, -23400, -16380],
    ["int16", "int32", 0.7, 0, 23400, 16380],
    ["uint16", "uint16", 0.35, 0, 60000, 21000],
    ["int32", "int32", 0.7, 0.3, 1_999_999_991, 1_399_999_994],
  ] as const)(
    "a %s wire read by a %s tag, scale %d offset %d, reads raw %d as %d good",
    (wire, dataType, scale, offset, raw, value) => {
      const address = { area: "holding-register" as const, type: wire, count: registerCount(wire), scale, offset };
      const registers = encodeRegisters(raw, address, "ABCD");
      expect(compileDecoder(address, "ABCD", tag(dataType))(registers, 0)).toEqual({ ok: true, value });
      expect(writeReadsBack(value, rawFromEngineering(value, address), address, "ABCD", tag(dataType))).toBeUndefined();
    },
  );

  it("reads every whole result of an int16 wire with scale 0.7 good and every other raw value bad with the reason", () => {
    const address = { area: "holding-register" as const, type: "int16" as const, count: 1, scale: 0.7, offset: 0 };
    const decode = compileDecoder(address, "ABCD", tag("int16"));
    let good = 0;
    const wrong: number[] = [];
    for (let raw = -32768; raw < 32768; raw++) {
      const read = decode([raw & 0xffff], 0);
      const whole = raw % 10 === 0;
      if (whole && read.ok && read.value === (raw / 10) * 7) good++;
      else if (whole || read.ok || !/not a whole number/.test(read.quality.reason ?? "")) wrong.push(raw);
    }
    expect(wrong).toEqual([]);
    expect(good).toBe(6553);
  });
});

describe("engineering conversion", () => {
  const plain = { scale: 1, offset: 0 };

  it("reads a scaled integer as the decimal a write puts there (adv12x LOW-4: 3276.7 read back 3276.7000000000003)", () => {
    expect(engineeringFromRaw(32767, { scale: 0.1, offset: 0 }, "float32")).toBe(3276.7);
    expect(engineeringFromRaw(3, { scale: 0.1, offset: 0 }, "float32")).toBe(0.3);
    expect(engineeringFromRaw(250, { scale: 0.1, offset: -5 }, "float32")).toBe(20);
    expect(engineeringFromRaw(-32768, { scale: 0.01, offset: 0.5 }, "float64")).toBe(-327.18);
  });

  it("applies raw × scale + offset", () => {
    expect(engineeringFromRaw(250, { scale: 0.1, offset: -5 }, "float32")).toBeCloseTo(20);
    expect(engineeringFromRaw(250, plain, "int16")).toBe(250);
  });

  it("reads a non-zero integer as true for a bool tag", () => {
    expect(engineeringFromRaw(4, plain, "bool")).toBe(true);
    expect(engineeringFromRaw(0, plain, "bool")).toBe(false);
  });

  it("keeps 64-bit integers as bigint unless the tag is a float tag or scaled", () => {
    expect(engineeringFromRaw(12n, plain, "int32")).toBe(12n);
    expect(engineeringFromRaw(12n, plain, "float64")).toBe(12);
    expect(engineeringFromRaw(12n, { scale: 0.5, offset: 0 }, "int32")).toBe(6);
  });

  it("inverts scale and offset for integer wire types (a value between two steps is refused, see below)", () => {
    const address = { type: "int16" as const, count: 1, scale: 0.1, offset: 0 };
    expect(rawFromEngineering(20.0, address)).toBe(200);
    expect(rawFromEngineering(20.04, address, { round: true })).toBe(200);
    expect(rawFromEngineering(3276.7, address)).toBe(32767);
    expect(rawFromEngineering(1.25, { type: "float32", count: 2, scale: 0.5, offset: 1 })).toBe(0.5);
  });

  it.each([
    ["int16", 40000],
    ["int16", -32769],
    ["uint16", -1],
    ["uint32", 2 ** 32],
    ["int32", 2 ** 31],
    ["float32", 1e39],
  ] as const)("rejects %s %d with KILN_OUT_OF_RANGE", (type, value) => {
    const address = { type, count: registerCount(type), scale: 1, offset: 0 };
    expect(() => rawFromEngineering(value, address)).toThrow(expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }));
  });

  it("range-checks after scaling", () => {
    const address = { type: "int16" as const, count: 1, scale: 0.1, offset: 0 };
    expect(() => rawFromEngineering(3276.8, address)).toThrow(expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }));
  });

  it("range-checks 64-bit integers and strings", () => {
    const int64 = { type: "int64" as const, count: 4, scale: 1, offset: 0 };
    expect(rawFromEngineering(2n ** 63n - 1n, int64)).toBe(2n ** 63n - 1n);
    expect(() => rawFromEngineering(2n ** 63n, int64)).toThrow(expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }));
    const uint64 = { type: "uint64" as const, count: 4, scale: 1, offset: 0 };
    expect(() => rawFromEngineering(-1n, uint64)).toThrow(expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }));
    const string = { type: "string" as const, count: 2, scale: 1, offset: 0 };
    expect(rawFromEngineering("abcd", string)).toBe("abcd");
    expect(() => rawFromEngineering("abcde", string)).toThrow(expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }));
  });

  it("rejects a value of the wrong JavaScript type with KILN_VALIDATION", () => {
    const error = (() => {
      try {
        rawFromEngineering("12", { type: "int16", count: 1, scale: 1, offset: 0 }, { tag: "level" });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    expect(() => rawFromEngineering(3, { type: "bool", count: 1, scale: 1, offset: 0 })).toThrow(
      expect.objectContaining({ code: "KILN_VALIDATION" }),
    );
  });

  it("refuses a value between two wire steps with KILN_VALIDATION naming the tag, never rounds it (adv12p LOW)", () => {
    const int16 = { type: "int16" as const, count: 1, scale: 1, offset: 0 };
    const tenths = { type: "int16" as const, count: 1, scale: 0.1, offset: 0 };
    for (const [value, address] of [
      [1.5, int16],
      [0.15, tenths],
    ] as const) {
      expect(() => rawFromEngineering(value, address, { tag: "level" })).toThrow(
        expect.objectContaining({
          code: "KILN_VALIDATION",
          message: expect.stringMatching(/level.*not representable/s),
        }),
      );
    }
    // Sibling: scale round-off (0.3 / 0.1 = 2.9999999999999996) is a whole step, and so is a 64-bit one.
    expect(rawFromEngineering(0.3, tenths)).toBe(3);
    expect(rawFromEngineering(-12.7, tenths)).toBe(-127);
    expect(() => rawFromEngineering(2.5, { type: "int64", count: 4, scale: 1, offset: 0 })).toThrow(
      expect.objectContaining({ code: "KILN_VALIDATION" }),
    );
    expect(rawFromEngineering(1.5, int16, { round: true })).toBe(2);
  });

  it("clamps instead of throwing when asked (simulator signals)", () => {
    const address = { type: "int16" as const, count: 1, scale: 1, offset: 0 };
    expect(rawFromEngineering(40000, address, { clamp: true })).toBe(32767);
    expect(rawFromEngineering(-40000, address, { clamp: true })).toBe(-32768);
  });
});
