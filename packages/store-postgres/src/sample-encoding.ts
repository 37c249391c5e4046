import { KilnValidationError, type ValidationIssue } from "@kiln/core";
import { checkSample, type Sample } from "@kiln/core/driver-kit";
import { arrayLiteral, type SqlArrayElement } from "./sql-array";
import { escapeText } from "./text-escape";
import { encodeArrayValue } from "./array-value";

/** Columns of `samples` written by ingest, in the order of the COPY stream and unnest arrays. */
export const SAMPLE_COLUMNS = [
  "tag_id",
  "quality",
  "time",
  "value_float",
  "value_int",
  "value_bool",
  "value_text",
  "quality_reason",
] as const;

const INT64_MAX = 2n ** 63n - 1n;

/**
 * Checks every sample of a batch with `checkSample` from `@kiln/core` (the rules every store
 * applies).
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad field as `[index].field`;
 * nothing is written when it throws.
 */
export function checkSamples(samples: readonly Sample[]): void {
  let issues: ValidationIssue[] | undefined;
  for (let index = 0; index < samples.length; index++) {
    const sample = samples[index];
    // The path is only built for a sample with issues: most batches have none.
    if (checkSample(sample).length > 0) (issues ??= []).push(...checkSample(sample, `[${index}]`));
  }
  if (issues) throw new KilnValidationError("sample batch", issues);
}

/** A later sample of a (tag, timestamp) that occurs earlier in the same batch. */
export interface RepeatedSample {
  /** The sample, as it was in the batch. */
  readonly sample: Sample;
  /** Its index in the batch as given. */
  readonly position: number;
  /** The index, among the kept samples of {@link PreparedSamples}, of the first sample of its (tag, timestamp). */
  readonly first: number;
}

/** A checked batch with in-batch duplicates set apart, ready to encode. */
export interface PreparedSamples {
  /** Number of distinct (tag, timestamp) samples. */
  readonly length: number;
  /** Tag id of each kept sample. */
  readonly tagIds: Int32Array;
  /** Timestamp of each kept sample in whole microseconds since the Unix epoch. */
  readonly micros: Float64Array;
  /** The kept samples, first occurrence of each (tag, timestamp). */
  readonly samples: readonly Sample[];
  /** Index in the batch as given of each kept sample. */
  readonly positions: Int32Array;
  /** The samples that repeat the (tag, timestamp) of a kept one, in batch order: not written, but compared. */
  readonly repeats: readonly RepeatedSample[];
  /** Whether a kept sample holds a uint64 above the int64 range (`value_uint`, not in the COPY columns). */
  readonly unsigned: boolean;
  /** Whether a kept sample holds an array (`value_array`, not in the COPY columns; ADR 0038). */
  readonly arrays: boolean;
}

/**
 * Sets apart duplicate (tag, timestamp) pairs of a checked batch, keeping the first occurrence
 * (as `ON CONFLICT DO NOTHING` keeps the row already stored) and listing the later ones as
 * {@link PreparedSamples.repeats}, and resolves tag ids.
 * Timestamps are rounded to whole microseconds, PostgreSQL's resolution, here and only here, so
 * the COPY and the unnest paths store exactly the same key.
 */
export function prepareSamples(
  samples: readonly Sample[],
  tagIds: ReadonlyMap<string, number> | Int32Array,
): PreparedSamples {
  // By position (`TagRegistry.idsOf`), or by name.
  const byPosition = tagIds instanceof Int32Array ? tagIds : undefined;
  const byName = byPosition === undefined ? (tagIds as ReadonlyMap<string, number>) : undefined;
  const ids = new Int32Array(samples.length);
  const micros = new Float64Array(samples.length);
  const positions = new Int32Array(samples.length);
  const kept: Sample[] = [];
  let repeated: { position: number; id: number; time: number }[] | undefined;
  let unsigned = false;
  let arrays = false;
  // Keyed by timestamp first: a batch usually holds a few scans of many tags, so this makes a
  // few sets of tag ids rather than one set per tag. A lone tag id is stored unboxed.
  const seen = new Map<number, number | Set<number>>();
  // The set of the previous sample's timestamp: a scan's samples share one, so most samples find
  // their set without a lookup keyed by a float.
  let lastTime = Number.NaN;
  let lastSet: Set<number> | undefined;
  for (let position = 0; position < samples.length; position++) {
    const sample = samples[position]!;
    const id = byPosition !== undefined ? byPosition[position] : byName!.get(sample.tag);
    if (id === undefined) throw new Error(`tag "${sample.tag}" has no id: register it before preparing`);
    const time = Math.round(sample.timestamp * 1000);
    const entry = time === lastTime && lastSet !== undefined ? lastSet : seen.get(time);
    lastTime = time;
    lastSet = undefined;
    if (entry === undefined) seen.set(time, id);
    else if (typeof entry === "number") {
      if (entry === id) {
        (repeated ??= []).push({ position, id, time });
        continue;
      }
      seen.set(time, (lastSet = new Set([entry, id])));
    } else {
      lastSet = entry;
      if (entry.has(id)) {
        (repeated ??= []).push({ position, id, time });
        continue;
      }
      entry.add(id);
    }
    ids[kept.length] = id;
    micros[kept.length] = time;
    positions[kept.length] = position;
    kept.push(sample);
    if (typeof sample.value === "bigint" && sample.value > INT64_MAX) unsigned = true;
    else if (Array.isArray(sample.value)) arrays = true;
  }
  const length = kept.length;
  return {
    length,
    tagIds: ids.subarray(0, length),
    micros: micros.subarray(0, length),
    samples: kept,
    positions: positions.subarray(0, length),
    repeats: repeated ? resolveRepeats(samples, repeated, ids, micros, length) : [],
    unsigned,
    arrays,
  };
}

