import type { TagDataType } from "@kiln/core";
import type { TagArrayValue, TagScalarValue } from "@kiln/core/driver-kit";
import { escapeText, unescapeText } from "./text-escape";

const SPECIAL_NUMBERS: ReadonlyMap<string, number> = new Map([
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["-Infinity", Number.NEGATIVE_INFINITY],
  ["-0", -0],
]);
const DECIMAL = /^-?\d+$/;

/**
 * The JSON text of an array value for the `value_array jsonb` column
 * (docs/adr/0038-array-tags.md): 64-bit integers given as `bigint` as decimal strings (exact
 * beyond 2^53), non-finite numbers as `"NaN"`, `"Infinity"`, `"-Infinity"` and -0 as `"-0"`
 * (JSON has none of them), strings escaped as stored text (`escapeText`: jsonb cannot hold
 * U+0000 or lone surrogates), everything else as JSON numbers and booleans.
 */
export function encodeArrayValue(value: TagArrayValue): string {
  const elements = new Array<unknown>(value.length);
  for (let index = 0; index < value.length; index++) {
    const element = value[index]!;
    if (typeof element === "bigint") elements[index] = element.toString();
    else if (typeof element === "number") {
      elements[index] =
        !Number.isFinite(element) || Object.is(element, -0) ? String(Object.is(element, -0) ? "-0" : element) : element;
    } else if (typeof element === "string") elements[index] = escapeText(element);
    else elements[index] = element;
  }
  return JSON.stringify(elements);
}

/**
 * The array value {@link encodeArrayValue} stored, read back by the tag's data type: for a
 * numeric tag a JSON number is a number, a decimal string a `bigint` and `"NaN"`, `"Infinity"`,
 * `"-Infinity"`, `"-0"` those numbers; for a string tag (and a tag not in the catalog, whose type
 * the store does not know) strings are strings. A frozen array.
 */
export function decodeArrayValue(json: unknown, dataType: TagDataType | undefined): TagArrayValue {
  const parsed = (typeof json === "string" ? JSON.parse(json) : json) as unknown[];
  const numeric = dataType !== undefined && dataType !== "string" && dataType !== "bool";
  const elements = new Array<TagScalarValue>(parsed.length);
  for (let index = 0; index < parsed.length; index++) {
    const element = parsed[index];
    if (typeof element === "string") {
      const special = numeric ? SPECIAL_NUMBERS.get(element) : undefined;
      elements[index] =
        special !== undefined ? special : numeric && DECIMAL.test(element) ? BigInt(element) : unescapeText(element);
    } else elements[index] = element as TagScalarValue;
  }
  return Object.freeze(elements);
}
