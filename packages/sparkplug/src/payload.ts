import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { KilnValidationError, type ValidationIssue } from "@kiln/core";
import { FLOAT32_MAX } from "@kiln/core/driver-kit";
import {
  SPARKPLUG_DATA_TYPES,
  sparkplugDataTypeOf,
  type SparkplugDataType,
  type SparkplugMetricDataType,
  type SparkplugPropertyDataType,
  type SparkplugScalarDataType,
} from "./datatypes";
import { PayloadSchema } from "./sparkplug-b-schema";

/** A value of a scalar data type (integers, Float, Double, Boolean, String, Text, DateTime). */
export type SparkplugScalarValue = number | bigint | boolean | string;

/**
 * A metric value, by data type:
 * - Int8, Int16, Int32, UInt8, UInt16, UInt32, Float, Double: `number`;
 * - Int64, UInt64: `number` when a safe integer, else `bigint` (decoding gives a number whenever
 *   the value is within ±(2^53 − 1));
 * - DateTime: `number`, ms since the Unix epoch (an unsigned 64-bit integer on the wire);
 * - Boolean: `boolean`; String, Text, UUID: `string`; Bytes, File: `Uint8Array`;
 * - DataSet: {@link SparkplugDataSet}; Template: {@link SparkplugTemplate};
 * - Int8Array ... UInt32Array, FloatArray, DoubleArray, DateTimeArray: `number[]`;
 *   Int64Array, UInt64Array: `(number | bigint)[]`; BooleanArray: `boolean[]`; StringArray: `string[]`.
 */
export type SparkplugValue =
  | SparkplugScalarValue
  | Uint8Array
  | SparkplugDataSet
  | SparkplugTemplate
  | readonly (number | bigint)[]
  | readonly boolean[]
  | readonly string[];

/** One property value (Sparkplug 3.0.0, 6.4.8 "PropertyValue"). `value: null` is `is_null`. */
export interface SparkplugPropertyValue {
  /** The property's data type. */
  readonly type: SparkplugPropertyDataType;
  /** The value, as for a metric of the same type; a nested set or list for PropertySet / PropertySetList. */
  readonly value: SparkplugScalarValue | SparkplugPropertySet | readonly SparkplugPropertySet[] | null;
}

/**
 * A property set (Sparkplug 3.0.0, 6.4.7 "PropertySet"): keys to typed values. Keys are unique
 * (a payload that repeats a key is refused, never merged).
 */
export type SparkplugPropertySet = Readonly<Record<string, SparkplugPropertyValue>>;

/** Metadata of a metric (Sparkplug 3.0.0, 6.4.6 "MetaData"), for Bytes, File and multi-part values. */
export interface SparkplugMetaData {
  /** True when the value is one part of a larger one. */
  readonly isMultiPart?: boolean;
  /** The value's content type (e.g. `utf-8`, a MIME type). */
  readonly contentType?: string;
  /** Size of the complete value in bytes. */
  readonly size?: number;
  /** Sequence number of this part of a multi-part value. */
  readonly seq?: number;
  /** For a File: its name. */
  readonly fileName?: string;
  /** For a File: its type (e.g. `xml`). */
  readonly fileType?: string;
  /** MD5 of the value, for a receiver to check it. */
  readonly md5?: string;
  /** Free text. */
  readonly description?: string;
}

/** A DataSet (Sparkplug 3.0.0, 6.4.9): typed columns and rows of scalar values. */
export interface SparkplugDataSet {
  /** Column names, in order. */
  readonly columns: readonly string[];
  /** Column data types, one per column. */
  readonly types: readonly SparkplugScalarDataType[];
  /** Rows, each with one value per column, of the column's type. */
  readonly rows: readonly (readonly SparkplugScalarValue[])[];
}

/** A Template parameter (Sparkplug 3.0.0, 6.4.13). */
export interface SparkplugTemplateParameter {
  /** The parameter's name. */
  readonly name: string;
  /** The parameter's data type. */
  readonly type: SparkplugScalarDataType;
  /** The value; `undefined` when the parameter has none. */
  readonly value?: SparkplugScalarValue;
}

/** A Template definition or instance (Sparkplug 3.0.0, 6.4.12). */
export interface SparkplugTemplate {
  /** The template's version, as its author names them. */
  readonly version?: string;
  /** For an instance: the name of its definition. */
  readonly templateRef?: string;
  /** True for a definition, false for an instance. */
  readonly isDefinition?: boolean;
  /** The template's member metrics. */
  readonly metrics: readonly SparkplugMetric[];
  /** The template's parameters. */
  readonly parameters?: readonly SparkplugTemplateParameter[];
}

/**
 * One metric (Sparkplug 3.0.0, 6.4.4 "Metric").
 *
 * To encode a value the codec needs `datatype`; pass `omitDatatype` to {@link encodePayload}
 * for NDATA/DDATA/NCMD/DCMD, where the spec says the datatype should not be sent. A decoded
 * metric without a datatype on the wire gets it from {@link DecodeOptions.datatypeOf}; without
 * one, `datatype` is undefined and `value` is the wire value as it is (`int_value` a number,
 * `long_value` a bigint, and so on).
 */
export interface SparkplugMetric {
  /** The metric name; required in births, may be omitted when `alias` is used. */
  readonly name?: string;
  /** The alias (an unsigned 64-bit integer) announced in the birth certificate. */
  readonly alias?: number | bigint;
  /** When the value was sampled, ms since the Unix epoch. */
  readonly timestamp?: number;
  /** The data type; required in births and to encode a value. */
  readonly datatype?: SparkplugMetricDataType;
  /** True for a value sent late (store-and-forward). */
  readonly isHistorical?: boolean;
  /** True for a value that a host should not store. */
  readonly isTransient?: boolean;
  /** Metadata of a Bytes or File value, or of a multi-part value. */
  readonly metadata?: SparkplugMetaData;
  /** The metric's properties (quality, engineering unit...). */
  readonly properties?: SparkplugPropertySet;
  /** The value; `null` is sent as `is_null: true` with no value. */
  readonly value?: SparkplugValue | null;
}

