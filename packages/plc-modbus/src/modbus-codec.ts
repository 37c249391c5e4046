import {
  KilnError,
  KilnValidationError,
  QualityCodes,
  quality,
  type Tag,
  type TagDataType,
  type TagValue,
} from "@kiln/core";
import { coerceToTagType, type TagTypeCoercion } from "@kiln/core/driver-kit";
import type { ModbusAddress, ModbusByteOrder, ModbusWireType } from "./modbus-address";

/** A value as it sits on the wire, before scale and offset: booleans, numbers, bigints (64-bit) or strings. */
export type ModbusRawValue = boolean | number | bigint | string;

/** The part of an address the codec needs. */
export type ModbusCodecAddress = Pick<ModbusAddress, "type" | "bit" | "count">;

const FLOAT32_MAX = 3.4028234663852886e38;

const INTEGER_LIMITS: Partial<Record<ModbusWireType, readonly [number, number]>> = {
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

const BIGINT_LIMITS: Partial<Record<ModbusWireType, readonly [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

const SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);

const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);
const textDecoder = new TextDecoder("utf-8");
const textEncoder = new TextEncoder();

function swapsWords(order: ModbusByteOrder): boolean {
  return order === "CDAB" || order === "DCBA";
}

function swapsBytes(order: ModbusByteOrder): boolean {
  return order === "BADC" || order === "DCBA";
}

/** Copies `words` registers from `registers[offset...]` into `target` as canonical big-endian bytes. */
function canonicalBytes(
  registers: ArrayLike<number>,
  offset: number,
  words: number,
  order: ModbusByteOrder,
  swapWords: boolean,
  target: Uint8Array,
): void {
  const swapBytes = swapsBytes(order);
  for (let index = 0; index < words; index++) {
    const register = registers[offset + index] ?? 0;
    const word = swapWords ? words - 1 - index : index;
    const high = (register >>> 8) & 0xff;
    const low = register & 0xff;
    target[2 * word] = swapBytes ? low : high;
    target[2 * word + 1] = swapBytes ? high : low;
  }
}

/** Turns canonical big-endian bytes into registers in wire order. */
function wireRegisters(bytes: Uint8Array, order: ModbusByteOrder, swapWords: boolean): number[] {
  const words = bytes.length / 2;
  const swapBytes = swapsBytes(order);
  const out = new Array<number>(words);
  for (let index = 0; index < words; index++) {
    const word = swapWords ? words - 1 - index : index;
    const high = bytes[2 * word]!;
    const low = bytes[2 * word + 1]!;
    out[index] = swapBytes ? (low << 8) | high : (high << 8) | low;
  }
  return out;
}

/**
 * Decodes the raw value of a register-area tag starting at `registers[offset]`.
 *
 * @example
 * decodeRegisters([0x0000, 0x3f80], 0, { type: "float32", count: 2 }, "CDAB"); // 1
 */
export function decodeRegisters(
  registers: ArrayLike<number>,
  offset: number,
  address: ModbusCodecAddress,
  order: ModbusByteOrder,
): ModbusRawValue {
  switch (address.type) {
    case "bool":
    case "bit":
      return (((registers[offset] ?? 0) >>> (address.bit ?? 0)) & 1) === 1;
    case "string": {
      const bytes = new Uint8Array(address.count * 2);
      canonicalBytes(registers, offset, address.count, order, false, bytes);
      const end = bytes.indexOf(0);
      return textDecoder.decode(end === -1 ? bytes : bytes.subarray(0, end));
    }
    default: {
      const words = address.count;
      canonicalBytes(registers, offset, words, order, swapsWords(order), scratchBytes);
      switch (address.type) {
        case "int16":
          return scratch.getInt16(0);
        case "uint16":
          return scratch.getUint16(0);
        case "int32":
          return scratch.getInt32(0);
        case "uint32":
          return scratch.getUint32(0);
        case "float32":
          return scratch.getFloat32(0);
        case "float64":
          return scratch.getFloat64(0);
        case "int64":
          return scratch.getBigInt64(0);
        case "uint64":
          return scratch.getBigUint64(0);
      }
    }
  }
}

