import type { TagDataType } from "@kiln/core";

/**
 * The Sparkplug B data types and their numbers on the wire (Sparkplug 3.0.0, section 6.4.16
 * "Data Types"). `Unknown` (0) is a placeholder that no metric may carry, so it is not listed.
 */
export const SPARKPLUG_DATA_TYPES = {
  Int8: 1,
  Int16: 2,
  Int32: 3,
  Int64: 4,
  UInt8: 5,
  UInt16: 6,
  UInt32: 7,
  UInt64: 8,
  Float: 9,
  Double: 10,
  Boolean: 11,
  String: 12,
  DateTime: 13,
  Text: 14,
  UUID: 15,
  DataSet: 16,
  Bytes: 17,
  File: 18,
  Template: 19,
  PropertySet: 20,
  PropertySetList: 21,
  Int8Array: 22,
  Int16Array: 23,
  Int32Array: 24,
  Int64Array: 25,
  UInt8Array: 26,
  UInt16Array: 27,
  UInt32Array: 28,
  UInt64Array: 29,
  FloatArray: 30,
  DoubleArray: 31,
  BooleanArray: 32,
  StringArray: 33,
  DateTimeArray: 34,
} as const;

/** A Sparkplug B data type by its name in the specification (`"Int32"`, `"Double"`, `"DateTime"`...). */
export type SparkplugDataType = keyof typeof SPARKPLUG_DATA_TYPES;

const BY_NUMBER: ReadonlyMap<number, SparkplugDataType> = new Map(
  Object.entries(SPARKPLUG_DATA_TYPES).map(([name, number]) => [number, name as SparkplugDataType]),
);

/** The data type of a wire number, or undefined for 0 (`Unknown`) and numbers the spec does not define. */
export function sparkplugDataTypeOf(number: number): SparkplugDataType | undefined {
  return BY_NUMBER.get(number);
}

/**
 * The data types a metric value may have (every type but `PropertySet` and `PropertySetList`,
 * which only property values carry).
 */
export type SparkplugMetricDataType = Exclude<SparkplugDataType, "PropertySet" | "PropertySetList">;

/**
 * The data types a property value may have (Sparkplug 3.0.0, 6.4.8 "PropertyValue": the
 * integer, floating point, Boolean, String, DateTime and Text types, PropertySet and
 * PropertySetList).
 */
export type SparkplugPropertyDataType =
  | "Int8"
  | "Int16"
  | "Int32"
  | "Int64"
  | "UInt8"
  | "UInt16"
  | "UInt32"
  | "UInt64"
  | "Float"
  | "Double"
  | "Boolean"
  | "String"
  | "DateTime"
  | "Text"
  | "PropertySet"
  | "PropertySetList";

/**
 * The data types a DataSet column or a Template parameter may have (Sparkplug 3.0.0, 6.4.9
 * "DataSet.DataSetValue" and 6.4.13 "Template.Parameter": the scalar types).
 */
export type SparkplugScalarDataType =
  | "Int8"
  | "Int16"
  | "Int32"
  | "Int64"
  | "UInt8"
  | "UInt16"
  | "UInt32"
  | "UInt64"
  | "Float"
  | "Double"
  | "Boolean"
  | "String"
  | "DateTime"
  | "Text";

const TAG_TO_SPARKPLUG: Readonly<Record<TagDataType, SparkplugMetricDataType>> = {
  bool: "Boolean",
  int16: "Int16",
  uint16: "UInt16",
  int32: "Int32",
  uint32: "UInt32",
  int64: "Int64",
  uint64: "UInt64",
  float32: "Float",
  float64: "Double",
  string: "String",
};

const SPARKPLUG_TO_TAG: Readonly<Partial<Record<SparkplugDataType, TagDataType>>> = {
  Boolean: "bool",
  Int8: "int16",
  UInt8: "uint16",
  Int16: "int16",
  UInt16: "uint16",
  Int32: "int32",
  UInt32: "uint32",
  Int64: "int64",
  UInt64: "uint64",
  DateTime: "int64",
  Float: "float32",
  Double: "float64",
  String: "string",
  Text: "string",
  UUID: "string",
};

/**
 * The Sparkplug data type a Kiln tag of `dataType` is published as: `bool` Boolean, `int16`
 * Int16, `uint16` UInt16, `int32` Int32, `uint32` UInt32, `int64` Int64, `uint64` UInt64,
 * `float32` Float, `float64` Double, `string` String. Every Kiln value fits its Sparkplug type
 * exactly.
 */
export function sparkplugDataTypeOfTag(dataType: TagDataType): SparkplugMetricDataType {
  return TAG_TO_SPARKPLUG[dataType];
}

/**
 * The Kiln tag data type that holds every value of a Sparkplug data type exactly, or undefined
 * when Kiln has none (arrays, Bytes, File, DataSet, Template, property sets). Int8 and UInt8
 * widen to `int16` and `uint16`; DateTime is `int64` (ms since the Unix epoch); Text and UUID
 * are `string`.
 */
export function tagDataTypeOfSparkplug(dataType: SparkplugDataType): TagDataType | undefined {
  return SPARKPLUG_TO_TAG[dataType];
}