/** A Sparkplug B payload (Sparkplug 3.0.0, 6.4.2 "Payload"). */
export interface SparkplugPayload {
  /** When the message was sent, ms since the Unix epoch. */
  readonly timestamp?: number;
  /** The metrics, in order. */
  readonly metrics: readonly SparkplugMetric[];
  /** The message sequence number, 0–255 (every message but NDEATH carries one). */
  readonly seq?: number;
  /** An identifier of the payload's schema or form, when the sender uses one. */
  readonly uuid?: string;
  /** Opaque bytes, for whatever the metrics cannot carry. */
  readonly body?: Uint8Array;
}

/** Options of {@link encodePayload}. */
export interface EncodeOptions {
  /**
   * Leave `datatype` off the wire (it is still needed to encode each value): for NDATA, DDATA,
   * NCMD and DCMD, whose datatypes the birth certificate gave. @default false
   */
  readonly omitDatatype?: boolean;
}

/** Options of {@link decodePayload}. */
export interface DecodeOptions {
  /**
   * The datatype of a metric that carries none on the wire (a DATA or CMD metric): look it up
   * in the birth by name or alias. Return undefined when unknown.
   */
  readonly datatypeOf?: (metric: {
    readonly name?: string;
    readonly alias?: number | bigint;
  }) => SparkplugMetricDataType | undefined;
}

// ---- wire shapes (protobuf-es messages of the schema in sparkplug-b-schema.ts) -------------

type WireOneof =
  | { case: "intValue"; value: number }
  | { case: "longValue"; value: bigint }
  | { case: "floatValue"; value: number }
  | { case: "doubleValue"; value: number }
  | { case: "booleanValue"; value: boolean }
  | { case: "stringValue"; value: string }
  | { case: "bytesValue"; value: Uint8Array }
  | { case: "datasetValue"; value: WireDataSet }
  | { case: "templateValue"; value: WireTemplate }
  | { case: "propertysetValue"; value: WirePropertySet }
  | { case: "propertysetsValue"; value: WirePropertySetList }
  | { case: "extensionValue"; value: object }
  | { case: undefined; value?: undefined };

interface WirePropertyValue {
  type?: number;
  isNull?: boolean;
  value: WireOneof;
}
interface WirePropertySet {
  keys: string[];
  values: WirePropertyValue[];
}
interface WirePropertySetList {
  propertyset: WirePropertySet[];
}
interface WireDataSet {
  numOfColumns?: bigint;
  columns: string[];
  types: number[];
  rows: { elements: { value: WireOneof }[] }[];
}
interface WireTemplate {
  version?: string;
  metrics: WireMetric[];
  parameters: { name?: string; type?: number; value: WireOneof }[];
  templateRef?: string;
  isDefinition?: boolean;
}
interface WireMetaData {
  isMultiPart?: boolean;
  contentType?: string;
  size?: bigint;
  seq?: bigint;
  fileName?: string;
  fileType?: string;
  md5?: string;
  description?: string;
}
interface WireMetric {
  name?: string;
  alias?: bigint;
  timestamp?: bigint;
  datatype?: number;
  isHistorical?: boolean;
  isTransient?: boolean;
  isNull?: boolean;
  metadata?: WireMetaData;
  properties?: WirePropertySet;
  value: WireOneof;
}
interface WirePayload {
  timestamp?: bigint;
  metrics: WireMetric[];
  seq?: bigint;
  uuid?: string;
  body?: Uint8Array;
}

/** proto2 explicit presence: protobuf-es keeps an unset optional field's default on the prototype. */
function has<T extends object>(message: T, field: keyof T & string): boolean {
  return Object.hasOwn(message, field);
}

const UINT64_MAX = 2n ** 64n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Integer ranges of the types carried in `int_value` (uint32 on the wire). */
const INT_RANGES: Readonly<Partial<Record<SparkplugDataType, readonly [number, number]>>> = {
  Int8: [-128, 127],
  Int16: [-32_768, 32_767],
  Int32: [-2_147_483_648, 2_147_483_647],
  UInt8: [0, 255],
  UInt16: [0, 65_535],
  UInt32: [0, 4_294_967_295],
};
const INT_BITS: Readonly<Partial<Record<SparkplugDataType, number>>> = { Int8: 8, Int16: 16, Int32: 32 };

class Issues {
  readonly list: ValidationIssue[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
}

const isInteger = (value: unknown): value is number | bigint =>
  typeof value === "bigint" || (typeof value === "number" && Number.isSafeInteger(value));

/** A bigint as a number when it is a safe integer, else as it is. */
function narrow(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

// ---- encode ----------------------------------------------------------------------------------

/**
 * The wire oneof of a scalar value of `type`, or undefined (with an issue) when the value does not
 * fit the type.
 */
function encodeScalar(type: SparkplugDataType, value: unknown, path: string, issues: Issues): WireOneof | undefined {
  const range = INT_RANGES[type];
  if (range !== undefined) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) {
      issues.add(path, `a ${type} value must be an integer from ${range[0]} to ${range[1]}`);
      return undefined;
    }
    // Signed values as their 32-bit two's complement, as the reference implementation writes them.
    return { case: "intValue", value: value >>> 0 };
  }
  switch (type) {
    case "Int64":
    case "UInt64":
    case "DateTime": {
      const [min, max, rule] =
        type === "Int64"
          ? [INT64_MIN, INT64_MAX, "an integer from -2^63 to 2^63-1"]
          : type === "UInt64"
            ? [0n, UINT64_MAX, "an integer from 0 to 2^64-1"]
            : [0n, BigInt(Number.MAX_SAFE_INTEGER), "an integer number of ms since the Unix epoch, from 0"];
      if (!isInteger(value) || (type === "DateTime" && typeof value !== "number")) {
        issues.add(path, `a ${type} value must be ${rule}`);
        return undefined;
      }
      const big = BigInt(value);
      if (big < min || big > max) {
        issues.add(path, `a ${type} value must be ${rule}`);
        return undefined;
      }
      return { case: "longValue", value: BigInt.asUintN(64, big) };
    }
    case "Float":
    case "Double":
      if (typeof value !== "number") {
        issues.add(path, `a ${type} value must be a number`);
        return undefined;
      }
      // A Float is IEEE 754 single precision: a finite value beyond FLT_MAX would go out as ±Infinity.
      if (type === "Float" && Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX) {
        issues.add(path, `a Float value must be within ±${FLOAT32_MAX} (IEEE 754 single precision)`);
        return undefined;
      }
      return type === "Float" ? { case: "floatValue", value } : { case: "doubleValue", value };
    case "Boolean":
      if (typeof value !== "boolean") {
        issues.add(path, "a Boolean value must be a boolean");
        return undefined;
      }
      return { case: "booleanValue", value };
    case "String":
    case "Text":
    case "UUID":
      if (typeof value !== "string") {
        issues.add(path, `a ${type} value must be a string`);
        return undefined;
      }
      return { case: "stringValue", value };
    /* v8 ignore next 3 -- callers pass scalar types only */
    default:
      issues.add(path, `${type} is not a scalar type`);
      return undefined;
  }
}