/**
 * Encodes a raw value into registers in wire order. The value must already fit the type (see
 * {@link rawFromEngineering}, which checks). A `bit` encodes as the register with only that bit set
 * (callers merge it into the register's other bits).
 *
 * @example
 * encodeRegisters(1, { type: "float32", count: 2 }, "ABCD"); // [0x3f80, 0x0000]
 */
export function encodeRegisters(value: ModbusRawValue, address: ModbusCodecAddress, order: ModbusByteOrder): number[] {
  switch (address.type) {
    case "bool":
    case "bit":
      return [value === true ? 1 << (address.bit ?? 0) : 0];
    case "string": {
      const bytes = new Uint8Array(address.count * 2);
      bytes.set(textEncoder.encode(String(value)).subarray(0, bytes.length));
      return wireRegisters(bytes, order, false);
    }
    default: {
      const words = address.count;
      const bytes = new Uint8Array(words * 2);
      const view = new DataView(bytes.buffer);
      switch (address.type) {
        case "int16":
          view.setInt16(0, Number(value));
          break;
        case "uint16":
          view.setUint16(0, Number(value));
          break;
        case "int32":
          view.setInt32(0, Number(value));
          break;
        case "uint32":
          view.setUint32(0, Number(value));
          break;
        case "float32":
          view.setFloat32(0, Number(value));
          break;
        case "float64":
          view.setFloat64(0, Number(value));
          break;
        case "int64":
          view.setBigInt64(0, BigInt(value));
          break;
        case "uint64":
          view.setBigUint64(0, BigInt(value));
          break;
      }
      return wireRegisters(bytes, order, swapsWords(order));
    }
  }
}

/**
 * Converts a raw wire value to the tag's engineering value: `raw × scale + offset` for numbers; integer
 * wire types read by a `bool` tag are true when non-zero. 64-bit integers stay `bigint` unless the tag is a
 * float tag or is scaled; a scaled 64-bit value is computed exactly in `bigint` when scale and offset are
 * integers (int64 scale 2 reading 2^60 gives 2^61), and as a number otherwise. Where no exact value exists (a
 * raw value beyond ±2^53 with a fractional scale or offset) the raw `bigint` is returned unscaled: the driver's
 * compiled decoders report such a value `bad` and never pass it on. The result is not yet checked against the
 * tag's type: the driver's compiled decoders do that.
 */
export function engineeringFromRaw(
  raw: ModbusRawValue,
  address: Pick<ModbusAddress, "scale" | "offset">,
  dataType: TagDataType,
): TagValue {
  if (typeof raw === "bigint") return exactFromRaw64(raw, address, dataType) ?? raw;
  if (typeof raw === "boolean" || typeof raw === "string") return raw;
  if (dataType === "bool") return raw !== 0;
  const scaled = address.scale !== 1 || address.offset !== 0;
  if (!scaled) return raw;
  if (Number.isSafeInteger(raw)) {
    // One correctly rounded division of the exact rational, the grid a write is checked on (`exactScaled`): raw 32767
    // at scale 0.1 reads 3276.7, which was written, not 3276.7000000000003 (32767 × 0.1 in binary; adv12x LOW-4).
    const { numerator, denominator } = exactScaled(BigInt(raw), address);
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    if (numerator <= max && -numerator <= max && denominator <= max) return Number(numerator) / Number(denominator);
  }
  return raw * address.scale + address.offset;
}

/** Whether a scale and offset are whole numbers, so a 64-bit register scales exactly in `bigint`. */
function integralScaling(address: Pick<ModbusAddress, "scale" | "offset">): boolean {
  return Number.isSafeInteger(address.scale) && Number.isSafeInteger(address.offset);
}

/** A rational number `numerator / denominator` in `bigint` (denominator > 0). */
interface Rational {
  readonly numerator: bigint;
  readonly denominator: bigint;
}

/**
 * The exact rational a finite number stands for AS WRITTEN: its shortest round-trip decimal (`0.1` is 1/10, not the
 * binary double next to it; `1.5e-7` is 15/10^8). A scale or offset is configured as a decimal literal, and with the
 * binary double's value an integer tag scaled by 0.1 would never read a whole number (10 × 0.1 is
 * 1.0000000000000000555 exactly). Integers beyond 2^53 stand for themselves.
 */
