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
  const seen = complete ? new Set<string>() : undefined;
  const checked = checkReplyPart(reply, asked, now, seen);
  if (seen !== undefined) checked.samples.push(...missingFromRead(asked, seen, now));
  return checked;
}

/**
 * {@link checkDriverSamples} for one part of a reply, without the missing-tag step, so a large
 * reply can be checked a slice at a time. With `seen` (a read reply), a tag already in `seen` is
 * a duplicate and counted as unrequested, and each accepted tag is added to it.
 */
export function checkReplyPart(
  reply: readonly Sample[],
  asked: ReadonlyMap<string, Tag>,
  now: number,
  seen?: Set<string>,
): { readonly samples: Sample[]; readonly unrequested: number } {
  const samples: Sample[] = [];
  let unrequested = 0;
  for (const sample of reply) {
    const tag = asked.get(sample.tag);
    if (tag === undefined || seen?.has(sample.tag)) {
      unrequested++;
      continue;
    }
    seen?.add(sample.tag);
    samples.push(checked(stamped(sample, now), tag));
  }
  return { samples, unrequested };
}

/** A `bad` `BadNoData` sample "driver returned no sample", stamped `now`, per asked-for tag not in `seen`. */
export function missingFromRead(asked: ReadonlyMap<string, Tag>, seen: ReadonlySet<string>, now: number): Sample[] {
  if (seen.size >= asked.size) return [];
  const missing = quality("bad", "driver returned no sample", QualityCodes.BadNoData);
  const samples: Sample[] = [];
  for (const name of asked.keys()) {
    if (!seen.has(name)) samples.push({ tag: name, value: null, timestamp: now, quality: missing });
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
  if (isExactTagValue(sample.value, tag)) return sample;
  const coerced = coerceToTagType(sample.value, tag);
  if (!coerced.ok) return { tag: sample.tag, value: null, timestamp: sample.timestamp, quality: coerced.quality };
  return coerced.value === sample.value ? sample : { ...sample, value: coerced.value };
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