/**
 * @internal Why `value` cannot be a value of the scalar `type` (Int8 ... UInt64, Float, Double,
 * Boolean, String, Text, UUID, DateTime), or undefined when it can: the rule encoding applies,
 * without encoding anything.
 */
export function scalarValueProblem(type: SparkplugDataType, value: unknown): string | undefined {
  const issues = new Issues();
  encodeScalar(type, value, "", issues);
  return issues.list[0]?.message;
}

const ARRAY_ELEMENT: Readonly<
  Partial<Record<SparkplugDataType, { readonly element: SparkplugDataType; readonly size: number }>>
> = {
  Int8Array: { element: "Int8", size: 1 },
  Int16Array: { element: "Int16", size: 2 },
  Int32Array: { element: "Int32", size: 4 },
  Int64Array: { element: "Int64", size: 8 },
  UInt8Array: { element: "UInt8", size: 1 },
  UInt16Array: { element: "UInt16", size: 2 },
  UInt32Array: { element: "UInt32", size: 4 },
  UInt64Array: { element: "UInt64", size: 8 },
  FloatArray: { element: "Float", size: 4 },
  DoubleArray: { element: "Double", size: 8 },
  DateTimeArray: { element: "DateTime", size: 8 },
};

/** Packs an array value into bytes (Sparkplug 3.0.0, 6.4.17: little-endian elements). */
function encodeArray(type: SparkplugDataType, value: unknown, path: string, issues: Issues): Uint8Array | undefined {
  if (!Array.isArray(value)) {
    issues.add(path, `a ${type} value must be an array`);
    return undefined;
  }
  const before = issues.list.length;
  if (type === "BooleanArray") {
    const bytes = new Uint8Array(4 + Math.ceil(value.length / 8));
    new DataView(bytes.buffer).setUint32(0, value.length, true);
    value.forEach((item: unknown, index) => {
      if (typeof item !== "boolean") issues.add(`${path}[${index}]`, "a BooleanArray element must be a boolean");
      // Bits are packed most significant first within each byte.
      else if (item) bytes[4 + (index >> 3)]! |= 0x80 >> (index & 7);
    });
    return issues.list.length === before ? bytes : undefined;
  }
  if (type === "StringArray") {
    const parts: Uint8Array[] = [];
    const encoder = new TextEncoder();
    value.forEach((item: unknown, index) => {
      if (typeof item !== "string" || item.includes("\0")) {
        issues.add(`${path}[${index}]`, "a StringArray element must be a string without NUL (the separator)");
      } else parts.push(encoder.encode(item), new Uint8Array(1));
    });
    if (issues.list.length !== before) return undefined;
    const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      bytes.set(part, offset);
      offset += part.length;
    }
    return bytes;
  }
  const shape = ARRAY_ELEMENT[type]!;
  const bytes = new Uint8Array(value.length * shape.size);
  const view = new DataView(bytes.buffer);
  value.forEach((item: unknown, index) => {
    const oneof = encodeScalar(shape.element, item, `${path}[${index}]`, issues);
    if (oneof === undefined) return;
    const at = index * shape.size;
    switch (shape.element) {
      case "Int8":
        view.setInt8(at, item as number);
        break;
      case "UInt8":
        view.setUint8(at, item as number);
        break;
      case "Int16":
        view.setInt16(at, item as number, true);
        break;
      case "UInt16":
        view.setUint16(at, item as number, true);
        break;
      case "Int32":
        view.setInt32(at, item as number, true);
        break;
      case "UInt32":
        view.setUint32(at, item as number, true);
        break;
      case "Float":
        view.setFloat32(at, item as number, true);
        break;
      case "Double":
        view.setFloat64(at, item as number, true);
        break;
      default:
        view.setBigUint64(at, oneof.value as bigint, true);
    }
  });
  return issues.list.length === before ? bytes : undefined;
}

function encodePropertySet(set: SparkplugPropertySet, path: string, issues: Issues): WirePropertySet {
  const keys: string[] = [];
  const values: WirePropertyValue[] = [];
  if (typeof set !== "object" || set === null) {
    issues.add(path, "a property set must be an object of keys to { type, value }");
    return { keys, values };
  }
  for (const [key, property] of Object.entries(set)) {
    keys.push(key);
    values.push(encodePropertyValue(property, `${path}.${key}`, issues));
  }
  return { keys, values };
}

function encodePropertyValue(property: SparkplugPropertyValue, path: string, issues: Issues): WirePropertyValue {
  const type = (property as Partial<SparkplugPropertyValue> | null)?.type;
  const number = type === undefined ? undefined : (SPARKPLUG_DATA_TYPES as Record<string, number>)[type];
  if (number === undefined || ARRAY_ELEMENT[type!] !== undefined || !PROPERTY_TYPES.has(type!)) {
    issues.add(`${path}.type`, `a property type must be one of ${[...PROPERTY_TYPES].join(", ")}`);
    return { value: { case: undefined } };
  }
  if (property.value === null || property.value === undefined)
    return { type: number, isNull: true, value: { case: undefined } };
  if (type === "PropertySet") {
    return {
      type: number,
      value: {
        case: "propertysetValue",
        value: encodePropertySet(property.value as SparkplugPropertySet, `${path}.value`, issues),
      },
    };
  }
  if (type === "PropertySetList") {
    if (!Array.isArray(property.value)) {
      issues.add(`${path}.value`, "a PropertySetList value must be an array of property sets");
      return { value: { case: undefined } };
    }
    const list = (property.value as readonly SparkplugPropertySet[]).map((set, index) =>
      encodePropertySet(set, `${path}.value[${index}]`, issues),
    );
    return { type: number, value: { case: "propertysetsValue", value: { propertyset: list } } };
  }
  return { type: number, value: encodeScalar(type!, property.value, `${path}.value`, issues) ?? { case: undefined } };
}

