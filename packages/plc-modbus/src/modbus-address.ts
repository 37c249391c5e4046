import { z } from "zod";
import { KilnValidationError, type Tag, type TagDataType } from "@kiln/core";
import { issuesFromZod } from "@kiln/core/driver-kit";
import { scalingReachesWholeNumbers } from "./modbus-codec";

/** The four Modbus data areas (tables). */
export const MODBUS_AREAS = ["coil", "discrete-input", "input-register", "holding-register"] as const;
/** A Modbus data area: coils and discrete inputs hold bits, input and holding registers hold 16-bit words. */
export type ModbusArea = (typeof MODBUS_AREAS)[number];

/**
 * How a value is laid out on the wire. `bool` is one coil or discrete input; `bit` is bit `n` (0 = least
 * significant) of one register; 64-bit integers decode to `bigint`; `string` spans `length` registers.
 */
export const MODBUS_WIRE_TYPES = [
  "bool",
  "bit",
  "int16",
  "uint16",
  "int32",
  "uint32",
  "float32",
  "float64",
  "int64",
  "uint64",
  "string",
] as const;
/** A Modbus wire type. See {@link MODBUS_WIRE_TYPES}. */
export type ModbusWireType = (typeof MODBUS_WIRE_TYPES)[number];

/**
 * Byte orders, named by where the bytes of the 32-bit big-endian value `A B C D` land on the wire.
 * `ABCD` is the Modbus standard (big-endian words, most significant word first); `CDAB` swaps words;
 * `BADC` swaps the bytes inside each word; `DCBA` does both. 64-bit values follow the same two rules
 * (word order reversed for `CDAB`/`DCBA`, bytes swapped for `BADC`/`DCBA`); 16-bit values and strings
 * honour only the byte swap.
 */
export const MODBUS_BYTE_ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"] as const;
/** A word and byte order. See {@link MODBUS_BYTE_ORDERS}. */
export type ModbusByteOrder = (typeof MODBUS_BYTE_ORDERS)[number];

/** The most registers one string tag may span (one read request). */
export const MODBUS_MAX_STRING_REGISTERS = 125;

const AREA_CODES: Readonly<Record<string, ModbusArea>> = {
  C: "coil",
  CO: "coil",
  DI: "discrete-input",
  IR: "input-register",
  HR: "holding-register",
};

const AREA_PREFIX: Readonly<Record<ModbusArea, string>> = {
  coil: "C",
  "discrete-input": "DI",
  "input-register": "IR",
  "holding-register": "HR",
};

/** zod schema of the object form of a Modbus address (shape only; see {@link modbusAddressSchema}). */
export const modbusAddressObjectSchema = z
  .object({
    area: z.enum(MODBUS_AREAS),
    address: z.number().int().min(0).max(65535),
    type: z.enum(MODBUS_WIRE_TYPES).optional(),
    bit: z.number().int().min(0).max(15).optional(),
    order: z.enum(MODBUS_BYTE_ORDERS).optional(),
    scale: z
      .number()
      .refine((value) => value !== 0, { message: "scale must not be 0" })
      .optional(),
    offset: z.number().optional(),
    unitId: z
      .number()
      .int()
      .min(1, "must be 1-255: unit 0 is the broadcast address, which no device answers")
      .max(255)
      .optional(),
    length: z.number().int().min(1).max(MODBUS_MAX_STRING_REGISTERS).optional(),
  })
  .strict();

/** A Modbus address as written in a tag definition, object form (every optional field may be left out). */
export type ModbusAddressInput = z.input<typeof modbusAddressObjectSchema>;

/** A Modbus address after shape validation, before it is checked against the tag's data type. */
export type ModbusAddressSpec = z.output<typeof modbusAddressObjectSchema>;

const COMPACT = /^(CO|C|DI|IR|HR)(\d{1,5})(?:\.(\d{1,2}))?((?::[A-Za-z0-9]+)*)(?:@(\d{1,3}))?$/i;

type CompactResult = { readonly spec: Record<string, unknown> } | { readonly error: string };

/**
 * Parses the compact string form `<area><address>[.<bit>][:<type>][:<length>][:<order>][@<unitId>]`,
 * for example `HR100:float32:CDAB`, `IR7.12`, `C0`, `HR300:string:16`, `HR40:int64:DCBA@3`.
 */
