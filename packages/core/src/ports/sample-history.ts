import type { Sample } from "../domain/sample";

/** A raw history query for one tag over a half-open time range `[from, to)`. */
export interface SampleQuery {
  /** The tag name. */
  readonly tag: string;
  /** Start, inclusive, ms since epoch. */
  readonly from: number;
  /** End, exclusive, ms since epoch. */
  readonly to: number;
  /** At most this many samples. @default 10000 */
  readonly limit?: number;
  /** Page after this timestamp (exclusive): pass the last timestamp of the previous page. */
  readonly after?: number;
}

/** A downsampled history query: one bucket per `bucketMs` over `[from, to)`. */
export interface BucketQuery {
  /** The tag name. */
  readonly tag: string;
  /** Start, inclusive, ms since epoch. Buckets are aligned to it. */
  readonly from: number;
  /** End, exclusive. */
  readonly to: number;
  /** Bucket width in ms. */
  readonly bucketMs: number;
}

/** Aggregates of the numeric samples in one bucket. Empty buckets are omitted. */
export interface SampleBucket {
  /** Bucket start, ms since epoch. */
  readonly start: number;
  /** Smallest value in the bucket. */
  readonly min: number;
  /** Largest value in the bucket. */
  readonly max: number;
  /** Mean of the values in the bucket. */
  readonly avg: number;
  /** Value of the earliest sample in the bucket. */
  readonly first: number;
  /** Value of the latest sample in the bucket. */
  readonly last: number;
  /** Number of numeric samples in the bucket (at least 1). */
  readonly count: number;
}

/**
 * Reads logged samples back, raw or downsampled for trend charts. A `limit` or `bucketMs` of
 * zero or less rejects with `KILN_VALIDATION`; an empty or reversed range gives `[]`.
 */
export interface SampleHistory {
  /** Samples of one tag in time order. */
  readSamples(query: SampleQuery): Promise<Sample[]>;
  /** Min/max/avg/first/last/count of numeric samples per bucket, in time order. */
  readBuckets(query: BucketQuery): Promise<SampleBucket[]>;
}