const SCALAR_TYPE_LIST: readonly SparkplugScalarDataType[] = [
  "Int8",
  "Int16",
  "Int32",
  "Int64",
  "UInt8",
  "UInt16",
  "UInt32",
  "UInt64",
  "Float",
  "Double",
  "Boolean",
  "String",
  "DateTime",
  "Text",
];
const SCALAR_TYPES: ReadonlySet<string> = new Set<SparkplugScalarDataType>(SCALAR_TYPE_LIST);
/** A property value is a scalar or a (list of) nested property set(s) (Sparkplug 3.0.0, 6.4.7). */
const PROPERTY_TYPES: ReadonlySet<string> = new Set<SparkplugPropertyDataType>([
  ...SCALAR_TYPE_LIST,
  "PropertySet",
  "PropertySetList",
]);

function encodeUint64(value: unknown, path: string, issues: Issues): bigint | undefined {
  if (!isInteger(value) || BigInt(value) < 0n || BigInt(value) > UINT64_MAX) {
    issues.add(path, "must be an integer from 0 to 2^64-1");
    return undefined;
  }
  return BigInt(value);
}

function encodeMetric(metric: SparkplugMetric, path: string, options: EncodeOptions, issues: Issues): WireMetric {
  const wire: WireMetric = { value: { case: undefined } };
  if (typeof metric !== "object" || metric === null) {
    issues.add(path, "a metric must be an object");
    return wire;
  }
  if (metric.name !== undefined) {
    if (typeof metric.name !== "string") issues.add(`${path}.name`, "must be a string");
    else wire.name = metric.name;
  }
  if (metric.alias !== undefined) wire.alias = encodeUint64(metric.alias, `${path}.alias`, issues);
  if (metric.timestamp !== undefined) wire.timestamp = encodeTimestamp(metric.timestamp, `${path}.timestamp`, issues);
  if (metric.isHistorical !== undefined) wire.isHistorical = metric.isHistorical;
  if (metric.isTransient !== undefined) wire.isTransient = metric.isTransient;
  if (metric.metadata !== undefined) wire.metadata = encodeMetaData(metric.metadata, `${path}.metadata`, issues);
  if (metric.properties !== undefined)
    wire.properties = encodePropertySet(metric.properties, `${path}.properties`, issues);
  const datatype = metric.datatype as SparkplugDataType | undefined;
  const number = datatype === undefined ? undefined : (SPARKPLUG_DATA_TYPES as Record<string, number>)[datatype];
  if (
    datatype !== undefined &&
    (number === undefined || datatype === "PropertySet" || datatype === "PropertySetList")
  ) {
    issues.add(`${path}.datatype`, "must be a Sparkplug metric data type (Int8 ... DateTimeArray, not a property set)");
    return wire;
  }
  if (number !== undefined && !options.omitDatatype) wire.datatype = number;
  if (metric.value === null) {
    wire.isNull = true;
    return wire;
  }
  if (metric.value === undefined) return wire;
  if (datatype === undefined) {
    issues.add(`${path}.datatype`, "is required to encode a value");
    return wire;
  }
  wire.value = encodeMetricValue(
    datatype as SparkplugMetricDataType,
    metric.value,
    `${path}.value`,
    options,
    issues,
  ) ?? { case: undefined };
  return wire;
}

function encodeMetricValue(
  datatype: SparkplugMetricDataType,
  value: SparkplugValue,
  path: string,
  options: EncodeOptions,
  issues: Issues,
): WireOneof | undefined {
  if (SCALAR_TYPES.has(datatype) || datatype === "UUID") return encodeScalar(datatype, value, path, issues);
  switch (datatype) {
    case "Bytes":
    case "File":
      if (!(value instanceof Uint8Array)) {
        issues.add(path, `a ${datatype} value must be a Uint8Array`);
        return undefined;
      }
      return { case: "bytesValue", value };
    case "DataSet":
      return encodeDataSet(value as SparkplugDataSet, path, issues);
    case "Template":
      return encodeTemplate(value as SparkplugTemplate, path, options, issues);
    default: {
      const bytes = encodeArray(datatype, value, path, issues);
      return bytes === undefined ? undefined : { case: "bytesValue", value: bytes };
    }
  }
}

function encodeDataSet(dataSet: SparkplugDataSet, path: string, issues: Issues): WireOneof | undefined {
  if (
    typeof dataSet !== "object" ||
    dataSet === null ||
    !Array.isArray(dataSet.columns) ||
    !Array.isArray(dataSet.types) ||
    !Array.isArray(dataSet.rows)
  ) {
    issues.add(path, "a DataSet value must be { columns, types, rows }");
    return undefined;
  }
  if (dataSet.types.length !== dataSet.columns.length) {
    issues.add(`${path}.types`, `must have one type per column (${dataSet.columns.length})`);
    return undefined;
  }
  const types: number[] = [];
  (dataSet.types as readonly SparkplugScalarDataType[]).forEach((type, index) => {
    if (!SCALAR_TYPES.has(type)) issues.add(`${path}.types[${index}]`, "must be a scalar data type");
    else types.push(SPARKPLUG_DATA_TYPES[type]);
  });
  const rows = dataSet.rows.map((row, rowIndex) => {
    if (!Array.isArray(row) || row.length !== dataSet.columns.length) {
      issues.add(`${path}.rows[${rowIndex}]`, `must have one value per column (${dataSet.columns.length})`);
      return { elements: [] };
    }
    return {
      elements: row.map((element, column) => ({
        value: encodeScalar(dataSet.types[column]!, element, `${path}.rows[${rowIndex}][${column}]`, issues) ?? {
          case: undefined,
        },
      })),
    };
  });
  return {
    case: "datasetValue",
    value: { numOfColumns: BigInt(dataSet.columns.length), columns: [...dataSet.columns], types, rows },
  };
}