function decimalRational(number: number): Rational {
  if (Number.isInteger(number)) return { numerator: BigInt(number), denominator: 1n };
  const [mantissa, exponentText] = String(number).toLowerCase().split("e") as [string, string | undefined];
  const [whole, fraction = ""] = mantissa.split(".") as [string, string | undefined];
  const exponent = Number(exponentText ?? 0) - fraction.length;
  const digits = BigInt(`${whole}${fraction}`);
  return exponent >= 0
    ? { numerator: digits * 10n ** BigInt(exponent), denominator: 1n }
    : { numerator: digits, denominator: 10n ** BigInt(-exponent) };
}

/** `raw × scale + offset` exactly, with scale and offset the decimals they were written as ({@link decimalRational}). */
function exactScaled(raw: bigint, address: Pick<ModbusAddress, "scale" | "offset">): Rational {
  const scale = decimalRational(address.scale);
  const offset = decimalRational(address.offset);
  return {
    numerator: raw * scale.numerator * offset.denominator + offset.numerator * scale.denominator,
    denominator: scale.denominator * offset.denominator,
  };
}

function gcd(a: bigint, b: bigint): bigint {
  let x = a < 0n ? -a : a;
  let y = b < 0n ? -b : b;
  while (y !== 0n) [x, y] = [y, x % y];
  return x;
}

/**
 * Whether `raw × scale + offset` is a whole number for SOME integer raw value, scale and offset taken as the
 * decimals written ({@link decimalRational}). With scale `p/q` and offset `a/b` in lowest terms, `raw × p/q + a/b`
 * is whole for some integer `raw` exactly when `b` divides `q`: the offset's fraction must be a multiple of the
 * scale's step (offset 0.5 with scale 1, or offset 0.05 with scale 0.1, never reads a whole number). An integer tag
 * on an integer wire with such scaling could never read good; {@link parseModbusAddress} refuses it up front.
 */
export function scalingReachesWholeNumbers(address: Pick<ModbusAddress, "scale" | "offset">): boolean {
  const scale = decimalRational(address.scale);
  const offset = decimalRational(address.offset);
  const q = scale.denominator / gcd(scale.numerator, scale.denominator);
  const b = offset.denominator / gcd(offset.numerator, offset.denominator);
  return q % b === 0n;
}

const INTEGER_TAGS: ReadonlySet<TagDataType> = new Set(["int16", "uint16", "int32", "uint32", "int64", "uint64"]);

/**
 * The engineering value of a 64-bit raw value, or `undefined` when none is exact (H1 of adv12 fix12e: beyond
 * ±2^53 the scale was dropped and the raw value passed as good). Integral scaling is exact in `bigint` (a number
 * when it is a safe integer, or for a float tag when the number holds it exactly). For an integer tag with a
 * fractional scale or offset, `raw × scale + offset` is computed exactly as a rational ({@link exactScaled}): the
 * value is that integer, or none when the exact result is not a whole number (adv12b H1/H2: the double arithmetic
 * rounded 2^60 × 0.5 − 5 and 6004799503160659 × 1.5 to neighbouring integers, good). For a float tag, a fractional
 * scale or offset is applied to the raw value as a number, only when that number is the raw value exactly.
 */
function exactFromRaw64(
  raw: bigint,
  address: Pick<ModbusAddress, "scale" | "offset">,
  dataType: TagDataType,
): TagValue | undefined {
  if (dataType === "bool") return raw !== 0n;
  const scaled = address.scale !== 1 || address.offset !== 0;
  const float = dataType === "float32" || dataType === "float64";
  if (!scaled && !float) return raw;
  if (integralScaling(address) || INTEGER_TAGS.has(dataType)) {
    const { numerator, denominator } = exactScaled(raw, address);
    if (numerator % denominator !== 0n) return undefined;
    const exact = numerator / denominator;
    if (exact <= SAFE_BIGINT && exact >= -SAFE_BIGINT) return Number(exact);
    // Beyond ±2^53 a bigint: the type check passes it for an int64 tag and refuses it for a float tag.
    return exact;
  }
  const number = Number(raw);
  if (BigInt(number) !== raw) return undefined;
  return number * address.scale + address.offset;
}