function parseCompact(text: string): CompactResult {
  // No trimming: "HR1\n" or " HR1" is a typo (or a pasted control character), not an address.
  const match = COMPACT.exec(text);
  if (!match) {
    return {
      error: `${JSON.stringify(text)} is not a Modbus address; expected e.g. "HR100", "HR100:float32:CDAB", "IR7.12", "C0", "DI3", "HR300:string:16@2"`,
    };
  }
  const [, areaCode, address, bit, segmentText, unitId] = match;
  const spec: Record<string, unknown> = {
    area: AREA_CODES[areaCode!.toUpperCase()],
    address: Number(address),
  };
  if (bit !== undefined) spec.bit = Number(bit);
  if (unitId !== undefined) spec.unitId = Number(unitId);
  const segments = segmentText ? segmentText.slice(1).split(":") : [];
  for (const segment of segments) {
    const lower = segment.toLowerCase();
    const upper = segment.toUpperCase();
    let key: string;
    let value: unknown;
    if ((MODBUS_WIRE_TYPES as readonly string[]).includes(lower)) [key, value] = ["type", lower];
    else if ((MODBUS_BYTE_ORDERS as readonly string[]).includes(upper)) [key, value] = ["order", upper];
    else if (/^\d+$/.test(segment)) [key, value] = ["length", Number(segment)];
    else {
      return {
        error: `unknown segment ":${segment}" in "${text}"; expected a type (${MODBUS_WIRE_TYPES.join(", ")}), a byte order (${MODBUS_BYTE_ORDERS.join(", ")}) or a string length`,
      };
    }
    if (key in spec) return { error: `"${text}" gives the ${key} twice` };
    spec[key] = value;
  }
  return { spec };
}

/**
 * zod schema of a Modbus address in either form: the compact string (`"HR100:float32:CDAB"`) or the object
 * form (`{ area: "holding-register", address: 100, type: "float32", order: "CDAB" }`). It checks the shape
 * only; {@link parseModbusAddress} also checks the address against the tag's data type.
 *
 * @example
 * modbusAddressSchema.parse("HR100:float32:CDAB@2");
 * // { area: "holding-register", address: 100, type: "float32", order: "CDAB", unitId: 2 }
 */
export const modbusAddressSchema = z.preprocess((input, context) => {
  if (typeof input === "string") {
    const result = parseCompact(input);
    if ("error" in result) {
      context.addIssue({ code: "custom", message: result.error, input });
      return z.NEVER;
    }
    return result.spec;
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    context.addIssue({
      code: "custom",
      message: 'a Modbus address must be a string such as "HR100:float32" or an object { area, address, ... }',
      input,
    });
    return z.NEVER;
  }
  return input;
}, modbusAddressObjectSchema);

/**
 * A fully resolved Modbus address: what the driver, the read planner and the simulator work with.
 * `order` and `unitId` stay undefined when the tag leaves them to the connection's defaults.
 */
export interface ModbusAddress {
  /** The data area. */
  readonly area: ModbusArea;
  /** Zero-based address of the first register or bit (protocol address, not the 1-based "40001" notation). */
  readonly address: number;
  /** The wire type. */
  readonly type: ModbusWireType;
  /** Bit index (0 = least significant) for type `bit`. */
  readonly bit?: number;
  /** Word and byte order; undefined means the connection's default. */
  readonly order?: ModbusByteOrder;
  /** Engineering value = raw × scale + offset. @default 1 */
  readonly scale: number;
  /** Engineering value = raw × scale + offset. @default 0 */
  readonly offset: number;
  /** Unit id (slave id) overriding the connection's. */
  readonly unitId?: number;
  /** How many registers (register areas) or bits (bit areas) the tag occupies. */
  readonly count: number;
}

const WIRE_DEFAULT: Readonly<Record<Exclude<TagDataType, "bool">, ModbusWireType>> = {
  int16: "int16",
  uint16: "uint16",
  int32: "int32",
  uint32: "uint32",
  int64: "int64",
  uint64: "uint64",
  float32: "float32",
  float64: "float64",
  string: "string",
};

const NUMERIC_WIRE_TYPES: ReadonlySet<ModbusWireType> = new Set([
  "int16",
  "uint16",
  "int32",
  "uint32",
  "float32",
  "float64",
  "int64",
  "uint64",
]);

const INTEGER_DATA_TYPES: ReadonlySet<TagDataType> = new Set(["int16", "uint16", "int32", "uint32", "int64", "uint64"]);
const INTEGER_WIRE_TYPES: ReadonlySet<ModbusWireType> = new Set([
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
]);