function encodeTemplate(
  template: SparkplugTemplate,
  path: string,
  options: EncodeOptions,
  issues: Issues,
): WireOneof | undefined {
  if (typeof template !== "object" || template === null || !Array.isArray(template.metrics)) {
    issues.add(path, "a Template value must be { metrics, ... }");
    return undefined;
  }
  const wire: WireTemplate = {
    metrics: template.metrics.map((metric, index) =>
      encodeMetric(metric, `${path}.metrics[${index}]`, options, issues),
    ),
    parameters: (template.parameters ?? []).map((parameter, index) => {
      const at = `${path}.parameters[${index}]`;
      if (!SCALAR_TYPES.has(parameter.type)) {
        issues.add(`${at}.type`, "must be a scalar data type");
        return { value: { case: undefined } };
      }
      return {
        name: parameter.name,
        type: SPARKPLUG_DATA_TYPES[parameter.type],
        value:
          parameter.value === undefined
            ? { case: undefined }
            : (encodeScalar(parameter.type, parameter.value, `${at}.value`, issues) ?? { case: undefined }),
      };
    }),
  };
  if (template.version !== undefined) wire.version = template.version;
  if (template.templateRef !== undefined) wire.templateRef = template.templateRef;
  if (template.isDefinition !== undefined) wire.isDefinition = template.isDefinition;
  return { case: "templateValue", value: wire };
}

function encodeMetaData(metadata: SparkplugMetaData, path: string, issues: Issues): WireMetaData {
  const wire: WireMetaData = {};
  for (const key of ["isMultiPart", "contentType", "fileName", "fileType", "md5", "description"] as const) {
    if (metadata[key] !== undefined) (wire as Record<string, unknown>)[key] = metadata[key];
  }
  if (metadata.size !== undefined) wire.size = encodeUint64(metadata.size, `${path}.size`, issues);
  if (metadata.seq !== undefined) wire.seq = encodeUint64(metadata.seq, `${path}.seq`, issues);
  return wire;
}

function encodeTimestamp(value: unknown, path: string, issues: Issues): bigint | undefined {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    issues.add(path, "must be a whole number of ms since the Unix epoch, from 0");
    return undefined;
  }
  return BigInt(value);
}

/**
 * Encodes a Sparkplug B payload to its protobuf bytes (Sparkplug 3.0.0, section 6.4).
 *
 * @param payload the payload; every metric with a value needs its `datatype`.
 * @param options `omitDatatype` for DATA and CMD messages.
 * @returns the bytes to publish.
 * @throws KilnValidationError `KILN_VALIDATION` listing every field that breaks a rule (a value
 *   that does not fit its datatype, a seq outside 0–255, a negative timestamp...), by path
 *   (`metrics[3].value`); nothing is encoded then.
 *
 * @example
 * const bytes = encodePayload({
 *   timestamp: Date.now(), seq: 0,
 *   metrics: [{ name: "chamber.pressure", alias: 1, datatype: "Double", value: 1.5e-3 }],
 * });
 */
export function encodePayload(payload: SparkplugPayload, options: EncodeOptions = {}): Uint8Array {
  return encode(payload, options, false);
}

/**
 * {@link encodePayload} through protobuf-es reflection only, the reference the direct writer is
 * checked against. @internal for tests.
 */
export function encodePayloadByReflection(payload: SparkplugPayload, options: EncodeOptions = {}): Uint8Array {
  return encode(payload, options, true);
}

function encode(payload: SparkplugPayload, options: EncodeOptions, reflection: boolean): Uint8Array {
  const issues = new Issues();
  const wire: WirePayload = { metrics: [] };
  if (typeof payload !== "object" || payload === null || !Array.isArray(payload.metrics)) {
    throw new KilnValidationError("Sparkplug B payload", [{ path: "metrics", message: "must be an array of metrics" }]);
  }
  if (payload.timestamp !== undefined) wire.timestamp = encodeTimestamp(payload.timestamp, "timestamp", issues);
  if (payload.seq !== undefined) {
    if (typeof payload.seq !== "number" || !Number.isInteger(payload.seq) || payload.seq < 0 || payload.seq > 255) {
      issues.add("seq", "must be an integer from 0 to 255");
    } else wire.seq = BigInt(payload.seq);
  }
  if (payload.uuid !== undefined) wire.uuid = payload.uuid;
  if (payload.body !== undefined) {
    if (!(payload.body instanceof Uint8Array)) issues.add("body", "must be a Uint8Array");
    else wire.body = payload.body;
  }
  wire.metrics = payload.metrics.map((metric, index) => encodeMetric(metric, `metrics[${index}]`, options, issues));
  if (issues.list.length > 0) throw new KilnValidationError("Sparkplug B payload", issues.list);
  return writePayload(wire, reflection);
}

/**
 * The bytes of a checked payload. Payloads of scalar metrics (the DATA hot path: alias,
 * timestamp, value, quality properties) are written field by field, with no message objects; any
 * other (metadata, DataSet, Template, nested property sets) goes through protobuf-es reflection.
 * Both write the same bytes: fields in number order, as protobuf-es does.
 */
function writePayload(wire: WirePayload, reflection = false): Uint8Array {
  if (reflection || !wire.metrics.every(isScalarMetric))
    return toBinary(PayloadSchema, create(PayloadSchema, wire as never));
  const writer = new BinaryWriter();
  if (wire.timestamp !== undefined) writer.tag(1, WireType.Varint).uint64(wire.timestamp);
  for (const metric of wire.metrics) {
    writer.tag(2, WireType.LengthDelimited).fork();
    writeMetric(writer, metric);
    writer.join();
  }
  if (wire.seq !== undefined) writer.tag(3, WireType.Varint).uint64(wire.seq);
  if (wire.uuid !== undefined) writer.tag(4, WireType.LengthDelimited).string(wire.uuid);
  if (wire.body !== undefined) writer.tag(5, WireType.LengthDelimited).bytes(wire.body);
  return writer.finish();
}

const SCALAR_CASES = new Set<WireOneof["case"]>([
  undefined,
  "intValue",
  "longValue",
  "floatValue",
  "doubleValue",
  "booleanValue",
  "stringValue",
  "bytesValue",
]);

function isScalarMetric(metric: WireMetric): boolean {
  return (
    metric.metadata === undefined &&
    SCALAR_CASES.has(metric.value.case) &&
    (metric.properties === undefined ||
      metric.properties.values.every(
        (value) => SCALAR_CASES.has(value.value.case) && value.value.case !== "bytesValue",
      ))
  );
}

