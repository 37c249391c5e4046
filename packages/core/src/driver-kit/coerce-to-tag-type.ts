import { quality, QualityCodes, type Quality } from "../domain/quality";
import {
  FLOAT32_MAX,
  arrayElementsOf,
  formatTagValue,
  type Tag,
  type TagDataType,
  type TagScalarValue,
  type TagValue,
} from "../domain/tags";

/** The result of {@link coerceToTagType}: the exact value in the tag's type, or why there is none. */
export type TagTypeCoercion =
  { readonly ok: true; readonly value: TagValue } | { readonly ok: false; readonly quality: Quality };

const INTEGER_LIMITS: Partial<Record<TagDataType, readonly [bigint, bigint]>> = {
  int16: [-32768n, 32767n],
  uint16: [0n, 65535n],
  int32: [-2147483648n, 2147483647n],
  uint32: [0n, 4294967295n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The one rule for a device value whose type differs from its tag's: convert only when the
 * conversion is exact, otherwise report `bad` with `BadTypeMismatch` (0x80740000) and a reason
 * naming both types. Never a value of another type marked good (Kiln architecture, principle 10).
 *
 * - Numeric tags take a `number` or a `bigint` whose value the tag's type holds exactly:
 *   integer types (`int16`…`uint64`) only integral values within their limits (a Double 2.0 →
 *   2 for `int32`; 1.5 or 3e9 → mismatch); `float32`/`float64` any number (`float32`: a finite
 *   one only up to ±`FLOAT32_MAX`, 3.5e39 → mismatch) and a `bigint` within ±2^53 (an Int64 7 → 7; 2^60 → mismatch, a number cannot hold it exactly).
 *   `int64`/`uint64` values are numbers when safe integers, `bigint` beyond.
 * - `bool` tags take a boolean, or the integers 0 and 1 (a coil or a bit register).
 * - `string` tags take a string only.
 * - An array tag (`arrayLength`, docs/adr/0038-array-tags.md) takes an array or a typed array
 *   of at most `arrayLength` elements, each converted by the rules above, as a new frozen array;
 *   a scalar for an array tag, an array for a scalar tag and an array longer than `arrayLength`
 *   are mismatches whose reason names both shapes (`Double[12] cannot be carried by float64[10]
 *   tag "zones"`).
 * - Anything else (a boolean for a number, a number for a string, NaN, ±Infinity for integers)
 *   is a mismatch. Engineering ranges are not checked here: a value out of range is a value of
 *   the right type (see `checkTagValue`).
 *
 * @param value the value as the protocol library decoded it.
 * @param tag the tag it is for (its `dataType` decides).
 * @param sourceType the device's name of the value's type for the reason (`"Double"`, `"Int64"`,
 *   `"holding register uint32"`). @default the JavaScript type of `value`
 * @returns `{ ok: true, value }`, or `{ ok: false, quality }` with severity `bad`, code
 *   `QualityCodes.BadTypeMismatch` and a reason such as
 *   `Double 1.5 cannot be carried exactly by int32 tag "reactor.steps"`.
 *
 * @example
 * const coerced = coerceToTagType(raw, tag, "Int64");
 * const sample = coerced.ok
 *   ? { tag: tag.name, value: coerced.value, timestamp, quality: GOOD }
 *   : { tag: tag.name, value: null, timestamp, quality: coerced.quality };
 */
export function coerceToTagType(
  value: TagValue | ArrayLike<number | bigint>,
  tag: Pick<Tag, "name" | "dataType" | "arrayLength">,
  sourceType?: string,
): TagTypeCoercion {
  const elements = arrayElementsOf(value);
  if (tag.arrayLength !== undefined || elements !== undefined) return coerceArray(value, elements, tag, sourceType);
  const scalar = value as TagScalarValue;
  const exact = exactValue(scalar, tag.dataType);
  if (exact !== undefined) return { ok: true, value: exact };
  return mismatch(
    `${sourceType ?? typeof scalar} ${formatTagValue(scalar)} cannot be carried exactly by ${tag.dataType} tag "${tag.name}"`,
  );
}

/** Integer limits as numbers, for the allocation-free check of {@link isExactTagValue}. */
const NUMBER_LIMITS: Partial<Record<TagDataType, readonly [number, number]>> = {
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

/**
 * @internal True when {@link coerceToTagType} would return `value` itself: a scalar already of
 * the tag's type. It allocates nothing, so the check of every driver sample can skip the
 * conversion for the values a driver has already typed; anything else (arrays, -0 for an integer
 * tag, a number outside a type's limits, a `bigint`) answers false and goes through
 * `coerceToTagType`.
 */
export function isExactTagValue(value: unknown, tag: Pick<Tag, "dataType" | "arrayLength">): boolean {
  if (tag.arrayLength !== undefined) return false;
  switch (tag.dataType) {
    case "float64":
      return typeof value === "number";
    case "float32":
      return typeof value === "number" && !(Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX);
    case "bool":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    default: {
      // -0 is integral but comes back from the conversion as 0: it takes the slow path.
      if (typeof value !== "number" || !Number.isInteger(value) || Object.is(value, -0)) return false;
      const limits = NUMBER_LIMITS[tag.dataType];
      return limits !== undefined && value >= limits[0] && value <= limits[1];
    }
  }
}

function coerceArray(
  value: unknown,
  elements: readonly unknown[] | undefined,
  tag: Pick<Tag, "name" | "dataType" | "arrayLength">,
  sourceType: string | undefined,
): TagTypeCoercion {
  const wanted = tag.arrayLength === undefined ? `scalar ${tag.dataType}` : `${tag.dataType}[${tag.arrayLength}]`;
  if (elements === undefined) {
    const shown = formatTagValue(value as TagScalarValue);
    return mismatch(`scalar ${sourceType ?? typeof value} ${shown} cannot be carried by ${wanted} tag "${tag.name}"`);
  }
  const got = `${sourceType ?? "array"}[${elements.length}]`;
  if (tag.arrayLength === undefined || elements.length > tag.arrayLength) {
    return mismatch(`${got} cannot be carried by ${wanted} tag "${tag.name}"`);
  }
  const converted: TagScalarValue[] = new Array<TagScalarValue>(elements.length);
  for (let index = 0; index < elements.length; index++) {
    const element = elements[index];
    const kind = typeof element;
    const exact =
      kind === "number" || kind === "bigint" || kind === "boolean" || kind === "string"
        ? exactValue(element as TagScalarValue, tag.dataType)
        : undefined;
    if (exact === undefined) {
      const shown = kind === "object" || kind === "function" ? kind : formatTagValue(element as TagScalarValue);
      return mismatch(`${got} element [${index}] ${shown} cannot be carried exactly by ${wanted} tag "${tag.name}"`);
    }
    converted[index] = exact;
  }
  return { ok: true, value: Object.freeze(converted) };
}

function mismatch(reason: string): TagTypeCoercion {
  return { ok: false, quality: quality("bad", reason, QualityCodes.BadTypeMismatch) };
}

function exactValue(value: TagScalarValue, dataType: TagDataType): TagScalarValue | undefined {
  switch (dataType) {
    case "string":
      return typeof value === "string" ? value : undefined;
    case "bool":
      if (typeof value === "boolean") return value;
      if (value === 0 || value === 0n) return false;
      if (value === 1 || value === 1n) return true;
      return undefined;
    case "float32":
      // A device's float32 carries ±Infinity and NaN, but never a finite value beyond FLT_MAX.
      if (typeof value === "number") return Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX ? undefined : value;
      if (typeof value === "bigint") return value >= -SAFE - 1n && value <= SAFE + 1n ? Number(value) : undefined;
      return undefined;
    case "float64":
      if (typeof value === "number") return value;
      if (typeof value === "bigint") return value >= -SAFE - 1n && value <= SAFE + 1n ? Number(value) : undefined;
      return undefined;
    default: {
      const limits = INTEGER_LIMITS[dataType]!;
      let big: bigint;
      if (typeof value === "bigint") big = value;
      else if (typeof value === "number" && Number.isInteger(value)) big = BigInt(value);
      else return undefined;
      if (big < limits[0] || big > limits[1]) return undefined;
      return big >= -SAFE && big <= SAFE ? Number(big) : big;
    }
  }
}