/** True for the areas that hold bits (coils and discrete inputs). */
export function isBitArea(area: ModbusArea): boolean {
  return area === "coil" || area === "discrete-input";
}

/** True for the areas a client may write (coils and holding registers). */
export function isWritableArea(area: ModbusArea): boolean {
  return area === "coil" || area === "holding-register";
}

/** Number of registers a value of `type` occupies (`length` for strings; 1 for bits and bools). */
export function registerCount(type: ModbusWireType, length = 1): number {
  switch (type) {
    case "int32":
    case "uint32":
    case "float32":
      return 2;
    case "float64":
    case "int64":
    case "uint64":
      return 4;
    case "string":
      return length;
    default:
      return 1;
  }
}

interface Issue {
  readonly path: string;
  readonly message: string;
}

function resolveSpec(spec: ModbusAddressSpec, dataType: TagDataType): ModbusAddress | Issue[] {
  const issues: Issue[] = [];
  const scale = spec.scale ?? 1;
  const offset = spec.offset ?? 0;
  if (isBitArea(spec.area)) {
    if (spec.type !== undefined && spec.type !== "bool") {
      issues.push({ path: "type", message: `a ${spec.area} holds one bit: its type is "bool", not "${spec.type}"` });
    }
    if (dataType !== "bool") {
      issues.push({ path: "area", message: `a ${spec.area} holds one bit; a ${dataType} tag needs a register area` });
    }
    for (const key of ["bit", "order", "scale", "offset", "length"] as const) {
      if (spec[key] !== undefined) issues.push({ path: key, message: `"${key}" does not apply to a ${spec.area}` });
    }
    if (issues.length > 0) return issues;
    return withOptional({ area: spec.area, address: spec.address, type: "bool", scale, offset, count: 1 }, spec);
  }

  let type: ModbusWireType;
  if (spec.type !== undefined) type = spec.type;
  else if (spec.bit !== undefined) type = "bit";
  else if (dataType === "bool") {
    issues.push({
      path: "bit",
      message: 'a bool tag in a register area needs the bit number (0-15), e.g. "HR10.3" or { bit: 3 }',
    });
    return issues;
  } else type = WIRE_DEFAULT[dataType];

  if (type === "bool") {
    issues.push({ path: "type", message: `type "bool" is for coils and discrete inputs; use "bit" in a ${spec.area}` });
  }
  if (type === "bit" && spec.bit === undefined) {
    issues.push({ path: "bit", message: 'type "bit" needs the bit number (0-15)' });
  }
  if (type !== "bit" && spec.bit !== undefined) {
    issues.push({ path: "bit", message: `"bit" applies only to type "bit", not "${type}"` });
  }
  if (type === "string" && spec.length === undefined) {
    issues.push({ path: "length", message: 'type "string" needs its length in registers, e.g. "HR300:string:16"' });
  }
  if (type !== "string" && spec.length !== undefined) {
    issues.push({ path: "length", message: `"length" applies only to type "string", not "${type}"` });
  }
  if (type === "bit" && spec.order !== undefined) {
    issues.push({ path: "order", message: 'a "bit" is read from the register value; "order" does not apply' });
  }
  const numeric = NUMERIC_WIRE_TYPES.has(type);
  if (!numeric && (spec.scale !== undefined || spec.offset !== undefined)) {
    issues.push({ path: spec.scale !== undefined ? "scale" : "offset", message: `a ${type} cannot be scaled` });
  }
  const compatible =
    dataType === "bool"
      ? type === "bit" || type === "int16" || type === "uint16"
      : dataType === "string"
        ? type === "string"
        : numeric;
  if (!compatible) {
    issues.push({ path: "type", message: `a ${dataType} tag cannot be stored as Modbus type "${type}"` });
  }
  if (
    INTEGER_DATA_TYPES.has(dataType) &&
    INTEGER_WIRE_TYPES.has(type) &&
    !scalingReachesWholeNumbers({ scale, offset })
  ) {
    // An integer tag reads only a whole exact result: with this scaling no raw value gives one (adv12h LOW).
    issues.push({
      path: "offset",
      message: `an integer tag (${dataType}) reads only whole numbers, and raw × ${scale} + ${offset} is never whole for an integer raw value: the offset's fraction must be a multiple of the scale's step`,
    });
  }
  const count = registerCount(type, spec.length ?? 1);
  if (spec.address + count - 1 > 65535) {
    issues.push({ path: "address", message: `${type} at ${spec.address} runs past the last register (65535)` });
  }
  if (issues.length > 0) return issues;
  return withOptional({ area: spec.area, address: spec.address, type, scale, offset, count }, spec);
}