/** Finds the kept sample each repeat repeats; only runs for a batch that has repeats. */
function resolveRepeats(
  samples: readonly Sample[],
  repeated: readonly { position: number; id: number; time: number }[],
  ids: Int32Array,
  micros: Float64Array,
  length: number,
): RepeatedSample[] {
  const firstOf = new Map<number, Map<number, number>>();
  for (let index = 0; index < length; index++) {
    let byId = firstOf.get(micros[index]!);
    if (byId === undefined) firstOf.set(micros[index]!, (byId = new Map()));
    byId.set(ids[index]!, index);
  }
  return repeated.map(({ position, id, time }) => ({
    sample: samples[position]!,
    position,
    first: firstOf.get(time)!.get(id)!,
  }));
}

const COPY_HEADER = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
/** 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in microseconds since the Unix epoch. */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000;
const TWO_TO_32 = 4_294_967_296;
/** UTF-8 bytes of one UTF-16 code unit at most once escaped: 3, or 5 for an escaped one (U+0010 and four hex digits). */
const ESCAPED_BYTES_PER_UNIT = 5;
/** Field count (2), tag_id and quality (8 each), time (12), five length words of the nullable columns. */
const FIXED_ROW_BYTES = 2 + 8 + 8 + 12 + 5 * 4;

/**
 * Encodes a prepared batch as a PostgreSQL binary COPY stream (header, one tuple per sample in
 * {@link SAMPLE_COLUMNS} order, trailer). Binary avoids the server parsing text timestamps and
 * floats, which is most of the cost of a text COPY. Text is escaped with `escapeText` (NUL, lone
 * surrogates). A batch with a uint64 above int64 does not fit these columns: see
 * {@link PreparedSamples.unsigned}.
 */
