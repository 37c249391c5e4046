import type { ValidationIssue } from "./errors";
import { severityOfStatusCode, type Quality } from "./quality";
import { sameTagValue, TAG_ARRAY_LENGTH_MAX, type TagValue } from "./tags";

/**
 * One observation of one tag: its value, the source timestamp (milliseconds since the Unix
 * epoch, from the PLC where it gives one) and its quality. Samples are keyed by
 * (tag, timestamp): storing the same sample twice is harmless.
 */
export interface Sample {
  /** The tag name. */
  readonly tag: string;
  /** The value; `null` when the source could not give one (quality is then bad). */
  readonly value: TagValue | null;
  /** Source timestamp, ms since the Unix epoch. */
  readonly timestamp: number;
  /** How far the value can be trusted. */
  readonly quality: Quality;
}

/**
 * The earliest sample timestamp every store accepts: 1900-01-01T00:00:00.000Z, in ms since the
 * Unix epoch. See {@link checkSample} and docs/adr/0012-storable-values.md.
 */
export const SAMPLE_TIME_MIN = -2_208_988_800_000;

/**
 * The latest sample timestamp every store accepts: 2099-12-31T23:59:59.999Z, in ms since the
 * Unix epoch. Within [{@link SAMPLE_TIME_MIN}, SAMPLE_TIME_MAX] a timestamp in whole
 * microseconds is an exact float64 (under 2^53) and PostgreSQL's float8 time arithmetic is
 * exact, so every store keeps it to the microsecond.
 */
export const SAMPLE_TIME_MAX = 4_102_444_799_999;

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const SEVERITIES: ReadonlySet<string> = new Set(["good", "uncertain", "bad"]);

/**
 * Checks one sample against the rules every `SampleSink` applies, so a store refuses exactly
 * what the core would never produce, and accepts every value the core does: any string (NUL,
 * U+FFFF and lone surrogates included), any number (NaN, ±Infinity and -0 included), a boolean,
 * a bigint from -2^63 to 2^64-1 (int64 and uint64), or null; a timestamp from
 * {@link SAMPLE_TIME_MIN} to {@link SAMPLE_TIME_MAX}; a quality with a known severity, a 32-bit
 * OPC UA status code whose severity bits (its top two) give that same severity (one rule for a
 * sample's severity on every store: MemoryStore reads `severity`, SQL stores derive it from the
 * code), and an optional string reason.
 *
 * @param sample the sample to check (anything: it comes from outside the type system).
 * @param path the prefix of every issue path, e.g. `[3]` for the fourth sample of a batch.
 * @returns the broken rules, each naming its field (`[3].timestamp`); empty when the sample is valid.
 */
export function checkSample(sample: unknown, path = ""): ValidationIssue[] {
  return sampleIssues(sample, path) ?? [];
}

/**
 * @internal {@link checkSample}'s rules, returning undefined rather than a new empty array for a
 * valid sample: a store's write path checks every sample and most batches have no issue.
 */