/** Options of {@link rawFromEngineering}. */
export interface RawConversionOptions {
  /** Clamp a value that does not fit the wire type instead of throwing (used by the simulator). */
  readonly clamp?: boolean;
  /** Tag name, for error details. */
  readonly tag?: string;
  /**
   * Round a value between two steps of an integer wire type to the nearest step instead of throwing (used by
   * the simulator). Writes never round: `1.5` to an `int16` register, or `0.15` with scale `0.1`, is refused.
   */
  readonly round?: boolean;
}

/**
 * How many units in the last place (of the largest magnitude involved) a scaled value may lie from a whole wire
 * step and still be that step: the round-off of `(value - offset) / scale` and back in binary floating point
 * (`0.3 / 0.1` is `2.9999999999999996`), never a real fraction of a step. Relative to the VALUE, not to the step
 * count: a tolerance relative to the raw magnitude (1e-9 before adv12 M1) let `2000000000.5` land as `2000000001`.
 */
const STEP_ULPS = 4;

/** Whether `a` and `b` differ by at most {@link STEP_ULPS} units in the last place of the largest of `magnitudes`. */
function withinUlps(a: number, b: number, ...magnitudes: number[]): boolean {
  return Math.abs(a - b) <= STEP_ULPS * Number.EPSILON * Math.max(...magnitudes.map(Math.abs));
}

/**
 * `raw`, the nearest integer to `number`, unless `number` lies between two steps of the integer wire type: then
 * `KILN_VALIDATION` naming the tag and the rule, unless `options.round`. Unscaled, `number` must be a whole
 * number; scaled, `raw × scale + offset` must give `value` back within {@link STEP_ULPS} ULPs.
 */
function wholeStep(
  value: unknown,
  number: number,
  address: Pick<ModbusAddress, "type" | "scale" | "offset">,
  options: RawConversionOptions,
): number {
  const raw = Math.round(number);
  if (options.round || number === raw) return raw;
  if (address.scale !== 1 || address.offset !== 0) {
    const engineering = Number(value);
    const back = raw * address.scale + address.offset;
    if (withinUlps(back, engineering, engineering, address.offset, raw * address.scale)) return raw;
  }
  const scaled = address.scale !== 1 || address.offset !== 0;
  const step = scaled
    ? `steps of ${address.scale}${address.offset === 0 ? "" : ` from ${address.offset}`}`
    : "whole numbers";
  throw new KilnValidationError("tag value", [
    {
      path: options.tag ?? "",
      message: `${String(value)} is not representable on the ${address.type} wire (${step}; raw ${number}): writes are refused, never rounded`,
    },
  ]);
}

function isIntegral(value: TagValue): value is number | bigint {
  return typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value));
}

/**
 * `(value − offset) / scale` in `bigint` for a whole `value` on a 64-bit wire, the exact inverse of the read with
 * scale and offset the decimals they were written as ({@link decimalRational}; a number would round 2^61 + 2 before
 * dividing, and a ULP tolerance let neighbouring integers pass above ~5.6e14, adv12b H2): a value between two steps
 * is refused like {@link wholeStep}.
 */
function exactRaw64(
  value: number | bigint,
  address: Pick<ModbusAddress, "type" | "scale" | "offset">,
  options: RawConversionOptions,
): bigint {
  // raw = (value − offset) / scale exactly, scale and offset the decimals they were written as (adv12b H1/H2).
  const scale = decimalRational(address.scale);
  const offset = decimalRational(address.offset);
  const numerator = (BigInt(value) * offset.denominator - offset.numerator) * scale.denominator;
  const denominator = offset.denominator * scale.numerator;
  if (numerator % denominator === 0n) return numerator / denominator;
  if (options.round) return BigInt(Math.round(Number(numerator) / Number(denominator)));
  throw new KilnValidationError("tag value", [
    {
      path: options.tag ?? "",
      message: `${String(value)} is not representable on the ${address.type} wire (steps of ${address.scale}${address.offset === 0 ? "" : ` from ${address.offset}`}): writes are refused, never rounded`,
    },
  ]);
}