export function encodeBinaryCopy(batch: PreparedSamples): Uint8Array {
  let size = COPY_HEADER.length + 2;
  for (const sample of batch.samples) {
    size += FIXED_ROW_BYTES + payloadBound(sample.value);
    if (sample.quality.reason !== undefined) size += sample.quality.reason.length * ESCAPED_BYTES_PER_UNIT;
  }
  const buffer = Buffer.allocUnsafe(size);
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  buffer.set(COPY_HEADER, 0);
  let offset = COPY_HEADER.length;
  for (let index = 0; index < batch.length; index++) {
    const sample = batch.samples[index]!;
    view.setInt16(offset, 8);
    view.setInt32(offset + 2, 4);
    view.setInt32(offset + 6, batch.tagIds[index]!);
    view.setInt32(offset + 10, 4);
    view.setInt32(offset + 14, sample.quality.code | 0);
    const since2000 = batch.micros[index]! - POSTGRES_EPOCH_MICROS;
    const high = Math.floor(since2000 / TWO_TO_32);
    view.setInt32(offset + 18, 8);
    view.setInt32(offset + 22, high);
    view.setUint32(offset + 26, since2000 - high * TWO_TO_32);
    offset += 30;
    const value = sample.value;
    // value_float, value_int, value_bool, value_text: exactly one is set, or none for null.
    if (typeof value === "number") {
      view.setInt32(offset, 8);
      view.setFloat64(offset + 4, value);
      view.setInt32(offset + 12, -1);
      view.setInt32(offset + 16, -1);
      view.setInt32(offset + 20, -1);
      offset += 24;
    } else if (typeof value === "bigint") {
      view.setInt32(offset, -1);
      view.setInt32(offset + 4, 8);
      view.setBigInt64(offset + 8, value);
      view.setInt32(offset + 16, -1);
      view.setInt32(offset + 20, -1);
      offset += 24;
    } else if (typeof value === "boolean") {
      view.setInt32(offset, -1);
      view.setInt32(offset + 4, -1);
      view.setInt32(offset + 8, 1);
      buffer[offset + 12] = value ? 1 : 0;
      view.setInt32(offset + 13, -1);
      offset += 17;
    } else if (typeof value === "string") {
      view.setInt32(offset, -1);
      view.setInt32(offset + 4, -1);
      view.setInt32(offset + 8, -1);
      const length = buffer.write(escapeText(value), offset + 16, "utf8");
      view.setInt32(offset + 12, length);
      offset += 16 + length;
    } else {
      view.setInt32(offset, -1);
      view.setInt32(offset + 4, -1);
      view.setInt32(offset + 8, -1);
      view.setInt32(offset + 12, -1);
      offset += 16;
    }
    const reason = sample.quality.reason;
    if (reason === undefined) {
      view.setInt32(offset, -1);
      offset += 4;
    } else {
      const length = buffer.write(escapeText(reason), offset + 4, "utf8");
      view.setInt32(offset, length);
      offset += 4 + length;
    }
  }
  view.setInt16(offset, -1);
  return buffer.subarray(0, offset + 2);
}

function payloadBound(value: Sample["value"]): number {
  switch (typeof value) {
    case "number":
    case "bigint":
      return 8;
    case "boolean":
      return 1;
    case "string":
      return value.length * ESCAPED_BYTES_PER_UNIT;
    default:
      return 0;
  }
}

/**
 * The twelve array literals of the `unnest` insert path, one element per row: the kept samples,
 * then the repeats (with the tag id and time of the sample they repeat). In
 * {@link SAMPLE_COLUMNS} order, then `value_uint`, then `kept` (true for a kept sample, false
 * for a repeat, which is compared but not inserted), then `position` (the index in the batch as
 * given), then `value_array` (JSON text, {@link encodeArrayValue}). Time is whole microseconds since the Unix epoch (an exact float8), converted in SQL.
 */
export function unnestParameters(batch: PreparedSamples): string[] {
  const rows = batch.length + batch.repeats.length;
  const tagIds = new Array<number>(rows);
  const micros = new Array<number>(rows);
  const quality = new Array<number>(rows);
  const floats = new Array<SqlArrayElement>(rows);
  const integers = new Array<SqlArrayElement>(rows);
  const unsigned = new Array<SqlArrayElement>(rows);
  const booleans = new Array<SqlArrayElement>(rows);
  const texts = new Array<SqlArrayElement>(rows);
  const reasons = new Array<SqlArrayElement>(rows);
  const kept = new Array<boolean>(rows);
  const positions = new Array<number>(rows);
  const arrays = new Array<SqlArrayElement>(rows);
  for (let row = 0; row < rows; row++) {
    const repeat = row < batch.length ? undefined : batch.repeats[row - batch.length]!;
    const index = repeat ? repeat.first : row;
    const sample = repeat ? repeat.sample : batch.samples[row]!;
    const value = sample.value;
    tagIds[row] = batch.tagIds[index]!;
    micros[row] = batch.micros[index]!;
    quality[row] = sample.quality.code | 0;
    floats[row] = typeof value === "number" ? value : null;
    const big = typeof value === "bigint";
    integers[row] = big && value <= INT64_MAX ? value : null;
    unsigned[row] = big && value > INT64_MAX ? value : null;
    booleans[row] = typeof value === "boolean" ? value : null;
    texts[row] = typeof value === "string" ? value : null;
    reasons[row] = sample.quality.reason ?? null;
    kept[row] = repeat === undefined;
    positions[row] = repeat ? repeat.position : batch.positions[row]!;
    arrays[row] = Array.isArray(value) ? encodeArrayValue(value) : null;
  }
  return [
    arrayLiteral(tagIds),
    arrayLiteral(quality),
    arrayLiteral(micros),
    arrayLiteral(floats),
    arrayLiteral(integers),
    arrayLiteral(booleans),
    arrayLiteral(texts),
    arrayLiteral(reasons),
    arrayLiteral(unsigned),
    arrayLiteral(kept),
    arrayLiteral(positions),
    arrayLiteral(arrays),
  ];
}
