import { KilnError, quality, QualityCodes, type Tag, type TagDataType, type TagValue } from "@kiln/core";
import { coerceToTagType, type TagScalarValue, type TagTypeCoercion } from "@kiln/core/driver-kit";
import {
  DataType,
  Variant,
  VariantArrayType,
  type LocalizedText,
  type NodeId,
  type QualifiedName,
} from "node-opcua-client";

/** The OPC UA built-in type that best carries each Kiln data type. */
export const OPCUA_TYPE_OF_TAG: Readonly<Record<TagDataType, DataType>> = {
  bool: DataType.Boolean,
  int16: DataType.Int16,
  uint16: DataType.UInt16,
  int32: DataType.Int32,
  uint32: DataType.UInt32,
  int64: DataType.Int64,
  uint64: DataType.UInt64,
  float32: DataType.Float,
  float64: DataType.Double,
  string: DataType.String,
};

const KILN_TYPE_OF_OPCUA: Partial<Record<DataType, TagDataType>> = {
  [DataType.Boolean]: "bool",
  [DataType.SByte]: "int16",
  [DataType.Byte]: "uint16",
  [DataType.Int16]: "int16",
  [DataType.UInt16]: "uint16",
  [DataType.Int32]: "int32",
  [DataType.UInt32]: "uint32",
  [DataType.Int64]: "int64",
  [DataType.UInt64]: "uint64",
  [DataType.Float]: "float32",
  [DataType.Double]: "float64",
  [DataType.String]: "string",
  [DataType.LocalizedText]: "string",
  // Read as ms since 1970 and written from whole ms (tagValueFromVariant, variantForWrite).
  [DataType.DateTime]: "float64",
};

/** The Kiln data type closest to an OPC UA built-in type, where there is one. */
export function tagDataTypeOf(dataType: DataType): TagDataType | undefined {
  return KILN_TYPE_OF_OPCUA[dataType];
}

/** The result of turning an OPC UA value into a Kiln value: the value, or its `bad` quality. */
export type ConvertedValue = TagTypeCoercion;

function mismatch(problem: string): ConvertedValue {
  return { ok: false, quality: quality("bad", problem, QualityCodes.BadTypeMismatch) };
}

const TWO_POW_32 = 0x1_0000_0000n;

/**
 * Turns a read or notified OPC UA variant into the tag's Kiln value by the driver kit's one
 * rule, {@link coerceToTagType}: exact conversions only (an Int64 within 2^53 for a float64
 * tag, an integral in-range Double for an int32 tag), otherwise `bad` BadTypeMismatch naming
 * the OPC UA type and the tag's. Text-like types (LocalizedText, QualifiedName, NodeId, Guid,
 * ByteString as base64) count as strings, DateTime as ms since the epoch, StatusCode as its number.
 * A null String, LocalizedText (or one without text), QualifiedName or ByteString, scalar or array
 * element, and a null array (length -1 on the wire) of any type, is `bad` BadTypeMismatch saying so: OPC UA tells null from empty (Part 6, 5.2.2.4), a
 * Kiln value cannot be null, and reading it as "" would show a value the server did not send.
 * A one-dimensional array (`VariantArrayType.Array`) is converted element by element for an
 * array tag (`arrayLength`, docs/adr/0038-array-tags.md); an array for a scalar tag, a scalar for
 * an array tag or an array longer than `arrayLength` is BadTypeMismatch naming both shapes, and
 * a multi-dimensional one (`Matrix`, ValueRank > 1) is BadTypeMismatch naming its rank.
 */
export function tagValueFromVariant(variant: Variant | null | undefined, tag: Tag): ConvertedValue {
  if (!variant || variant.dataType === DataType.Null) return mismatch("the server returned no value");
  const typeName = DataType[variant.dataType];
  if (variant.arrayType === VariantArrayType.Matrix) {
    const rank = variant.dimensions?.length ?? 2;
    return mismatch(
      `the node holds a ${rank}-dimensional ${typeName} array (ValueRank ${rank}); tag "${tag.name}" can carry one dimension at most`,
    );
  }
  if (variant.arrayType === VariantArrayType.Array) {
    // A null array (length -1 on the wire) is no value, not an empty one (Part 6, 5.2.5).
    if (variant.value === null || variant.value === undefined) {
      return mismatch(nullValue(`the server sent a null ${typeName} array`, tag));
    }
    const given = variant.value as ArrayLike<unknown>;
    const elements = new Array<TagScalarValue>(given.length);
    for (let index = 0; index < given.length; index++) {
      const element = elementOf(variant.dataType, given[index]);
      if (element === undefined) return mismatch(`OPC UA type ${typeName} cannot be carried by a Kiln tag`);
      if (element === null) return mismatch(nullValue(`element ${index} is a null ${typeName}`, tag));
      elements[index] = element;
    }
    return coerceToTagType(elements, tag, typeName);
  }
  const raw = elementOf(variant.dataType, variant.value);
  if (raw === undefined) return mismatch(`OPC UA type ${typeName} cannot be carried by a Kiln tag`);
  if (raw === null) return mismatch(nullValue(`the server sent a null ${typeName}`, tag));
  return coerceToTagType(raw, tag, typeName);
}