function outOfRange(message: string, options: RawConversionOptions, value: unknown): KilnError {
  return new KilnError("KILN_OUT_OF_RANGE", message, {
    details: { ...(options.tag === undefined ? {} : { tag: options.tag }), value: String(value) },
  });
}

function wrongType(expected: string, value: unknown, options: RawConversionOptions): KilnValidationError {
  return new KilnValidationError("tag value", [
    { path: options.tag ?? "", message: `expected ${expected}, got ${typeof value} ${String(value)}` },
  ]);
}

/**
 * Converts an engineering value to the raw wire value: `(value − offset) / scale`, rounded to the nearest
 * integer for integer wire types, then checked against the wire type's limits.
 *
 * @throws KilnError `KILN_OUT_OF_RANGE` when the raw value does not fit the wire type (a string longer
 *   than its registers, 70000 for an int16...), unless `options.clamp`.
 * @throws KilnValidationError when the value's JavaScript type does not suit the tag.
 */
export function rawFromEngineering(
  value: TagValue,
  address: Pick<ModbusAddress, "type" | "scale" | "offset" | "count">,
  options: RawConversionOptions = {},
): ModbusRawValue {
  const type = address.type;
  if (type === "bool" || type === "bit") {
    if (typeof value === "boolean") return value;
    if (typeof value === "number" && (value === 0 || value === 1)) return value === 1;
    throw wrongType("a boolean", value, options);
  }
  if (type === "string") {
    if (typeof value !== "string") throw wrongType("a string", value, options);
    const bytes = textEncoder.encode(value).length;
    if (bytes > address.count * 2) {
      if (options.clamp) return value.slice(0, address.count * 2);
      throw outOfRange(
        `"${value}" needs ${bytes} bytes but the tag holds ${address.count * 2} (${address.count} registers)`,
        options,
        value,
      );
    }
    return value;
  }
  const scaled = address.scale !== 1 || address.offset !== 0;
  const bigintLimits = BIGINT_LIMITS[type];
  if (bigintLimits) {
    let raw: bigint;
    if (typeof value === "bigint" && !scaled) raw = value;
    else if (scaled && isIntegral(value)) {
      raw = exactRaw64(value, address, options);
    } else if (typeof value === "number" || typeof value === "bigint") {
      const number = (Number(value) - address.offset) / address.scale;
      if (!Number.isFinite(number)) throw outOfRange(`${String(value)} is not a finite number`, options, value);
      raw = BigInt(wholeStep(value, number, address, options));
    } else if (typeof value === "boolean") raw = value ? 1n : 0n;
    else throw wrongType("a number or bigint", value, options);
    if (raw < bigintLimits[0] || raw > bigintLimits[1]) {
      if (options.clamp) return raw < bigintLimits[0] ? bigintLimits[0] : bigintLimits[1];
      throw outOfRange(`${String(value)} does not fit ${type}`, options, value);
    }
    return raw;
  }
  let number: number;
  if (typeof value === "number" || typeof value === "bigint") number = Number(value);
  else if (typeof value === "boolean") number = value ? 1 : 0;
  else throw wrongType("a number", value, options);
  if (scaled) number = (number - address.offset) / address.scale;
  if (!Number.isFinite(number)) {
    if (options.clamp) return 0;
    throw outOfRange(`${String(value)} is not a finite number`, options, value);
  }
  const limits = INTEGER_LIMITS[type];
  if (limits) {
    const rounded = wholeStep(value, number, address, options);
    if (rounded < limits[0] || rounded > limits[1]) {
      if (options.clamp) return Math.min(limits[1], Math.max(limits[0], rounded));
      throw outOfRange(
        `${String(value)}${scaled ? ` (raw ${rounded})` : ""} does not fit ${type} (${limits[0]}..${limits[1]})`,
        options,
        value,
      );
    }
    return rounded;
  }
  if (type === "float32" && Math.abs(number) > FLOAT32_MAX) {
    if (options.clamp) return Math.sign(number) * FLOAT32_MAX;
    throw outOfRange(`${String(value)} does not fit float32`, options, value);
  }
  return number;
}