export function sampleIssues(sample: unknown, path = ""): ValidationIssue[] | undefined {
  if (typeof sample !== "object" || sample === null) return [{ path, message: "must be a sample object" }];
  // Collects lazily and makes no closure per call: stores run this on every sample they ingest.
  let issues: ValidationIssue[] | undefined;
  const { tag, timestamp, value, quality } = sample as Partial<Record<keyof Sample, unknown>>;
  if (typeof tag !== "string" || tag === "") issues = addIssue(issues, path, "tag", "must be a non-empty string");
  if (typeof timestamp !== "number" || !Number.isFinite(timestamp)) {
    issues = addIssue(issues, path, "timestamp", "must be a finite number of ms since the Unix epoch");
  } else if (timestamp < SAMPLE_TIME_MIN || timestamp > SAMPLE_TIME_MAX) {
    issues = addIssue(
      issues,
      path,
      "timestamp",
      "must be from 1900-01-01T00:00:00.000Z to 2099-12-31T23:59:59.999Z (SAMPLE_TIME_MIN..SAMPLE_TIME_MAX)",
    );
  }
  if (Array.isArray(value)) {
    issues = arrayValueIssues(issues, path, value as readonly unknown[]);
  } else {
    const problem = scalarValueProblem(value);
    if (problem !== undefined) issues = addIssue(issues, path, "value", problem);
  }
  const checked = quality as Partial<Quality> | null | undefined;
  if (typeof checked !== "object" || checked === null || !SEVERITIES.has(checked.severity as string)) {
    issues = addIssue(issues, path, "quality.severity", "must be good, uncertain or bad");
  } else if (!Number.isInteger(checked.code) || (checked.code as number) < 0 || (checked.code as number) > 0xffffffff) {
    issues = addIssue(issues, path, "quality.code", "must be a 32-bit unsigned status code");
  } else if (severityOfStatusCode(checked.code as number) !== checked.severity) {
    issues = addIssue(
      issues,
      path,
      "quality.code",
      `its severity bits (0x00 good, 0x40 uncertain, 0x80 bad in the top two) must agree with severity ${String(checked.severity)}`,
    );
  } else if (checked.reason !== undefined && typeof checked.reason !== "string") {
    issues = addIssue(issues, path, "quality.reason", "must be a string when present");
  }
  return issues;
}

/** Why `value` is not a storable scalar (or null), or undefined when it is. */
function scalarValueProblem(value: unknown): string | undefined {
  const type = typeof value;
  if (value !== null && type !== "number" && type !== "boolean" && type !== "string" && type !== "bigint") {
    return "must be a number, boolean, string, bigint, an array of them, or null";
  }
  if (type === "bigint" && ((value as bigint) < INT64_MIN || (value as bigint) > UINT64_MAX)) {
    return "a bigint value must be from -2^63 (int64) to 2^64-1 (uint64)";
  }
  return undefined;
}

/** `issues` with those of an array value (docs/adr/0038-array-tags.md): at most TAG_ARRAY_LENGTH_MAX scalars, none null. */
function arrayValueIssues(
  issues: ValidationIssue[] | undefined,
  path: string,
  value: readonly unknown[],
): ValidationIssue[] | undefined {
  if (value.length > TAG_ARRAY_LENGTH_MAX) {
    return addIssue(issues, path, "value", `an array value must have at most ${TAG_ARRAY_LENGTH_MAX} elements`);
  }
  for (let index = 0; index < value.length; index++) {
    const element = value[index];
    const problem = element === null ? "must not be null" : scalarValueProblem(element);
    if (problem !== undefined) return addIssue(issues, path, `value[${index}]`, problem);
  }
  return issues;
}

/** `issues` (a new array when undefined) with the issue of `field` under `path` appended. */
function addIssue(
  issues: ValidationIssue[] | undefined,
  path: string,
  field: string,
  message: string,
): ValidationIssue[] {
  const found = issues ?? [];
  found.push({ path: path === "" ? field : `${path}.${field}`, message });
  return found;
}

/**
 * Whether two samples with the same (tag, timestamp) carry the same payload, so that storing the
 * second is a harmless repeat (a retry, a replay) rather than a conflict a store must report
 * (see `SampleWriteResult.conflicts`). The values are compared with `Object.is` (arrays element
 * by element, {@link sameTagValue}), exactly as a store holds them: `0` and `-0` differ, `NaN` equals `NaN`, a number never equals a bigint,
 * strings compare code unit by code unit (NUL and lone surrogates included). The qualities are
 * compared by status code (which fixes the severity, see {@link checkSample}) and reason, an
 * absent reason differing from an empty one. Tag and timestamp are not compared.
 */
export function sameSamplePayload(a: Sample, b: Sample): boolean {
  return sameTagValue(a.value, b.value) && a.quality.code === b.quality.code && a.quality.reason === b.quality.reason;
}