/** The reason of a null text-like value: `what` was sent, and why it is not read as "". */
function nullValue(what: string, tag: Tag): string {
  return `${what} (no value, which OPC UA tells from an empty one); tag "${tag.name}" cannot carry null`;
}

/** One element as a Kiln scalar; null for a null String/LocalizedText/QualifiedName/ByteString; undefined for an unsupported type. */
function elementOf(dataType: DataType, value: unknown): TagScalarValue | null | undefined {
  switch (dataType) {
    case DataType.Boolean:
    case DataType.String:
    case DataType.SByte:
    case DataType.Byte:
    case DataType.Int16:
    case DataType.UInt16:
    case DataType.Int32:
    case DataType.UInt32:
    case DataType.Float:
    case DataType.Double:
      return value as TagScalarValue;
    case DataType.Int64:
    case DataType.UInt64: {
      const [high, low] = value as [number, number];
      const unsigned = (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
      const big = dataType === DataType.Int64 ? BigInt.asIntN(64, unsigned) : unsigned;
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    case DataType.DateTime:
      return value instanceof Date ? value.getTime() : undefined;
    case DataType.LocalizedText:
      return (value as LocalizedText | null)?.text ?? null;
    case DataType.QualifiedName:
      return (value as QualifiedName | null)?.name ?? null;
    case DataType.NodeId:
    case DataType.Guid:
      return String(value as NodeId | string);
    case DataType.StatusCode:
      return (value as { value: number }).value;
    case DataType.ByteString:
      if (value === null || value === undefined) return null;
      return Buffer.isBuffer(value) ? value.toString("base64") : undefined;
    default:
      return undefined;
  }
}

const INTEGER_RANGES: Partial<Record<DataType, readonly [number, number]>> = {
  [DataType.SByte]: [-128, 127],
  [DataType.Byte]: [0, 255],
  [DataType.Int16]: [-32768, 32767],
  [DataType.UInt16]: [0, 65535],
  [DataType.Int32]: [-2147483648, 2147483647],
  [DataType.UInt32]: [0, 4294967295],
};

/** The first instant an OPC UA DateTime encodes (1601-01-01T00:00:00Z), in ms since 1970 (Part 6 5.2.2.5). */
const OPCUA_DATETIME_MIN_MS = Date.UTC(1601, 0, 1);
/** The last instant Kiln writes as an OPC UA DateTime (9999-12-31T23:59:59.999Z), in ms since 1970 (Part 6 5.2.2.5). */
const OPCUA_DATETIME_MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * What the driver knows of a node it writes to, read once in one ReadRequest
 * (`discoverDataType`): its built-in DataType, its ValueRank (-1 scalar, -2 any, -3 scalar or
 * one dimension, 0 one or more dimensions, n ≥ 1 exactly n dimensions; OPC UA Part 3 5.6.2) and
 * its ArrayDimensions (the maximum length of each dimension, 0 = unknown), where the server
 * gives them.
 */
export interface OpcuaWriteTarget {
  readonly dataType: DataType;
  /** Undefined when the server did not give it: the shape is then not checked. */
  readonly valueRank?: number | undefined;
  /** Undefined when the server did not give it (or the node is not an array). */
  readonly arrayDimensions?: readonly number[] | undefined;
}

/**
 * Builds the variant to write `value` (already checked against `tag`'s type and range by the
 * core) to a node whose built-in type is `target` (or `target.dataType`), converting between
 * number, boolean and string where the meaning is plain.
 *
 * An array value (an array tag's, docs/adr/0038-array-tags.md) becomes a one-dimensional
 * `VariantArrayType.Array` variant, each element converted as a scalar would be.
 *
 * The value's shape must fit the node's (`target.valueRank`, `target.arrayDimensions`; the same
 * rule reads use, ADR 0038): a scalar only to a node with ValueRank -1, -2 or -3, an array only
 * to ValueRank -2, -3, 0 or 1 and no longer than ArrayDimensions[0] when that is non-zero. Many
 * servers (node-opcua included) do not check it and would replace an array by a scalar.
 *
 * Conversions are exact or refused: a Boolean node takes a boolean or 0/1 (0n/1n)
 * only; a DateTime node takes whole ms since 1970 within 1601-01-01..9999-12-31 (UTC) only; an
 * integer or bool tag's value to a Float or Double node must be held exactly (16777217 does not
 * fit a Float, 2^53 + 1 does not fit a Double). A float32/float64 tag's value to a Float node is
 * rounded to the nearest Float, as storing a measurement in a Float means, but a non-zero value
 * that would become 0 (below ~1.4e-45) or ±Infinity (beyond ~3.4e38) is refused.
 *
 * @throws KilnError `KILN_OUT_OF_RANGE` (`details.tag`, `value`, `nodeId`, `nodeDataType`) when
 *   the value (or an element) does not fit the node's type (an int32 tag writing 70000 to an
 *   Int16 node or 16777217 to a Float node, 0.5 to a Boolean node, 1e20 to a DateTime node, 1e-50
 *   to a Float node); `KILN_WRITE_REJECTED` with `statusName: "BadTypeMismatch"` when the node's
 *   type cannot hold the tag's kind of value at all, or the value's shape does not fit the
 *   node's (`details.valueShape`, `details.nodeShape`). No traffic happens.
 */
export function variantForWrite(
  value: TagValue,
  target: DataType | OpcuaWriteTarget,
  tag: Tag,
  nodeText: string,
): Variant {
  const node: OpcuaWriteTarget = typeof target === "number" ? { dataType: target } : target;
  const { dataType } = node;
  checkShape(value, node, tag, nodeText);
  if (Array.isArray(value)) {
    const elements = (value as readonly TagScalarValue[]).map((element) =>
      elementForWrite(element, dataType, tag, nodeText),
    );
    return new Variant({ dataType, arrayType: VariantArrayType.Array, value: elements });
  }
  return new Variant({
    dataType,
    arrayType: VariantArrayType.Scalar,
    value: elementForWrite(value as TagScalarValue, dataType, tag, nodeText),
  });
}

/** Refuses a value whose shape (scalar, array of n) does not fit the node's; see {@link variantForWrite}. */
function checkShape(value: TagValue, node: OpcuaWriteTarget, tag: Tag, nodeText: string): void {
  const { valueRank, arrayDimensions } = node;
  if (valueRank === undefined) return;
  const length = Array.isArray(value) ? (value as readonly unknown[]).length : undefined;
  const maxLength = valueRank === 1 || valueRank === -3 ? (arrayDimensions?.[0] ?? 0) : 0;
  const fits =
    length === undefined
      ? valueRank === -1 || valueRank === -2 || valueRank === -3
      : (valueRank === -2 || valueRank === -3 || valueRank === 0 || valueRank === 1) &&
        (maxLength === 0 || length <= maxLength);
  if (fits) return;
  const valueShape = length === undefined ? "a scalar" : `an array of ${length}`;
  const nodeShape =
    valueRank === -1
      ? "a scalar (ValueRank -1)"
      : valueRank > 1
        ? `a ${valueRank}-dimensional array (ValueRank ${valueRank})`
        : maxLength > 0
          ? `an array of at most ${maxLength} (ValueRank ${valueRank}, ArrayDimensions [${arrayDimensions?.join(", ")}])`
          : `an array (ValueRank ${valueRank})`;
  throw new KilnError(
    "KILN_WRITE_REJECTED",
    `Cannot write ${valueShape} to ${nodeText} (tag "${tag.name}"): the node holds ${nodeShape}. Fix the tag's arrayLength or address.`,
    {
      details: {
        tag: tag.name,
        nodeId: nodeText,
        nodeDataType: DataType[node.dataType],
        valueShape,
        nodeShape,
        statusCode: QualityCodes.BadTypeMismatch,
        statusName: "BadTypeMismatch",
      },
    },
  );
}

const FLOAT_TAG_TYPES: ReadonlySet<TagDataType> = new Set(["float32", "float64"]);

/** The variant value of one scalar (or one element) for a node of `dataType`; see {@link variantForWrite}. */
function elementForWrite(value: TagScalarValue, dataType: DataType, tag: Tag, nodeText: string): unknown {
  const mismatch = (): KilnError =>
    new KilnError(
      "KILN_WRITE_REJECTED",
      `Cannot write ${typeof value} to ${nodeText} (tag "${tag.name}"): the node's data type is ${DataType[dataType]}. Fix the tag's dataType or address.`,
      {
        details: {
          tag: tag.name,
          nodeId: nodeText,
          nodeDataType: DataType[dataType],
          statusCode: QualityCodes.BadTypeMismatch,
          statusName: "BadTypeMismatch",
        },
      },
    );
  const outOfRange = (reason: string): KilnError =>
    new KilnError("KILN_OUT_OF_RANGE", `Cannot write to ${nodeText} (tag "${tag.name}"): ${reason}.`, {
      details: { tag: tag.name, value: String(value), nodeId: nodeText, nodeDataType: DataType[dataType] },
    });
  const scalar = (variantValue: unknown): unknown => variantValue;

  switch (dataType) {
    case DataType.Boolean:
      if (typeof value === "boolean") return scalar(value);
      if (typeof value === "number" || typeof value === "bigint") {
        // Exactly or refuse: only 0 and 1 mean false and true; 0.5, 2.7 or -3 would
        // land as `true` and report success.
        if (value === 0 || value === 0n) return scalar(false);
        if (value === 1 || value === 1n) return scalar(true);
        throw outOfRange(`${value} is not 0 or 1; the node is Boolean`);
      }
      throw mismatch();
    case DataType.String:
      return scalar(String(value));
    case DataType.LocalizedText:
      return scalar({ text: String(value) });
    case DataType.Float:
    case DataType.Double: {
      const number = toNumber(value);
      if (number === undefined) throw mismatch();
      const stored = dataType === DataType.Float ? Math.fround(number) : number;
      if (typeof value === "bigint" ? BigInt(number) !== value : false) {
        throw outOfRange(`${value} is not held exactly by a ${DataType[dataType]} (it would be ${number})`);
      }
      // An integer or bool tag's value must land exactly; a float tag's is rounded to the
      // node's precision, as storing a measurement in a Float means, unless it would vanish
      // to 0 or become infinite.
      if (!FLOAT_TAG_TYPES.has(tag.dataType) && Number.isFinite(number) && stored !== number) {
        throw outOfRange(`${value} is not held exactly by a ${DataType[dataType]} (it would be ${stored})`);
      }
      if (Number.isFinite(number) && (!Number.isFinite(stored) || (stored === 0 && number !== 0))) {
        throw outOfRange(`${value} does not fit a ${DataType[dataType]} (it would be ${stored})`);
      }
      return scalar(number);
    }
    case DataType.Int64:
    case DataType.UInt64: {
      if (typeof value === "number" && !Number.isInteger(value)) {
        throw outOfRange(`${value} is not an integer; the node is ${DataType[dataType]}`);
      }
      const big = toBigInt(value);
      if (big === undefined) throw mismatch();
      const fits = dataType === DataType.Int64 ? BigInt.asIntN(64, big) === big : BigInt.asUintN(64, big) === big;
      if (!fits) throw outOfRange(`${big} does not fit ${DataType[dataType]}`);
      const unsigned = BigInt.asUintN(64, big);
      return scalar([Number(unsigned / TWO_POW_32), Number(unsigned % TWO_POW_32)]);
    }
    case DataType.DateTime: {
      const number = toNumber(value);
      if (number === undefined || typeof value === "boolean") throw mismatch();
      if (!Number.isInteger(number) || number < OPCUA_DATETIME_MIN_MS || number > OPCUA_DATETIME_MAX_MS) {
        throw outOfRange(
          `${number} ms since 1970 is not a time Kiln writes as an OPC UA DateTime (whole ms, 1601-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z, Part 6 5.2.2.5)`,
        );
      }
      return scalar(new Date(number));
    }
    default: {
      const range = INTEGER_RANGES[dataType];
      if (!range) throw mismatch();
      const number = toNumber(value);
      if (number === undefined) throw mismatch();
      if (!Number.isInteger(number)) throw outOfRange(`${number} is not an integer; the node is ${DataType[dataType]}`);
      if (number < range[0] || number > range[1]) {
        throw outOfRange(`${number} does not fit ${DataType[dataType]} (${range[0]}..${range[1]})`);
      }
      return scalar(number);
    }
  }
}

function toNumber(value: TagValue): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (typeof value === "bigint") return Number(value);
  return undefined;
}

function toBigInt(value: TagValue): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "boolean") return value ? 1n : 0n;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  return undefined;
}