/**
 * The one write rule that matches the read rule (adv12 M1): `raw`, encoded and decoded again exactly as a read of
 * the tag would (its compiled decoder and core's type check), must read back as a good `value`, so a write never
 * lands a value the device then holds differently, or that every read reports bad (a `float64` tag on an `int64`
 * wire written 2^60). Compared exactly when unscaled, within a few ULPs when scaled (the round-off of
 * `raw × scale + offset`); a float tag on a `float32` wire is the one documented rounding: any finite value in
 * range is stored as its nearest float32 (what a float32 register holds), an integer tag's value must be exact.
 * A string must read back identically: a NUL ends it on read, a lone surrogate reads as U+FFFD (adv12 fix12e M2).
 *
 * @returns why the value cannot be written (for a `KILN_VALIDATION` naming the tag), or `undefined`.
 */
export function writeReadsBack(
  value: TagValue,
  raw: ModbusRawValue,
  address: Pick<ModbusAddress, "area" | "type" | "bit" | "count" | "scale" | "offset">,
  order: ModbusByteOrder,
  tag: Pick<Tag, "name" | "dataType">,
): string | undefined {
  if (typeof raw === "string") {
    if (typeof value !== "string") return undefined;
    const read = compileDecoder(address, order, tag)(encodeRegisters(raw, address, order), 0);
    if (read.ok && read.value === value) return undefined;
    const back = read.ok ? JSON.stringify(read.value) : `bad (${read.quality.reason ?? "type mismatch"})`;
    return `${JSON.stringify(value)} would read back as ${back}: a string is written only when it reads back identically (UTF-8 without NUL, no lone surrogate), writes follow the read rule`;
  }
  if (typeof raw === "boolean" || typeof value === "boolean") return undefined;
  if (typeof value !== "number" && typeof value !== "bigint") return undefined;
  const registers = encodeRegisters(raw, address, order);
  const read = compileDecoder(address, order, tag)(registers, 0);
  const wire = `the ${address.type} wire${address.scale !== 1 || address.offset !== 0 ? " (scaled)" : ""}`;
  if (!read.ok) {
    return `${String(value)} written to ${wire} would read back bad (${read.quality.reason ?? "type mismatch"}): writes follow the read rule`;
  }
  const back = read.value;
  if (typeof back !== "number" && typeof back !== "bigint") return undefined;
  if ((tag.dataType === "float32" || tag.dataType === "float64") && address.type === "float32") return undefined;
  const scaled = address.scale !== 1 || address.offset !== 0;
  const same =
    typeof back === "bigint" || typeof value === "bigint" || INTEGER_TAGS.has(tag.dataType)
      ? Number.isInteger(Number(value)) && Number.isInteger(Number(back)) && BigInt(value) === BigInt(back)
      : scaled
        ? // The round-off of raw × scale + offset grows with |offset| and |raw × scale|, as in wholeStep.
          withinUlps(back, value, value, back, address.offset, back - address.offset)
        : back === value;
  if (same) return undefined;
  return `${String(value)} is not representable on ${wire}: it would be stored as ${String(back)}, and writes are refused, never rounded`;
}

/**
 * Decodes one tag's value from a read block (registers, or booleans for bit areas) at `offset`: the
 * engineering value checked against the tag's type, or a bad quality (`BadTypeMismatch`) saying why not.
 */
export type ModbusTagDecoder = (block: ArrayLike<number | boolean>, offset: number) => TagTypeCoercion;

function swap16(word: number): number {
  return ((word & 0xff) << 8) | ((word >>> 8) & 0xff);
}

