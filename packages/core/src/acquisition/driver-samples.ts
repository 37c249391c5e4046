import { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN, type Sample } from "../domain/sample";
import type { Tag } from "../domain/tags";
import { quality, QualityCodes } from "../domain/quality";
import { coerceToTagType, isExactTagValue } from "../driver-kit/coerce-to-tag-type";

/** The samples of one driver reply the core accepts, and how many it refused. */
export interface CheckedSamples {
  /** One sample per asked-for tag that the reply covered (every asked-for tag for a read reply). */
  readonly samples: Sample[];
  /** Samples for tags that were not asked for, dropped. */
  readonly unrequested: number;
}

/**
 * The one place acquisition accepts samples from a driver; the core does not trust the driver
 * (Kiln architecture, principle 10: never show a wrong value as good).
 *
 * - A sample whose value is not of its tag's type is passed through {@link coerceToTagType}:
 *   an exact conversion is kept (a coil's 1 for a `bool` tag is `true`), anything else becomes
 *   `bad` `BadTypeMismatch` with the reason and a `null` value. A `bad` sample is kept as is.
 * - A `good` sample of a `float32`/`float64` tag whose value (or any element of an array value) is
 *   NaN or ±Infinity is not shown good (a device's "not a number" or overflow is no measurement):
 *   NaN becomes `bad` `Bad` "the device sent NaN (not a number)", ±Infinity `bad` `BadOutOfRange`
 *   "the device sent +Infinity" (or -Infinity). The value is kept exactly as sent (a `bad` sample may
 *   carry the value the source gave; stores keep NaN and ±Infinity exactly). An `uncertain` or `bad`
 *   sample is kept as is.
 * - A sample whose source timestamp is not a time a store can keep (NaN, out of
 *   `SAMPLE_TIME_MIN`..`SAMPLE_TIME_MAX`) is stamped `now`; a `good` one turns `uncertain`
 *   with the reason, so it is stored rather than dropped and never shown as good.
 * - A sample for a tag that was not asked for is dropped and counted in `unrequested`.
 * - With `complete` (a read reply), an asked-for tag without a sample gets a `bad`
 *   `BadNoData` sample "driver returned no sample" stamped `now`.
 *
 * @param asked the tags asked for, by name.
 */
export function checkDriverSamples(
  reply: readonly Sample[],
  asked: ReadonlyMap<string, Tag>,
  complete: boolean,
  now: number,
): CheckedSamples {
  const tags = new AskedTags([...asked.values()]);
  const seen = complete ? new ReadCoverage(tags) : undefined;
  const checked = checkReplyPart(reply, 0, reply.length, tags, now, seen);
  if (seen !== undefined) checked.samples.push(...missingFromRead(seen, now));
  return checked;
}

/**
 * The tags a request asked for, in order, with their positions by name. A reply usually comes
 * in the order asked, so {@link AskedTags.positionOf} first compares the name at the reply's own
 * position and looks the name up only when it differs.
 */
export class AskedTags {
  readonly tags: readonly Tag[];
  /** Each asked tag's name, by position: compared without reading the tag's definition. */
  readonly names: readonly string[];
  /**
   * 1 at each position whose tag is a scalar `float64`: a number sample of it needs no conversion,
   * and is kept as it is when finite or not `good`, without reading the tag's definition (a cache
   * miss per sample in a large catalog; issue 16).
   */
  readonly scalarFloat64: Uint8Array;
  readonly #positions: ReadonlyMap<string, number>;

  constructor(tags: readonly Tag[]) {
    this.tags = tags;
    this.names = tags.map((tag) => tag.name);
    this.scalarFloat64 = Uint8Array.from(tags, (tag) =>
      tag.dataType === "float64" && tag.arrayLength === undefined ? 1 : 0,
    );
    this.#positions = new Map(tags.map((tag, position) => [tag.name, position]));
  }

  /** Number of tags asked for. */
  get size(): number {
    return this.tags.length;
  }

  /** The position of the tag named `name`, or undefined when it was not asked for; `hint` is tried first. */
  positionOf(name: string, hint: number): number | undefined {
    return this.names[hint] === name ? hint : this.#positions.get(name);
  }
}

/** Which asked-for tags a read reply has covered so far, across the slices of the reply. */
export class ReadCoverage {
  readonly asked: AskedTags;
  readonly #covered: Uint8Array;
  #count = 0;

  constructor(asked: AskedTags) {
    this.asked = asked;
    this.#covered = new Uint8Array(asked.size);
  }

  /** Number of asked-for tags covered. */
  get size(): number {
    return this.#count;
  }

