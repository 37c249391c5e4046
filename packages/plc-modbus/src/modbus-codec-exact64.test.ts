import { describe, expect, it } from "vitest";
import type { TagDataType } from "@kiln/core";
import type { ModbusAddress } from "./modbus-address";
import { compileDecoder, encodeRegisters, rawFromEngineering, writeReadsBack } from "./modbus-codec";

// adv12b H1/H2: a 64-bit register with a fractional scale or offset was scaled in double arithmetic, checking only
// that the raw value was exact, never the result: int64 scale 0.5 offset −5 reading 2^60 gave …488 good (exact
// …483), 6004799503160659 × 1.5 gave …988 good (exact …988.5, no integer). Writes accepted neighbouring integers
// within a ULP tolerance above ~5.6e14. Reference here: exact bigint rationals, scale and offset the decimals written.

interface Rational {
  n: bigint;
  d: bigint;
}
function decimal(x: number): Rational {
  if (Number.isInteger(x)) return { n: BigInt(x), d: 1n };
  const [mantissa, exponent = "0"] = String(x).toLowerCase().split("e") as [string, string?];
  const [whole, fraction = ""] = mantissa.split(".") as [string, string?];
  const power = Number(exponent) - fraction.length;
  const digits = BigInt(whole + fraction);
  return power >= 0 ? { n: digits * 10n ** BigInt(power), d: 1n } : { n: digits, d: 10n ** BigInt(-power) };
}
function exact(raw: bigint, scale: number, offset: number): Rational {
  const s = decimal(scale);
  const o = decimal(offset);
  return { n: raw * s.n * o.d + o.n * s.d, d: s.d * o.d };
}

const address = (type: "int64" | "uint64", scale: number, offset: number) =>
  ({ area: "holding-register", address: 0, type, count: 4, bit: undefined, scale, offset }) as unknown as ModbusAddress;
const tag = (dataType: TagDataType) => ({ name: "t", dataType });
const read = (raw: bigint, type: "int64" | "uint64", scale: number, offset: number, dataType: TagDataType) => {
  const a = address(type, scale, offset);
  return compileDecoder(a, "ABCD", tag(dataType))(encodeRegisters(raw, a, "ABCD") as number[], 0);
};

const scales = [0.5, 0.1, 0.001, 1e-7, 1.5, -0.25, 2.5, 3, 2];
const offsets = [0, -5, 0.5, -0.25, 0.1, 1000];
const raws = [0n, 1n, 3n, 10n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 60n, 2n ** 60n + 1n, 2n ** 60n + 3n];
raws.push(6004799503160659n, 2n ** 62n, 12345678901234567n, 2n ** 63n - 1n, -(2n ** 60n) - 1n);

describe("64-bit registers scaled exactly (adv12b H1/H2)", () => {
  it("int64 scale 0.5 offset −5 reading 2^60 is exactly 2^59 − 5 (before: …488 good)", () => {
    const sample = read(2n ** 60n, "int64", 0.5, -5, "int64");
    expect(sample).toMatchObject({ ok: true, value: 2n ** 59n - 5n });
  });

  it("6004799503160659 × 1.5 has no integer value: bad for an int64 tag (before: …988 good)", () => {
    expect(read(6004799503160659n, "int64", 1.5, 0, "int64").ok).toBe(false);
  });

  it("fuzz: every good integer read equals the exact rational result, and every exact integer result reads good", () => {
    const wrong: string[] = [];
    for (const type of ["int64", "uint64"] as const)
      for (const scale of scales)
        for (const offset of offsets)
          for (const raw of raws) {
            if (type === "uint64" && raw < 0n) continue;
            const reference = exact(raw, scale, offset);
            const whole = reference.n % reference.d === 0n ? reference.n / reference.d : undefined;
            const sample = read(raw, type, scale, offset, "int64");
            const inRange = whole !== undefined && whole >= -(2n ** 63n) && whole < 2n ** 63n;
            if (sample.ok && (whole === undefined || BigInt(sample.value as number | bigint) !== whole))
              wrong.push(`${type} ${raw}×${scale}+${offset} read ${String(sample.value)} good`);
            if (!sample.ok && inRange) wrong.push(`${type} ${raw}×${scale}+${offset} exact ${whole} read bad`);
          }
    expect(wrong).toEqual([]);
  });

  it("fuzz writes: an int64 tag's value is accepted only when its raw maps back exactly (before: 8,076 neighbours)", () => {
    const wrong: string[] = [];
    const values = [0n, 7n, 2n ** 53n + 1n, 2n ** 59n - 5n, 2n ** 59n - 4n, 9007199254740993n, 560000000000001n];
    for (const scale of scales)
      for (const offset of offsets)
        for (const value of values)
          for (const delta of [-1n, 0n, 1n]) {
            const written = value + delta;
            const a = address("int64", scale, offset);
            const asValue = written <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(written) : written;
            let raw: bigint;
            try {
              raw = rawFromEngineering(asValue, a) as bigint;
            } catch {
              continue; // refused: never wrong
            }
            if (writeReadsBack(asValue, raw, a, "ABCD", tag("int64")) !== undefined) continue;
            const back = exact(raw, scale, offset);
            if (back.n !== written * back.d) wrong.push(`${written} with ${scale}/${offset} wrote raw ${raw}`);
          }
    expect(wrong).toEqual([]);
  });

  it("sibling: a float tag keeps its nearest-double reading; an int tag scaled by 0.1 reads whole results", () => {
    expect(read(30n, "int64", 0.1, 0, "int64")).toMatchObject({ ok: true, value: 3 });
    expect(read(31n, "int64", 0.1, 0, "int64").ok).toBe(false);
    expect(read(3n, "int64", 0.1, 0, "float64")).toMatchObject({ ok: true, value: 3 * 0.1 });
  });
});