function withOptional(base: Omit<ModbusAddress, "bit" | "order" | "unitId">, spec: ModbusAddressSpec): ModbusAddress {
  const out: { -readonly [K in keyof ModbusAddress]: ModbusAddress[K] } = { ...base };
  if (spec.bit !== undefined && base.type === "bit") out.bit = spec.bit;
  if (spec.order !== undefined && base.type !== "bool" && base.type !== "bit") out.order = spec.order;
  if (spec.unitId !== undefined) out.unitId = spec.unitId;
  return Object.freeze(out);
}

/**
 * Parses and checks a Modbus address for a tag of `dataType`. The wire type defaults from the data type
 * (`int16` → `int16`, `float32` → `float32`, `bool` → `bool` in coils and discrete inputs, `bit` in registers).
 *
 * @example
 * parseModbusAddress("HR100:float32:CDAB", "float64");
 * // { area: "holding-register", address: 100, type: "float32", order: "CDAB", scale: 1, offset: 0, count: 2 }
 * parseModbusAddress({ area: "input-register", address: 7, scale: 0.1 }, "float32"); // type float32, 2 registers
 * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad field under `path` (e.g. `address.order`).
 */
export function parseModbusAddress(input: unknown, dataType: TagDataType, path = "address"): ModbusAddress {
  const parsed = modbusAddressSchema.safeParse(input);
  if (!parsed.success) {
    // A compact string has no fields of its own: name the field in the message instead of the path.
    const issues =
      typeof input === "string"
        ? issuesFromZod(parsed.error).map((issue) => ({
            path,
            message: issue.path === "" ? issue.message : `${issue.path}: ${issue.message}`,
          }))
        : issuesFromZod(parsed.error, [path]);
    throw new KilnValidationError("Modbus address", issues);
  }
  const resolved = resolveSpec(parsed.data, dataType);
  if (Array.isArray(resolved)) {
    throw new KilnValidationError(
      "Modbus address",
      resolved.map((issue) => ({
        path: typeof input === "string" || issue.path === "" ? path : `${path}.${issue.path}`,
        message: issue.message,
      })),
    );
  }
  return resolved;
}

/**
 * The Modbus address of `tag`.
 * @throws KilnValidationError naming `<tag>.address` when the tag has no address or a bad one,
 *   and `<tag>.arrayLength` for an array tag: the Modbus driver does not carry arrays yet
 *   (docs/adr/0038-array-tags.md), so it says so when the tag is configured, never at run time.
 */
export function modbusTagAddress(tag: Tag): ModbusAddress {
  if (tag.arrayLength !== undefined) {
    throw new KilnValidationError("Modbus address", [
      {
        path: `${tag.name}.arrayLength`,
        message: "the Modbus driver does not support array tags yet (ADR 0038): define a scalar tag per register",
      },
    ]);
  }
  if (tag.address === undefined) {
    throw new KilnValidationError("Modbus address", [
      { path: `${tag.name}.address`, message: 'a Modbus tag needs an address, e.g. "HR100" or "C3"' },
    ]);
  }
  return parseModbusAddress(tag.address, tag.dataType, `${tag.name}.address`);
}

/**
 * The compact string form of a resolved address (scale and offset are not part of the compact form).
 *
 * @example
 * formatModbusAddress(parseModbusAddress("hr100:cdab:float32", "float32")); // "HR100:float32:CDAB"
 */
export function formatModbusAddress(address: ModbusAddress): string {
  let text = `${AREA_PREFIX[address.area]}${address.address}`;
  if (address.type === "bit") text += `.${address.bit ?? 0}`;
  else if (address.type !== "bool") text += `:${address.type}`;
  if (address.type === "string") text += `:${address.count}`;
  if (address.order !== undefined) text += `:${address.order}`;
  if (address.unitId !== undefined) text += `@${address.unitId}`;
  return text;
}

/**
 * A block of `count` registers or bits from `address` in `area`, as health names it: `"HR100-109"`,
 * `"C3"` for one.
 */
export function formatModbusBlock(area: ModbusArea, address: number, count: number): string {
  const prefix = AREA_PREFIX[area];
  return count > 1 ? `${prefix}${address}-${address + count - 1}` : `${prefix}${address}`;
}