/** The `oneof value` of Metric (fields 10–16) or PropertyValue (3–8): `first` is int_value's number. */
function writeScalar(writer: BinaryWriter, value: WireOneof, first: number): void {
  switch (value.case) {
    case "intValue":
      writer.tag(first, WireType.Varint).uint32(value.value);
      break;
    case "longValue":
      writer.tag(first + 1, WireType.Varint).uint64(value.value);
      break;
    case "floatValue":
      writer.tag(first + 2, WireType.Bit32).float(value.value);
      break;
    case "doubleValue":
      writer.tag(first + 3, WireType.Bit64).double(value.value);
      break;
    case "booleanValue":
      writer.tag(first + 4, WireType.Varint).bool(value.value);
      break;
    case "stringValue":
      writer.tag(first + 5, WireType.LengthDelimited).string(value.value);
      break;
    case "bytesValue":
      writer.tag(first + 6, WireType.LengthDelimited).bytes(value.value);
      break;
    default:
      break;
  }
}

function writeMetric(writer: BinaryWriter, metric: WireMetric): void {
  if (metric.name !== undefined) writer.tag(1, WireType.LengthDelimited).string(metric.name);
  if (metric.alias !== undefined) writer.tag(2, WireType.Varint).uint64(metric.alias);
  if (metric.timestamp !== undefined) writer.tag(3, WireType.Varint).uint64(metric.timestamp);
  if (metric.datatype !== undefined) writer.tag(4, WireType.Varint).uint32(metric.datatype);
  if (metric.isHistorical !== undefined) writer.tag(5, WireType.Varint).bool(metric.isHistorical);
  if (metric.isTransient !== undefined) writer.tag(6, WireType.Varint).bool(metric.isTransient);
  if (metric.isNull !== undefined) writer.tag(7, WireType.Varint).bool(metric.isNull);
  if (metric.properties !== undefined) {
    writer.tag(9, WireType.LengthDelimited).fork();
    for (const key of metric.properties.keys) writer.tag(1, WireType.LengthDelimited).string(key);
    for (const value of metric.properties.values) {
      writer.tag(2, WireType.LengthDelimited).fork();
      if (value.type !== undefined) writer.tag(1, WireType.Varint).uint32(value.type);
      if (value.isNull !== undefined) writer.tag(2, WireType.Varint).bool(value.isNull);
      writeScalar(writer, value.value, 3);
      writer.join();
    }
    writer.join();
  }
  writeScalar(writer, metric.value, 10);
}

// ---- decode ----------------------------------------------------------------------------------

const EXPECTED_CASE: Readonly<Partial<Record<SparkplugDataType, WireOneof["case"]>>> = {
  Int8: "intValue",
  Int16: "intValue",
  Int32: "intValue",
  UInt8: "intValue",
  UInt16: "intValue",
  UInt32: "intValue",
  Int64: "longValue",
  UInt64: "longValue",
  DateTime: "longValue",
  Float: "floatValue",
  Double: "doubleValue",
  Boolean: "booleanValue",
  String: "stringValue",
  Text: "stringValue",
  UUID: "stringValue",
  Bytes: "bytesValue",
  File: "bytesValue",
  DataSet: "datasetValue",
  Template: "templateValue",
  PropertySet: "propertysetValue",
  PropertySetList: "propertysetsValue",
};

const snake = (name: string): string => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

function decodeScalar(
  type: SparkplugDataType,
  oneof: WireOneof,
  path: string,
  issues: Issues,
): SparkplugScalarValue | undefined {
  const expected = EXPECTED_CASE[type];
  if (oneof.case !== expected) {
    issues.add(
      path,
      `a ${type} value is carried in ${snake(expected!)}, found ${oneof.case === undefined ? "no value" : snake(oneof.case)}`,
    );
    return undefined;
  }
  const raw = oneof.value as SparkplugScalarValue;
  const range = INT_RANGES[type];
  if (range !== undefined) {
    const wire = raw as number;
    const bits = INT_BITS[type];
    if (bits === undefined) {
      if (wire > range[1]) {
        issues.add(path, `a ${type} value must be from 0 to ${range[1]}, found ${wire}`);
        return undefined;
      }
      return wire;
    }
    // A signed value arrives sign-extended to 32 bits (the reference implementation) or in its own
    // width's two's complement; anything else does not fit the type and is refused, not truncated.
    if (wire <= range[1]) return wire;
    if (bits < 32 && wire >= 2 ** bits / 2 && wire < 2 ** bits) return wire - 2 ** bits;
    if (wire >= 2 ** 32 + range[0]) return wire - 2 ** 32;
    issues.add(path, `a ${type} value must be from ${range[0]} to ${range[1]}, found ${wire} (as uint32)`);
    return undefined;
  }
  if (type === "Int64") return narrow(BigInt.asIntN(64, raw as bigint));
  if (type === "UInt64") return narrow(raw as bigint);
  if (type === "DateTime") {
    if ((raw as bigint) > BigInt(Number.MAX_SAFE_INTEGER)) {
      issues.add(path, `a DateTime value must be at most 2^53-1 ms since the Unix epoch, found ${String(raw)}`);
      return undefined;
    }
    return Number(raw);
  }
  return raw;
}