/** Wire types whose every value each tag type holds exactly (unscaled), so no per-value check is needed. */
const EXACT_FITS: Partial<Record<ModbusWireType, ReadonlySet<TagDataType>>> = {
  int16: new Set(["int16", "int32", "int64", "float32", "float64"]),
  uint16: new Set(["uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]),
  int32: new Set(["int32", "int64", "float32", "float64"]),
  uint32: new Set(["uint32", "int64", "uint64", "float32", "float64"]),
  float32: new Set(["float32", "float64"]),
  string: new Set(["string"]),
};

/**
 * Builds a decoder specialised for one tag's wire type, byte order, scale and data type: the same value as
 * {@link decodeRegisters} followed by {@link engineeringFromRaw}, without re-examining the address per read,
 * then checked against the tag's type by core's `coerceToTagType` (the one rule for device values: a
 * float32 register read by an `int32` tag is `bad` `BadTypeMismatch`, never 1.5 good). The check is skipped
 * only where every wire value fits the tag's type exactly. The driver compiles one per tag per read plan.
 */
export function compileDecoder(
  address: Pick<ModbusAddress, "area" | "type" | "bit" | "count" | "scale" | "offset">,
  order: ModbusByteOrder,
  tag: Pick<Tag, "name" | "dataType">,
): ModbusTagDecoder {
  const scaled = address.scale !== 1 || address.offset !== 0;
  const bits = address.area === "coil" || address.area === "discrete-input" || address.type === "bit";
  if (!bits && (address.type === "int64" || address.type === "uint64")) return compileDecoder64(address, order, tag);
  if (!bits && scaled && INTEGER_TAGS.has(tag.dataType) && INTEGER_WIRES.has(address.type)) {
    return compileExactIntegerDecoder(address, order, tag);
  }
  const decode = compileValueDecoder(address, order, tag.dataType);
  const fits = bits
    ? tag.dataType === "bool"
    : tag.dataType === "bool" ||
      (scaled
        ? (tag.dataType === "float64" || tag.dataType === "float32") && address.type !== "string"
        : (EXACT_FITS[address.type]?.has(tag.dataType) ?? false));
  if (fits) return (block, offset) => ({ ok: true, value: decode(block, offset) });
  const source = `${address.area} ${bits ? "bit" : address.type}${scaled ? " (scaled)" : ""}`;
  return (block, offset) => coerceToTagType(decode(block, offset), tag, source);
}

/**
 * A 64-bit register's decoder: always checked against the tag's type (a scaled float tag is no exception, H1 of
 * adv12 fix12e), and `bad` naming the rule when no exact engineering value exists.
 */
function compileDecoder64(
  address: Pick<ModbusAddress, "area" | "type" | "bit" | "count" | "scale" | "offset">,
  order: ModbusByteOrder,
  tag: Pick<Tag, "name" | "dataType">,
): ModbusTagDecoder {
  const codec = { type: address.type, bit: address.bit, count: address.count };
  const scaled = address.scale !== 1 || address.offset !== 0;
  const source = `${address.area} ${address.type}${scaled ? " (scaled)" : ""}`;
  return (block, offset) => {
    const raw = decodeRegisters(block as ArrayLike<number>, offset, codec, order) as bigint;
    const value = exactFromRaw64(raw, address, tag.dataType);
    if (value !== undefined) return coerceToTagType(value, tag, source);
    const reason = `${source} raw ${raw} × ${address.scale} + ${address.offset} has no exact value for ${tag.dataType} tag "${tag.name}" (${INTEGER_TAGS.has(tag.dataType) ? "an integer tag reads only a whole exact result, scale and offset taken as the decimals written" : "beyond ±2^53 only whole-number scale and offset are exact"})`;
    return { ok: false, quality: quality("bad", reason, QualityCodes.BadTypeMismatch) };
  };
}

/** The 16- and 32-bit integer wire types: their raw values are safe integers. */
const INTEGER_WIRES: ReadonlySet<ModbusWireType> = new Set(["int16", "uint16", "int32", "uint32"]);

/**
 * An integer tag on a scaled 16- or 32-bit integer wire: `raw × scale + offset` computed exactly, scale and offset
 * the decimals written, as the 64-bit decoder does (in floating point `-23400 × 0.7` is `-16379.999999999998`, so an
 * `int16` tag read a whole `-16380` as bad, and a write of it was refused). The value is that integer, or `bad`
 * `BadTypeMismatch` when the exact result is not whole. Integer arithmetic in numbers while it stays below 2^53
 * (every realistic scale), in `bigint` beyond.
 */
function compileExactIntegerDecoder(
  address: Pick<ModbusAddress, "area" | "type" | "bit" | "count" | "scale" | "offset">,
  order: ModbusByteOrder,
  tag: Pick<Tag, "name" | "dataType">,
): ModbusTagDecoder {
  const decodeRaw = compileValueDecoder({ ...address, scale: 1, offset: 0 }, order, "float64") as (
    block: ArrayLike<number | boolean>,
    offset: number,
  ) => number;
  // raw × p/q + a/b = (raw × p·b + a·q) / (q·b)
  const { numerator: p, denominator: q } = decimalRational(address.scale);
  const { numerator: a, denominator: b } = decimalRational(address.offset);
  const factor = p * b;
  const shift = a * q;
  const divisor = q * b;
  const source = `${address.area} ${address.type} (scaled)`;
  const numbers =
    (factor < 0n ? -factor : factor) * 2n ** 32n + (shift < 0n ? -shift : shift) <= SAFE_BIGINT &&
    divisor <= SAFE_BIGINT;
  const [f, s, d] = [Number(factor), Number(shift), Number(divisor)];
  return (block, offset) => {
    const raw = decodeRaw(block, offset);
    let whole: number | undefined;
    if (numbers) {
      const numerator = raw * f + s;
      if (numerator % d === 0) whole = numerator / d;
    } else {
      const numerator = BigInt(raw) * factor + shift;
      if (numerator % divisor === 0n) whole = Number(numerator / divisor);
    }
    if (whole !== undefined) return coerceToTagType(whole === 0 ? 0 : whole, tag, source);
    const reason = `${source} raw ${raw} × ${address.scale} + ${address.offset} = ${raw * address.scale + address.offset} is not a whole number for ${tag.dataType} tag "${tag.name}" (an integer tag reads only a whole exact result, scale and offset taken as the decimals written)`;
    return { ok: false, quality: quality("bad", reason, QualityCodes.BadTypeMismatch) };
  };
}

function compileValueDecoder(
  address: Pick<ModbusAddress, "area" | "type" | "bit" | "count" | "scale" | "offset">,
  order: ModbusByteOrder,
  dataType: TagDataType,
): (block: ArrayLike<number | boolean>, offset: number) => TagValue {
  if (address.area === "coil" || address.area === "discrete-input") {
    return (block, offset) => block[offset] === true;
  }
  const swapBytes = swapsBytes(order);
  const high = swapsWords(order) ? 1 : 0;
  const low = 1 - high;
  const word = swapBytes
    ? (block: ArrayLike<number | boolean>, index: number) => swap16(block[index] as number)
    : (block: ArrayLike<number | boolean>, index: number) => block[index] as number;
  let raw: ((block: ArrayLike<number | boolean>, offset: number) => number) | undefined;
  switch (address.type) {
    case "bit": {
      const bit = address.bit ?? 0;
      return (block, offset) => (((block[offset] as number) >>> bit) & 1) === 1;
    }
    case "uint16":
      raw = (block, offset) => word(block, offset);
      break;
    case "int16":
      raw = (block, offset) => (word(block, offset) << 16) >> 16;
      break;
    case "uint32":
      raw = (block, offset) => word(block, offset + high) * 0x10000 + word(block, offset + low);
      break;
    case "int32":
      raw = (block, offset) => (word(block, offset + high) << 16) | word(block, offset + low);
      break;
    case "float32":
      raw = (block, offset) => {
        scratch.setUint16(0, word(block, offset + high));
        scratch.setUint16(2, word(block, offset + low));
        return scratch.getFloat32(0);
      };
      break;
    default: {
      const codec = { type: address.type, bit: address.bit, count: address.count };
      return (block, offset) =>
        engineeringFromRaw(decodeRegisters(block as ArrayLike<number>, offset, codec, order), address, dataType);
    }
  }
  const decode = raw;
  if (dataType === "bool") return (block, offset) => decode(block, offset) !== 0;
  const { scale, offset: shift } = address;
  if (scale === 1 && shift === 0) return decode;
  return (block, offset) => decode(block, offset) * scale + shift;
}