  /** Marks `position` covered; false when it was already (a duplicate in the reply). */
  cover(position: number): boolean {
    if (this.#covered[position] === 1) return false;
    this.#covered[position] = 1;
    this.#count++;
    return true;
  }

  /** Whether `position` is covered. */
  covered(position: number): boolean {
    return this.#covered[position] === 1;
  }
}

/**
 * {@link checkDriverSamples} for `reply[from..to)`, without the missing-tag step, so a large
 * reply can be checked a slice at a time without copying it. With `seen` (a read reply), a tag
 * already covered is a duplicate and counted as unrequested, and each accepted tag is covered.
 */
export function checkReplyPart(
  reply: readonly Sample[],
  from: number,
  to: number,
  asked: AskedTags,
  now: number,
  seen?: ReadCoverage,
): { readonly samples: Sample[]; readonly unrequested: number } {
  const samples: Sample[] = [];
  let unrequested = 0;
  for (let index = from; index < to; index++) {
    const sample = reply[index]!;
    const position = asked.positionOf(sample.tag, index);
    if (position === undefined || (seen !== undefined && !seen.cover(position))) {
      unrequested++;
      continue;
    }
    const kept = stamped(sample, now);
    const value = kept.value;
    // The common case, as checked() decides it: a float64 number, finite or not shown good.
    if (
      asked.scalarFloat64[position] === 1 &&
      typeof value === "number" &&
      (Number.isFinite(value) || kept.quality.severity !== "good")
    ) {
      samples.push(kept);
      continue;
    }
    samples.push(checked(kept, asked.tags[position]!));
  }
  return { samples, unrequested };
}

/** A `bad` `BadNoData` sample "driver returned no sample", stamped `now`, per asked-for tag `seen` did not cover. */
export function missingFromRead(seen: ReadCoverage, now: number): Sample[] {
  const { asked } = seen;
  if (seen.size >= asked.size) return [];
  const missing = quality("bad", "driver returned no sample", QualityCodes.BadNoData);
  const samples: Sample[] = [];
  for (let position = 0; position < asked.size; position++) {
    if (!seen.covered(position))
      samples.push({ tag: asked.tags[position]!.name, value: null, timestamp: now, quality: missing });
  }
  return samples;
}

function checked(sample: Sample, tag: Tag): Sample {
  if (sample.quality.severity === "bad") return sample;
  if (sample.value === null || sample.value === undefined) {
    return {
      tag: sample.tag,
      value: null,
      timestamp: sample.timestamp,
      quality: quality(
        "bad",
        `driver returned no value with ${sample.quality.severity} quality for ${tag.dataType} tag "${tag.name}"`,
        QualityCodes.BadTypeMismatch,
      ),
    };
  }
  // The common case, a value the driver already typed: no conversion, no allocation.
  if (isExactTagValue(sample.value, tag)) return nonFinite(sample, tag);
  const coerced = coerceToTagType(sample.value, tag);
  if (!coerced.ok) return { tag: sample.tag, value: null, timestamp: sample.timestamp, quality: coerced.quality };
  return nonFinite(coerced.value === sample.value ? sample : { ...sample, value: coerced.value }, tag);
}

/**
 * `sample` (typed for `tag`), `bad` when it is a `good` float sample whose value or any element of it is NaN
 * or ±Infinity (see {@link checkDriverSamples}); the value is kept as sent.
 */
function nonFinite(sample: Sample, tag: Tag): Sample {
  if (sample.quality.severity !== "good" || (tag.dataType !== "float32" && tag.dataType !== "float64")) return sample;
  const { value } = sample;
  let found: number | undefined;
  if (typeof value === "number") {
    if (Number.isFinite(value)) return sample;
    found = value;
  } else if (Array.isArray(value)) {
    for (const element of value as readonly unknown[]) {
      if (typeof element === "number" && !Number.isFinite(element)) {
        // NaN is named first: it says the most (a sensor fault) and is never a range.
        if (Number.isNaN(element)) {
          found = element;
          break;
        }
        found ??= element;
      }
    }
    if (found === undefined) return sample;
  } else return sample;
  const where = typeof value === "number" ? "" : " in an element of the array";
  const reason = Number.isNaN(found)
    ? quality("bad", `the device sent NaN (not a number)${where}`, QualityCodes.Bad)
    : quality("bad", `the device sent ${found > 0 ? "+" : "-"}Infinity${where}`, QualityCodes.BadOutOfRange);
  return { ...sample, quality: reason };
}

function stamped(sample: Sample, now: number): Sample {
  const { timestamp } = sample;
  if (timestamp >= SAMPLE_TIME_MIN && timestamp <= SAMPLE_TIME_MAX) return sample;
  const reason = `driver returned source timestamp ${String(timestamp)}; stamped on receipt`;
  return {
    ...sample,
    timestamp: now,
    quality: sample.quality.severity === "good" ? quality("uncertain", reason, QualityCodes.Uncertain) : sample.quality,
  };
}