function decodeArray(
  type: SparkplugDataType,
  bytes: Uint8Array,
  path: string,
  issues: Issues,
): SparkplugValue | undefined {
  if (type === "StringArray") {
    if (bytes.length === 0) return [];
    if (bytes[bytes.length - 1] !== 0) {
      issues.add(path, "a StringArray must end with NUL");
      return undefined;
    }
    const decoder = new TextDecoder("utf-8", { fatal: true });
    try {
      return decoder.decode(bytes.subarray(0, bytes.length - 1)).split("\0");
    } catch (error) {
      issues.add(path, `a StringArray must be UTF-8: ${(error as Error).message}`);
      return undefined;
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (type === "BooleanArray") {
    const count = bytes.length >= 4 ? view.getUint32(0, true) : -1;
    if (count < 0 || bytes.length !== 4 + Math.ceil(count / 8)) {
      issues.add(path, "a BooleanArray is a 4-byte little-endian count then ceil(count/8) bytes of bits");
      return undefined;
    }
    return Array.from({ length: count }, (_, index) => (bytes[4 + (index >> 3)]! & (0x80 >> (index & 7))) !== 0);
  }
  const shape = ARRAY_ELEMENT[type]!;
  if (bytes.length % shape.size !== 0) {
    issues.add(path, `a ${type} has ${shape.size}-byte elements; ${bytes.length} bytes is not a whole number of them`);
    return undefined;
  }
  const out: (number | bigint)[] = [];
  for (let at = 0; at < bytes.length; at += shape.size) {
    switch (shape.element) {
      case "Int8":
        out.push(view.getInt8(at));
        break;
      case "UInt8":
        out.push(view.getUint8(at));
        break;
      case "Int16":
        out.push(view.getInt16(at, true));
        break;
      case "UInt16":
        out.push(view.getUint16(at, true));
        break;
      case "Int32":
        out.push(view.getInt32(at, true));
        break;
      case "UInt32":
        out.push(view.getUint32(at, true));
        break;
      case "Float":
        out.push(view.getFloat32(at, true));
        break;
      case "Double":
        out.push(view.getFloat64(at, true));
        break;
      case "Int64":
        out.push(narrow(view.getBigInt64(at, true)));
        break;
      case "UInt64":
        out.push(narrow(view.getBigUint64(at, true)));
        break;
      default: {
        const ms = view.getBigUint64(at, true);
        if (ms > BigInt(Number.MAX_SAFE_INTEGER)) {
          issues.add(`${path}[${at / 8}]`, "a DateTime must be at most 2^53-1 ms since the Unix epoch");
          return undefined;
        }
        out.push(Number(ms));
      }
    }
  }
  return out;
}

function decodeDatatype(number: number, path: string, issues: Issues): SparkplugDataType | undefined {
  const type = sparkplugDataTypeOf(number);
  if (type === undefined) issues.add(path, `${number} is not a Sparkplug B data type (1 to 34)`);
  return type;
}

function decodePropertySet(wire: WirePropertySet, path: string, issues: Issues): SparkplugPropertySet {
  if (wire.keys.length !== wire.values.length) {
    issues.add(path, `a property set has ${wire.keys.length} keys and ${wire.values.length} values; they must pair`);
    return {};
  }
  const seen = new Set<string>();
  const entries: [string, SparkplugPropertyValue][] = [];
  wire.keys.forEach((key, index) => {
    const at = `${path}.${key}`;
    if (seen.has(key)) {
      issues.add(at, "a property key appears twice in one set");
      return;
    }
    seen.add(key);
    const value = wire.values[index]!;
    if (!has(value, "type")) {
      issues.add(`${at}.type`, "a property value needs its type");
      return;
    }
    const type = decodeDatatype(value.type!, `${at}.type`, issues);
    if (type === undefined) return;
    if (!PROPERTY_TYPES.has(type)) {
      issues.add(`${at}.type`, `${type} is not a property value type`);
      return;
    }
    const propertyType = type as SparkplugPropertyDataType;
    if (value.isNull === true) {
      entries.push([key, { type: propertyType, value: null }]);
      return;
    }
    if (type === "PropertySet" && value.value.case === "propertysetValue") {
      entries.push([key, { type: propertyType, value: decodePropertySet(value.value.value, `${at}.value`, issues) }]);
    } else if (type === "PropertySetList" && value.value.case === "propertysetsValue") {
      const sets = value.value.value.propertyset.map((set, setIndex) =>
        decodePropertySet(set, `${at}.value[${setIndex}]`, issues),
      );
      entries.push([key, { type: propertyType, value: sets }]);
    } else {
      const scalar = decodeScalar(type, value.value, `${at}.value`, issues);
      if (scalar !== undefined) entries.push([key, { type: propertyType, value: scalar }]);
    }
  });
  return Object.fromEntries(entries);
}

function decodeUint64(value: bigint, path: string, issues: Issues): number | undefined {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    issues.add(path, `must be at most 2^53-1, found ${value}`);
    return undefined;
  }
  return Number(value);
}

function rawValue(oneof: WireOneof): SparkplugValue | undefined {
  switch (oneof.case) {
    case "intValue":
    case "longValue":
    case "floatValue":
    case "doubleValue":
    case "booleanValue":
    case "stringValue":
    case "bytesValue":
      return oneof.value;
    default:
      return undefined;
  }
}

function decodeMetric(wire: WireMetric, path: string, options: DecodeOptions, issues: Issues): SparkplugMetric {
  const metric: { -readonly [K in keyof SparkplugMetric]: SparkplugMetric[K] } = {};
  if (has(wire, "name")) metric.name = wire.name!;
  if (has(wire, "alias")) metric.alias = narrow(wire.alias!);
  if (has(wire, "timestamp")) metric.timestamp = decodeUint64(wire.timestamp!, `${path}.timestamp`, issues);
  if (has(wire, "isHistorical")) metric.isHistorical = wire.isHistorical!;
  if (has(wire, "isTransient")) metric.isTransient = wire.isTransient!;
  if (wire.metadata !== undefined) metric.metadata = decodeMetaData(wire.metadata, `${path}.metadata`, issues);
  if (wire.properties !== undefined)
    metric.properties = decodePropertySet(wire.properties, `${path}.properties`, issues);
  let datatype: SparkplugDataType | undefined;
  if (has(wire, "datatype")) {
    datatype = decodeDatatype(wire.datatype!, `${path}.datatype`, issues);
    if (datatype === "PropertySet" || datatype === "PropertySetList") {
      issues.add(`${path}.datatype`, `${datatype} is a property type, not a metric type`);
      datatype = undefined;
    }
    if (datatype === undefined) return metric;
  } else {
    datatype = options.datatypeOf?.(metric);
  }
  if (datatype !== undefined) metric.datatype = datatype as SparkplugMetricDataType;
  if (wire.isNull === true) {
    if (wire.value.case !== undefined) issues.add(`${path}.value`, "a metric with is_null must carry no value");
    else metric.value = null;
    return metric;
  }
  if (wire.value.case === undefined) return metric;
  if (datatype === undefined) {
    const raw = rawValue(wire.value);
    if (raw !== undefined) metric.value = raw;
    else issues.add(`${path}.datatype`, `a ${snake(wire.value.case)} needs its datatype to be read`);
    return metric;
  }
  const value = decodeMetricValue(datatype as SparkplugMetricDataType, wire.value, `${path}.value`, options, issues);
  if (value !== undefined) metric.value = value;
  return metric;
}

function decodeMetricValue(
  datatype: SparkplugMetricDataType,
  oneof: WireOneof,
  path: string,
  options: DecodeOptions,
  issues: Issues,
): SparkplugValue | undefined {
  if (ARRAY_ELEMENT[datatype] !== undefined || datatype === "BooleanArray" || datatype === "StringArray") {
    if (oneof.case !== "bytesValue") {
      issues.add(path, `a ${datatype} is carried in bytes_value, found ${snake(oneof.case!)}`);
      return undefined;
    }
    return decodeArray(datatype, oneof.value, path, issues);
  }
  if (datatype === "Bytes" || datatype === "File" || datatype === "DataSet" || datatype === "Template") {
    const expected = EXPECTED_CASE[datatype]!;
    if (oneof.case !== expected) {
      issues.add(path, `a ${datatype} is carried in ${snake(expected)}, found ${snake(oneof.case!)}`);
      return undefined;
    }
    if (oneof.case === "bytesValue") return oneof.value;
    if (oneof.case === "datasetValue") return decodeDataSet(oneof.value, path, issues);
    return decodeTemplate(oneof.value as WireTemplate, path, options, issues);
  }
  return decodeScalar(datatype, oneof, path, issues);
}

function decodeDataSet(wire: WireDataSet, path: string, issues: Issues): SparkplugDataSet | undefined {
  const width = wire.columns.length;
  if (wire.types.length !== width || (has(wire, "numOfColumns") && wire.numOfColumns !== BigInt(width))) {
    issues.add(path, `a DataSet's num_of_columns, columns (${width}) and types (${wire.types.length}) must agree`);
    return undefined;
  }
  const types: SparkplugScalarDataType[] = [];
  for (const [index, number] of wire.types.entries()) {
    const type = decodeDatatype(number, `${path}.types[${index}]`, issues);
    if (type === undefined) return undefined;
    if (!SCALAR_TYPES.has(type)) {
      issues.add(`${path}.types[${index}]`, `${type} is not a DataSet column type`);
      return undefined;
    }
    types.push(type as SparkplugScalarDataType);
  }
  const before = issues.list.length;
  const rows = wire.rows.map((row, rowIndex) => {
    if (row.elements.length !== width) {
      issues.add(`${path}.rows[${rowIndex}]`, `a row must have ${width} elements, found ${row.elements.length}`);
      return [];
    }
    return row.elements.map(
      (element, column) =>
        decodeScalar(
          types[column]!,
          element.value,
          `${path}.rows[${rowIndex}][${column}]`,
          issues,
        ) as SparkplugScalarValue,
    );
  });
  return issues.list.length === before ? { columns: wire.columns, types, rows } : undefined;
}

function decodeTemplate(wire: WireTemplate, path: string, options: DecodeOptions, issues: Issues): SparkplugTemplate {
  const parameters = wire.parameters.map((parameter, index): SparkplugTemplateParameter => {
    const at = `${path}.parameters[${index}]`;
    const type = decodeDatatype(parameter.type ?? 0, `${at}.type`, issues);
    if (type !== undefined && !SCALAR_TYPES.has(type)) issues.add(`${at}.type`, `${type} is not a parameter type`);
    const scalarType = (type ?? "String") as SparkplugScalarDataType;
    const value =
      parameter.value.case === undefined ? undefined : decodeScalar(scalarType, parameter.value, `${at}.value`, issues);
    return { name: parameter.name ?? "", type: scalarType, ...(value === undefined ? {} : { value }) };
  });
  return {
    ...(has(wire, "version") ? { version: wire.version! } : {}),
    ...(has(wire, "templateRef") ? { templateRef: wire.templateRef! } : {}),
    ...(has(wire, "isDefinition") ? { isDefinition: wire.isDefinition! } : {}),
    metrics: wire.metrics.map((metric, index) => decodeMetric(metric, `${path}.metrics[${index}]`, options, issues)),
    parameters,
  };
}

function decodeMetaData(wire: WireMetaData, path: string, issues: Issues): SparkplugMetaData {
  const metadata: Record<string, unknown> = {};
  for (const key of ["isMultiPart", "contentType", "fileName", "fileType", "md5", "description"] as const) {
    if (has(wire, key)) metadata[key] = wire[key];
  }
  if (has(wire, "size")) metadata.size = decodeUint64(wire.size!, `${path}.size`, issues);
  if (has(wire, "seq")) metadata.seq = decodeUint64(wire.seq!, `${path}.seq`, issues);
  return metadata as SparkplugMetaData;
}

/**
 * Decodes the protobuf bytes of a Sparkplug B payload (Sparkplug 3.0.0, section 6.4). Values
 * are checked against their datatype: a value carried in the wrong field, an integer outside
 * its type, an array whose length is not whole elements, a property set whose keys and values
 * do not pair or whose key repeats — each is refused, never truncated or merged.
 *
 * @param bytes an MQTT message's payload.
 * @param options `datatypeOf` to type metrics that carry no datatype (DATA and CMD messages).
 * @returns the payload; `metrics` is always an array.
 * @throws KilnValidationError `KILN_VALIDATION` when the bytes are not a protobuf Payload
 *   (path `(root)`, the parser's reason as cause) or break a rule above (each issue by path,
 *   e.g. `metrics[2].value`). Never throws anything else, for any input.
 */
export function decodePayload(bytes: Uint8Array, options: DecodeOptions = {}): SparkplugPayload {
  let wire: WirePayload;
  try {
    wire = fromBinary(PayloadSchema, bytes) as unknown as WirePayload;
  } catch (error) {
    const utf8 = (error as { code?: unknown } | null)?.code === "ERR_ENCODING_INVALID_ENCODED_DATA";
    throw new KilnValidationError(
      "Sparkplug B payload",
      [
        {
          path: "",
          message: utf8
            ? "a string (a metric name, a String value...) is not valid UTF-8: never read with replacement characters"
            : `not a protobuf Sparkplug B Payload (${(error as Error).message})`,
        },
      ],
      { cause: error },
    );
  }
  const issues = new Issues();
  const payload: { -readonly [K in keyof SparkplugPayload]: SparkplugPayload[K] } = { metrics: [] };
  if (has(wire, "timestamp")) payload.timestamp = decodeUint64(wire.timestamp!, "timestamp", issues);
  if (has(wire, "seq")) {
    if (wire.seq! > 255n) issues.add("seq", `must be from 0 to 255, found ${wire.seq}`);
    else payload.seq = Number(wire.seq);
  }
  if (has(wire, "uuid")) payload.uuid = wire.uuid!;
  if (has(wire, "body")) payload.body = wire.body!;
  payload.metrics = wire.metrics.map((metric, index) => decodeMetric(metric, `metrics[${index}]`, options, issues));
  if (issues.list.length > 0) throw new KilnValidationError("Sparkplug B payload", issues.list);
  return payload;
}
