import { randomBytes } from "node:crypto";
import { KilnError, type Principal, QualityCodes, type Sample, type StoredHistoryView, type Tag } from "@kiln/core";
import { type AggregateName, AGGREGATES, type AggregateValue } from "@kiln/core/driver-kit";
import type { ISessionContext } from "node-opcua-address-space-base";
import type { DataValue } from "node-opcua-data-value";
import type {
  HistoryReadResult,
  ReadAtTimeDetails,
  ReadProcessedDetails,
  ReadRawModifiedDetails,
} from "node-opcua-types";
import type { Variant } from "node-opcua-variant";
import type { ServerRuntime } from "./opcua-server-runtime-loader";
import { servedValueOf, ServerStatusCodes } from "./opcua-status";

/**
 * History query times lie in [1900-01-01, 2100-01-01] UTC (Kiln's history API refuses others
 * with `KILN_VALIDATION`); a HistoryRead time outside answers `BadInvalidTimestampArgument`.
 */
const HISTORY_TIME_MIN = Date.UTC(1900, 0, 1);
const HISTORY_TIME_MAX = Date.UTC(2100, 0, 1);

/**
 * The bounds of one HistoryRead (OPC UA Part 11), advertised in the server's
 * HistoryServerCapabilities and ServerCapabilities, so one response holds at most
 * `maxNodesPerRequest × maxValuesPerNode` (100,000) values:
 *
 * - `maxValuesPerNode`: the most values one node returns per call (MaxReturnDataValues); a raw
 *   read asking for more (or for 0, "all"), and a processed read of more intervals, gets pages
 *   of this size with continuation points. Also the most ReqTimes of a ReadAtTime (more answers
 *   `BadTooManyOperations`).
 * - `maxNodesPerRequest`: the most nodes of one HistoryRead
 *   (OperationLimits.MaxNodesPerHistoryReadData); more answers `BadTooManyOperations`.
 * - `maxContinuationPoints`: the most open continuation points per session
 *   (MaxHistoryContinuationPoints); one more answers `BadNoContinuationPoints`.
 */
export const OPCUA_HISTORY_LIMITS = {
  maxValuesPerNode: 1_000,
  maxNodesPerRequest: 100,
  maxContinuationPoints: 10,
} as const;

/** OPC UA StatusCode Uncertain_DataSubNormal: a value computed from (or found in) history some of which is missing. */
const UNCERTAIN_DATA_SUB_NORMAL = 0x40a40000;

/** OPC UA StatusCodes (Part 4, 7.39; Part 11; Part 13) of history reads. */
export const HistoryStatusCodes = {
  BadHistoryOperationUnsupported: 0x80720000,
  BadAggregateNotSupported: 0x80d50000,
  BadContinuationPointInvalid: 0x804a0000,
  BadNoContinuationPoints: 0x804b0000,
  BadBoundNotFound: 0x80d70000,
  BadInvalidTimestampArgument: 0x80bd0000,
  BadNoData: 0x809b0000,
  BadDataLost: 0x809d0000,
  BadTooManyOperations: 0x80100000,
  UncertainDataSubNormal: 0x40a40000,
  BadAggregateConfigurationRejected: 0x80da0000,
} as const;

/**
 * Whether a client's AggregateConfiguration (Part 13, 4.2.1.2) is the one Kiln computes with:
 * TreatUncertainAsBad true, PercentDataBad and PercentDataGood 100 (any bad data makes a result
 * non-good), UseSlopedExtrapolation false (the last value is held). Another one answers
 * `BadAggregateConfigurationRejected` rather than results computed some other way.
 */
function isKilnConfiguration(configuration: {
  treatUncertainAsBad?: boolean;
  percentDataBad?: number;
  percentDataGood?: number;
  useSlopedExtrapolation?: boolean;
}): boolean {
  return (
    configuration.treatUncertainAsBad === true &&
    configuration.percentDataBad === 100 &&
    configuration.percentDataGood === 100 &&
    configuration.useSlopedExtrapolation === false
  );
}

/**
 * The info bits of a historical value's StatusCode (Part 4, 7.39.1 and Part 11, 6.3.2): InfoType
 * DataValue (0x400) with the HistorianBits `Calculated` (1) or `Interpolated` (2).
 */
export const HISTORIAN_CALCULATED = 0x0401;
/** See {@link HISTORIAN_CALCULATED}. */
export const HISTORIAN_INTERPOLATED = 0x0402;

/**
 * The StatusCode of one Kiln aggregate result (Part 13, 5.3.3 and 5.4.3): `good` is Good with
 * the HistorianCalculated bit (HistorianInterpolated for `Interpolative`); `uncertain` keeps its
 * own uncertain code, else `UncertainDataSubNormal` (the interval rests on bad or missing data),
 * with the same bit; `bad` keeps its own bad code (e.g. `BadOutOfRange` for an overflow), else
 * `BadNoData` (no data to compute it from). Never good on a result Kiln did not call good.
 * @returns a 32-bit unsigned StatusCode.
 */
export function statusCodeOfAggregate(name: AggregateName, result: AggregateValue): number {
  const bit = name === "Interpolative" ? HISTORIAN_INTERPOLATED : HISTORIAN_CALCULATED;
  const { severity, code } = result.quality;
  const severityBits = (code & 0xc0000000) >>> 0;
  if (severity === "bad" || result.value === null) {
    if (severity === "bad" && severityBits >= QualityCodes.Bad && code >>> 0 !== QualityCodes.Bad) return code >>> 0;
    return HistoryStatusCodes.BadNoData;
  }
  if (severity === "uncertain") {
    const own = severityBits === QualityCodes.Uncertain && (code & 0xffff0000) >>> 0 !== QualityCodes.Uncertain;
    return ((own ? code & 0xffff0000 : HistoryStatusCodes.UncertainDataSubNormal) | bit) >>> 0;
  }
  return (QualityCodes.Good | bit) >>> 0;
}

/**
 * The StatusCode a history read answers for a `KilnError` of `system.history`: bad input
 * (`KILN_VALIDATION`) `BadInvalidArgument`; a raw read whose range holds samples the store's
 * retention evicted (`KILN_HISTORY_EVICTED`): on its first page `BadDataLost` (Part 11: data is
 * missing; the node's StartOfOnlineArchive says from when to read), on a later one (the store
 * evicted them since the previous page) `BadContinuationPointInvalid`; the store closed (`KILN_LIFECYCLE`), failing or its
 * breaker open `BadResourceUnavailable`; `KILN_TIMEOUT` `BadTimeout`; anything else
 * `BadInternalError`.
 */
export function historyStatusOfError(error: unknown): number {
  if (!KilnError.is(error)) return ServerStatusCodes.BadInternalError;
  switch (error.code) {
    case "KILN_VALIDATION":
      return ServerStatusCodes.BadInvalidArgument;
    case "KILN_FORBIDDEN":
      return ServerStatusCodes.BadUserAccessDenied;
    case "KILN_TIMEOUT":
      return ServerStatusCodes.BadTimeout;
    case "KILN_HISTORY_EVICTED":
      // A first read (the store names no page cursor) over evicted history: the data is lost. A
      // continuation point naming samples the store's retention evicted since the last page: invalid.
      return error.details?.after === undefined
        ? HistoryStatusCodes.BadDataLost
        : HistoryStatusCodes.BadContinuationPointInvalid;
    case "KILN_LIFECYCLE":
    case "KILN_STORE_ERROR":
    case "KILN_CIRCUIT_OPEN":
      return ServerStatusCodes.BadResourceUnavailable;
    default:
      return ServerStatusCodes.BadInternalError;
  }
}

/** What the history service needs of node-opcua (loaded at run time). */
export type HistoryRuntime = Pick<
  ServerRuntime,
  | "DataValue"
  | "HistoryData"
  | "HistoryReadResult"
  | "ReadRawModifiedDetails"
  | "ReadProcessedDetails"
  | "ReadAtTimeDetails"
  | "DataType"
  | "Variant"
  | "VariantArrayType"
  | "getStatusCodeFromCode"
>;

/** What the history service needs of the server. */
export interface HistoryHost {
  readonly history: StoredHistoryView;
  /** The principal of a request's session. */
  principalOf(context: ISessionContext): Principal;
  /** Whether `principal` may read `tag` (the `read` permission). */
  canRead(principal: Principal, tag: string): boolean;
  /** The Variant of a value of `tag`; undefined when it does not fit. */
  variantOf(tag: Tag, value: Sample["value"]): Variant | undefined;
  /** Reports a failure that is not a `KilnError` of the store (answered `BadInternalError`). */
  reportError(error: unknown, tag: string): void;
  /** The Kiln aggregate of an aggregate function NodeId, when Kiln computes it. */
  aggregateNameOf(aggregateType: unknown): AggregateName | undefined;
}

/** Where a raw read resumes (one continuation point). */
interface RawCursor {
  readonly kind: "raw";
  readonly tag: string;
  /** The HistoryReadDetails it was made for ({@link detailsKey}): a point is resumed with these only. */
  readonly details: string;
  readonly forward: boolean;
  /** Inclusive lower end of the raw range, ms. */
  readonly lo: number;
  /** Exclusive upper end of the raw range, ms. */
  hi: number;
  /** Forward reads: the last timestamp returned (exclusive). */
  after: number | undefined;
  readonly pageSize: number;
  readonly returnBounds: boolean;
  /** The range as the client gave it (bounds are looked for at its ends). */
  readonly start: number;
  readonly end: number;
  /** `start`: the first page still owes the start bound; `samples`; `end`: only the end bound is left. */
  phase: "start" | "samples" | "end";
  /** The store's `retainedFrom()` when the last page was read; absent before the first page. */
  horizon?: number | undefined;
  paged?: boolean;
  /** Whether a forward read's first page of samples had its span checked against the store's retention. */
  spanChecked?: boolean;
}

/** Where a processed read resumes: the intervals of `[from, to)` not returned yet. */
interface ProcessedCursor {
  readonly kind: "processed";
  readonly tag: string;
  /** The HistoryReadDetails it was made for ({@link detailsKey}). */
  readonly details: string;
  readonly aggregate: AggregateName;
  readonly intervalMs: number;
  readonly reverse: boolean;
  /** The intervals left cover `[from, to)`. */
  from: number;
  to: number;
}

type Cursor = RawCursor | ProcessedCursor;

/**
 * The HistoryReadDetails of a request as one comparable text (its encoded fields: times, counts,
 * bounds, aggregate and configuration): a continuation point resumes only a request with the
 * same details (OPC UA Part 11, 6.3; Part 4, 7.9).
 */
function detailsKey(details: object): string {
  try {
    return JSON.stringify(details);
  } catch {
    return String(Math.random()); // not comparable: never resumed with other details
  }
}

/** Milliseconds of an OPC UA DateTime; undefined for an unspecified one (null or before 1601-01-02). */
function timeOf(date: Date | null | undefined): number | undefined {
  if (!date) return undefined;
  const ms = date.getTime();
  return Number.isNaN(ms) || ms <= Date.UTC(1601, 0, 2) ? undefined : ms;
}

/**
 * Serves OPC UA HistoryRead (Part 11) for the tag variables from `system.history`: ReadRaw
 * (with continuation points, reverse order, bounds), ReadAtTime (`valueAt`) and ReadProcessed
 * (`aggregate`), for principals holding `read` on the tag.
 */
export class HistoryService {
  readonly #host: HistoryHost;
  readonly #runtime: HistoryRuntime;
  readonly #cursors = new WeakMap<object, Map<string, Cursor>>();

  constructor(runtime: HistoryRuntime, host: HistoryHost) {
    this.#runtime = runtime;
    this.#host = host;
  }

  /**
   * Releases the continuation points of a HistoryRead response the session never received (it
   * could not be sent: larger than the channel's message size, the channel gone). The client cannot
   * release what it never got; without this, the session's points stayed taken and later paged
   * reads answered BadNoContinuationPoints.
   */
  releaseUnsent(session: object, points: readonly Buffer[]): void {
    const cursors = this.#cursors.get(session);
    if (!cursors) return;
    for (const point of points) cursors.delete(point.toString("hex"));
  }

  /**
   * The value of a historical node's StartOfOnlineArchive (Part 11, 5.2.2: the date of the earliest
   * data in the online archive) for a store whose history is bounded (`samples.retainedFrom` present,
   * MemoryStore's retention, ADR 0045): its horizon, from which every tag's history is complete and
   * raw reads are served whole (a first raw read reaching before it answers `BadDataLost` when the
   * tag lost samples there); the minimum DateTime (no start) while nothing was evicted. Undefined for
   * a store that keeps everything: the property is not served (no invented time).
   */
  startOfOnlineArchive(): (() => DataValue) | undefined {
    const samples = this.#host.history.samples;
    if (typeof samples.retainedFrom !== "function") return undefined;
    const runtime = this.#runtime;
    return () => {
      const horizon = samples.retainedFrom?.();
      return new runtime.DataValue({
        value: { dataType: runtime.DataType.DateTime, value: horizon === undefined ? null : new Date(horizon) },
        ...(horizon === undefined ? {} : { sourceTimestamp: new Date(horizon) }),
      });
    };
  }

  /** The Kiln aggregates the store computes (none when it has no history queries). */
  get aggregates(): readonly AggregateName[] {
    return this.#host.history.queries ? AGGREGATES : [];
  }

  /** Answers one node of a HistoryRead. Never throws: every failure is a Bad StatusCode. */
  async read(
    tag: Tag,
    context: ISessionContext,
    details: unknown,
    continuation: { continuationPoint?: Buffer | null; releaseContinuationPoints?: boolean },
    indexRange?: unknown,
  ): Promise<HistoryReadResult> {
    const runtime = this.#runtime;
    try {
      const range = indexRange as { isEmpty?: () => boolean } | null | undefined;
      if (range && typeof range.isEmpty === "function" && !range.isEmpty()) {
        return this.#fail(ServerStatusCodes.BadIndexRangeInvalid);
      }
      const principal = this.#host.principalOf(context);
      if (!this.#host.canRead(principal, tag.name)) return this.#fail(ServerStatusCodes.BadUserAccessDenied);
      const session = context?.session as object | undefined;
      if (details instanceof runtime.ReadRawModifiedDetails) {
        if (details.isReadModified) return this.#fail(HistoryStatusCodes.BadHistoryOperationUnsupported);
        return await this.#readRaw(tag, session, details, continuation);
      }
      if (details instanceof runtime.ReadProcessedDetails) {
        return await this.#readProcessed(tag, session, details, continuation);
      }
      if (continuation.continuationPoint && continuation.continuationPoint.length > 0) {
        return this.#fail(HistoryStatusCodes.BadContinuationPointInvalid);
      }
      if (details instanceof runtime.ReadAtTimeDetails) return await this.#readAtTime(tag, details);
      return this.#fail(HistoryStatusCodes.BadHistoryOperationUnsupported);
    } catch (error) {
      if (!KilnError.is(error)) this.#host.reportError(error, tag.name);
      return this.#fail(historyStatusOfError(error));
    }
  }

  #fail(code: number): HistoryReadResult {
    return new this.#runtime.HistoryReadResult({ statusCode: this.#runtime.getStatusCodeFromCode(code) });
  }

  #result(values: DataValue[], continuationPoint?: Buffer): HistoryReadResult {
    const runtime = this.#runtime;
    return new runtime.HistoryReadResult({
      statusCode: runtime.getStatusCodeFromCode(QualityCodes.Good),
      historyData: new runtime.HistoryData({ dataValues: values }),
      ...(continuationPoint ? { continuationPoint } : {}),
    });
  }

  /**
   * A raw sample as a DataValue: its value (Null when it has none, when the sample is Bad, or when
   * it cannot be encoded in the node's DataType: then Bad; the rule live values share,
   * `servedValueOf`), its own StatusCode (bad stays bad), its source time.
   */
  #dataValueOfSample(tag: Tag, sample: Sample, extraBits = 0): DataValue {
    const runtime = this.#runtime;
    const { code: served, variant } = servedValueOf(sample, (value) => this.#host.variantOf(tag, value));
    return new runtime.DataValue({
      value: variant ?? { dataType: runtime.DataType.Null },
      statusCode: runtime.getStatusCodeFromCode((served | (served < QualityCodes.Bad ? extraBits : 0)) >>> 0),
      sourceTimestamp: new Date(sample.timestamp),
    });
  }

  /**
   * A bound found by searching `after` (at or after `time`) or `before` it (none: BadBoundNotFound at
   * `noBoundAt`): as stored, unless the
   * search crossed time the store's retention evicted (`horizon`: its `retainedFrom()`): then the
   * sample found may not be the bound (an evicted one lay between), and a good one is served
   * Uncertain_DataSubNormal, never Good (adv16b F0b).
   */
  #boundOf(
    tag: Tag,
    bound: Sample | undefined,
    searched: "after" | "before",
    time: number,
    horizon: number | undefined,
    noBoundAt: number,
  ): DataValue {
    if (bound === undefined) return this.#noBound(noBoundAt);
    const crossed = horizon !== undefined && (searched === "after" ? time < horizon : bound.timestamp < horizon);
    const value = this.#dataValueOfSample(tag, bound);
    if (!crossed || !value.statusCode.isGood()) return value;
    return new this.#runtime.DataValue({
      value: value.value,
      statusCode: this.#runtime.getStatusCodeFromCode(UNCERTAIN_DATA_SUB_NORMAL),
      sourceTimestamp: value.sourceTimestamp,
    });
  }

  /** The bound of a raw read: the last sample before `time` (`before`), or the first at or after it. */
  #searchBound(tag: string, searched: "after" | "before", time: number): Promise<Sample | undefined> {
    return searched === "before" ? this.#lastBefore(tag, time) : this.#firstAtOrAfter(tag, time);
  }

  #noBound(time: number): DataValue {
    const runtime = this.#runtime;
    return new runtime.DataValue({
      value: { dataType: runtime.DataType.Null },
      statusCode: runtime.getStatusCodeFromCode(HistoryStatusCodes.BadBoundNotFound),
      sourceTimestamp: new Date(time),
    });
  }

  /**
   * The continuation-point step every read kind shares (Part 11 §6.3): a given point names a cursor
   * of this kind and tag, made for the same details when read on (`details`, {@link detailsKey};
   * else BadContinuationPointInvalid, and the point stays as it was), which is used once, then released
   * or read on; a release without a point answers nothing. `undefined`: a new read, no point given.
   */
  #resume<K extends Cursor["kind"]>(
    kind: K,
    tag: Tag,
    cursors: Map<string, Cursor>,
    continuation: { continuationPoint?: Buffer | null; releaseContinuationPoints?: boolean },
    details: string,
    next: (cursor: Extract<Cursor, { kind: K }>) => Promise<HistoryReadResult>,
  ): HistoryReadResult | Promise<HistoryReadResult> | undefined {
    const point = continuation.continuationPoint;
    if (point && point.length > 0) {
      const key = point.toString("hex");
      const cursor = cursors.get(key);
      const release = continuation.releaseContinuationPoints === true;
      // A release frees the point whatever details it names; a read must name the same ones.
      if (cursor?.kind !== kind || cursor.tag !== tag.name || (!release && cursor.details !== details)) {
        return this.#fail(HistoryStatusCodes.BadContinuationPointInvalid);
      }
      cursors.delete(key);
      if (continuation.releaseContinuationPoints) return this.#result([]);
      return next(cursor as Extract<Cursor, { kind: K }>);
    }
    if (continuation.releaseContinuationPoints) return this.#result([]);
    return undefined;
  }

  async #readRaw(
    tag: Tag,
    session: object | undefined,
    details: ReadRawModifiedDetails,
    continuation: { continuationPoint?: Buffer | null; releaseContinuationPoints?: boolean },
  ): Promise<HistoryReadResult> {
    const cursors = session ? this.#cursorsOf(session) : new Map<string, Cursor>();
    const key = detailsKey(details);
    const resumed = this.#resume("raw", tag, cursors, continuation, key, (cursor) => this.#page(tag, cursor, cursors));
    if (resumed) return resumed;
    const start = timeOf(details.startTime);
    const end = timeOf(details.endTime);
    const requested = details.numValuesPerNode ?? 0;
    for (const time of [start, end]) {
      if (time !== undefined && (time < HISTORY_TIME_MIN || time > HISTORY_TIME_MAX)) {
        return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
      }
    }
    if (start === undefined && end === undefined) return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
    if ((start === undefined || end === undefined) && requested === 0) {
      return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
    }
    const pageSize =
      requested === 0
        ? OPCUA_HISTORY_LIMITS.maxValuesPerNode
        : Math.min(requested, OPCUA_HISTORY_LIMITS.maxValuesPerNode);
    let cursor: RawCursor;
    const kind = "raw" as const;
    if (start !== undefined && end === undefined) {
      cursor = {
        kind,
        tag: tag.name,
        details: key,
        forward: true,
        lo: start,
        hi: HISTORY_TIME_MAX,
        start,
        end: HISTORY_TIME_MAX,
        after: undefined,
        pageSize,
        returnBounds: false,
        phase: "samples",
      };
    } else if (start === undefined) {
      cursor = {
        kind,
        tag: tag.name,
        details: key,
        forward: false,
        lo: HISTORY_TIME_MIN,
        hi: end!,
        start: end!,
        end: HISTORY_TIME_MIN,
        after: undefined,
        pageSize,
        returnBounds: false,
        phase: "samples",
      };
    } else if (start <= end!) {
      // Part 11, 6.4.3.2: [start, end); start == end asks for the values at that time.
      const hi = start === end ? start + 1 : end!;
      cursor = {
        kind,
        tag: tag.name,
        details: key,
        forward: true,
        lo: start,
        hi,
        start,
        end: end!,
        after: undefined,
        pageSize,
        returnBounds: details.returnBounds,
        phase: details.returnBounds ? "start" : "samples",
      };
    } else {
      // start > end: newest first, (end, start].
      cursor = {
        kind,
        tag: tag.name,
        details: key,
        forward: false,
        lo: end! + 1,
        hi: start + 1,
        start,
        end: end!,
        after: undefined,
        pageSize,
        returnBounds: details.returnBounds,
        phase: details.returnBounds ? "start" : "samples",
      };
    }
    return this.#page(tag, cursor, cursors);
  }

  #cursorsOf(session: object): Map<string, Cursor> {
    let cursors = this.#cursors.get(session);
    if (!cursors) this.#cursors.set(session, (cursors = new Map()));
    return cursors;
  }

  /** One page of a raw read; a continuation point when more is left. */
  async #page(tag: Tag, cursor: RawCursor, cursors: Map<string, Cursor>): Promise<HistoryReadResult> {
    const samples = this.#host.history.samples;
    const values: DataValue[] = [];
    const size = cursor.pageSize;
    // A bounded store (MemoryStore's retention) may evict what a read has not reached yet, between
    // its pages. A forward page after a sample is checked by the store itself, per tag (`after`:
    // KILN_HISTORY_EVICTED); a reverse page, or a forward one before any sample was returned (only
    // the start bound), is checked here: when the store's horizon moved into what is left to read
    // ([lo, hi)) since the last page, samples of it may be gone: the point is refused, never a page
    // that skips them (adv16b F0a, F0c).
    const horizon = samples.retainedFrom?.();
    if (cursor.paged === true && horizon !== undefined && !(cursor.forward && cursor.after !== undefined)) {
      if (horizon > Math.max(cursor.horizon ?? Number.NEGATIVE_INFINITY, cursor.lo)) {
        return this.#fail(HistoryStatusCodes.BadContinuationPointInvalid);
      }
    }
    cursor.paged = true;
    cursor.horizon = horizon;
    if (cursor.phase === "start") {
      cursor.phase = "samples";
      const at = await samples.readSamples({
        tag: tag.name,
        from: cursor.start,
        to: cursor.start + 1,
        limit: 1,
        acceptEvicted: true,
      });
      if (at.length === 0) {
        const searched = cursor.forward ? "before" : "after";
        const time = cursor.forward ? cursor.start : cursor.start + 1;
        const bound = await this.#searchBound(tag.name, searched, time);
        values.push(this.#boundOf(tag, bound, searched, time, horizon, cursor.start));
      }
    }
    if (cursor.phase === "samples" && values.length < size) {
      const want = size - values.length;
      let rows: Sample[];
      if (cursor.forward) {
        rows = await samples.readSamples({
          tag: tag.name,
          from: cursor.lo,
          to: cursor.hi,
          limit: want + 1,
          ...(cursor.after === undefined ? { acceptEvicted: true } : { after: cursor.after }),
        });
      } else {
        rows = (await this.#lastN(tag.name, cursor.lo, cursor.hi, want + 1)).reverse();
      }
      const more = rows.length > want;
      const taken = rows.slice(0, want);
      // A page of samples asks the store, after reading them, whether the span they stand
      // for lost samples to its retention (the one rule, KILN_HISTORY_EVICTED, answered
      // BadDataLost): kept samples are never served as the whole range (fix16m). Only the span this
      // page covers (all that is left when nothing more is), so the newest N values of a tag that
      // lost old ones are served; after the read, so an eviction during it is seen (adv16n M2, M3:
      // a whole-range check before the read refused every "last N" read and raced the read).
      // A reverse page's span is checked on every page (what it left for later may have lost
      // samples before the first); a forward page after a sample is checked by the store (`after`).
      if (horizon !== undefined && (!cursor.forward || cursor.spanChecked !== true)) {
        const edge = taken.at(-1)?.timestamp;
        const from = cursor.forward || !more || edge === undefined ? cursor.lo : edge;
        const to = !cursor.forward || !more || edge === undefined ? cursor.hi : edge + 1;
        await samples.readSamples({ tag: tag.name, from, to, limit: 1 });
        cursor.spanChecked = true;
      }
      for (const row of taken) values.push(this.#dataValueOfSample(tag, row));
      if (taken.length > 0) {
        if (cursor.forward) cursor.after = taken.at(-1)!.timestamp;
        else cursor.hi = taken.at(-1)!.timestamp;
      }
      if (!more) cursor.phase = "end";
      if (more || (cursor.returnBounds && values.length >= size)) return this.#continue(values, cursor, cursors);
    }
    // The start bound filled the page: the samples come on the next one.
    if (cursor.phase === "samples") return this.#continue(values, cursor, cursors);
    if (cursor.phase === "end" && cursor.returnBounds) {
      if (values.length >= size) return this.#continue(values, cursor, cursors);
      const searched = cursor.forward ? "after" : "before";
      const time = cursor.forward ? cursor.end : cursor.end + 1;
      const bound = await this.#searchBound(tag.name, searched, time);
      // start == end reads [start, start + 1): a sample at end is already on the page, not a bound again.
      const returned = bound !== undefined && cursor.forward && bound.timestamp < cursor.hi;
      if (!returned) values.push(this.#boundOf(tag, bound, searched, time, horizon, cursor.end));
    }
    return this.#result(values);
  }

  #continue(values: DataValue[], cursor: Cursor, cursors: Map<string, Cursor>): HistoryReadResult {
    if (cursors.size >= OPCUA_HISTORY_LIMITS.maxContinuationPoints) {
      return this.#fail(HistoryStatusCodes.BadNoContinuationPoints);
    }
    const point = randomBytes(16);
    cursors.set(point.toString("hex"), cursor);
    return this.#result(values, point);
  }

  async #firstAtOrAfter(tag: string, time: number): Promise<Sample | undefined> {
    if (time >= HISTORY_TIME_MAX) return undefined;
    // Bound searches cross evicted time on purpose: a bound found so is served Uncertain (#boundOf).
    const [first] = await this.#host.history.samples.readSamples({
      tag,
      from: time,
      to: HISTORY_TIME_MAX,
      limit: 1,
      acceptEvicted: true,
    });
    return first;
  }

  async #lastBefore(tag: string, time: number): Promise<Sample | undefined> {
    return (await this.#lastN(tag, HISTORY_TIME_MIN, time, 1)).at(-1);
  }

  /**
   * The last `n` samples in `[lo, hi)`, oldest first. `readSamples` reads forward only, so this
   * looks for a window `[hi - w, hi)` holding at least `n` samples and at most one page
   * (`maxValuesPerNode + 1`) of them: it doubles `w` while the window holds fewer, halves it
   * while it holds too many (a window of 1 ms holds at most one sample of a tag, so it ends).
   */
  async #lastN(tag: string, lo: number, hi: number, n: number): Promise<Sample[]> {
    const samples = this.#host.history.samples;
    const cap = Math.max(n, OPCUA_HISTORY_LIMITS.maxValuesPerNode) + 1;
    let small = 0; // a width known to hold fewer than n (0: none yet)
    let large = Number.POSITIVE_INFINITY; // a width known to hold cap or more
    let width = Math.min(60_000, hi - lo);
    for (;;) {
      const from = Math.max(lo, hi - width);
      const rows = await samples.readSamples({ tag, from, to: hi, limit: cap, acceptEvicted: true });
      if (rows.length < cap) {
        if (rows.length >= n || from === lo) return rows.slice(-n);
        small = width;
      } else {
        large = width;
      }
      const next = Number.isFinite(large) ? Math.floor((small + large) / 2) : Math.min(width * 4, hi - lo);
      if (next === width || next <= small) {
        // No width between: the samples at the window's edge share a millisecond; read what fits.
        return rows.slice(-n);
      }
      width = next;
    }
  }

  async #readAtTime(tag: Tag, details: ReadAtTimeDetails): Promise<HistoryReadResult> {
    const queries = this.#host.history.queries;
    if (!queries) return this.#fail(HistoryStatusCodes.BadHistoryOperationUnsupported);
    const times = (details.reqTimes ?? []).map((date) => timeOf(date));
    if (times.length === 0) return this.#result([]);
    if (times.length > OPCUA_HISTORY_LIMITS.maxValuesPerNode)
      return this.#fail(HistoryStatusCodes.BadTooManyOperations);
    if (times.some((time) => time === undefined || time < HISTORY_TIME_MIN || time > HISTORY_TIME_MAX)) {
      return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
    }
    // One store read for every time, within one budget: a value that is a good sample stored
    // at the time is Raw, any other Interpolated (Part 11, 6.5.5.2; HistorianBits, Part 11 6.3.2).
    const values = await queries.valuesAt([tag.name], times as number[]);
    return this.#result(
      values.map((value) => this.#dataValueOfSample(tag, value, value.raw ? 0 : HISTORIAN_INTERPOLATED)),
    );
  }

  async #readProcessed(
    tag: Tag,
    session: object | undefined,
    details: ReadProcessedDetails,
    continuation: { continuationPoint?: Buffer | null; releaseContinuationPoints?: boolean },
  ): Promise<HistoryReadResult> {
    const cursors = session ? this.#cursorsOf(session) : new Map<string, Cursor>();
    const key = detailsKey(details);
    const resumed = this.#resume("processed", tag, cursors, continuation, key, (cursor) =>
      this.#processedPage(tag, cursor, cursors),
    );
    if (resumed) return resumed;
    if (!this.#host.history.queries) return this.#fail(HistoryStatusCodes.BadHistoryOperationUnsupported);
    const aggregate = this.#host.aggregateNameOf(details.aggregateType?.[0]);
    if (aggregate === undefined) return this.#fail(HistoryStatusCodes.BadAggregateNotSupported);
    const configuration = details.aggregateConfiguration;
    if (configuration && !configuration.useServerCapabilitiesDefaults && !isKilnConfiguration(configuration)) {
      return this.#fail(HistoryStatusCodes.BadAggregateConfigurationRejected);
    }
    const start = timeOf(details.startTime);
    const end = timeOf(details.endTime);
    if (start === undefined || end === undefined || start === end) {
      return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
    }
    for (const time of [start, end]) {
      if (time < HISTORY_TIME_MIN || time > HISTORY_TIME_MAX) {
        return this.#fail(HistoryStatusCodes.BadInvalidTimestampArgument);
      }
    }
    const reverse = start > end;
    const from = Math.min(start, end);
    const to = Math.max(start, end);
    const interval = details.processingInterval ?? 0;
    // Part 11, 6.4.4.2: a ProcessingInterval of 0 is one interval over the whole range.
    const intervalMs = interval === 0 ? to - from : interval;
    if (!Number.isInteger(intervalMs) || intervalMs < 1) return this.#fail(ServerStatusCodes.BadInvalidArgument);
    // Reverse order: intervals begin at the (later) start time and run back, which is the same
    // set of intervals as a forward read only when the range is a whole number of intervals.
    if (reverse && (to - from) % intervalMs !== 0) return this.#fail(ServerStatusCodes.BadInvalidArgument);
    const cursor: ProcessedCursor = {
      kind: "processed",
      tag: tag.name,
      details: key,
      aggregate,
      intervalMs,
      reverse,
      from,
      to,
    };
    return this.#processedPage(tag, cursor, cursors);
  }

  /**
   * At most `maxValuesPerNode` intervals of a processed read, from its start (forward) or its
   * end (reverse); a continuation point for the rest. A page's range starts (or, reversed, ends)
   * on an interval edge of the whole range, so its intervals are those of the whole read.
   */
  async #processedPage(tag: Tag, cursor: ProcessedCursor, cursors: Map<string, Cursor>): Promise<HistoryReadResult> {
    const runtime = this.#runtime;
    const span = OPCUA_HISTORY_LIMITS.maxValuesPerNode * cursor.intervalMs;
    const from = cursor.reverse ? Math.max(cursor.from, cursor.to - span) : cursor.from;
    const to = cursor.reverse ? cursor.to : Math.min(cursor.to, cursor.from + span);
    const { aggregate } = cursor;
    const rows = await this.#host.history.queries!.aggregate([tag.name], {
      start: from,
      end: to,
      intervalMs: cursor.intervalMs,
      aggregates: [aggregate],
    });
    const values = rows.map((row) => {
      const result = row.values[aggregate]!;
      const code = statusCodeOfAggregate(aggregate, result);
      // A Bad result carries no value (Part 4, 7.7.1), as a Bad sample does (`servedValueOf`).
      const encoded =
        result.value === null || code >= QualityCodes.Bad
          ? undefined
          : this.#aggregateVariant(tag, aggregate, result.value);
      const variant = typeof encoded === "number" ? undefined : encoded;
      // Not encodable (a picked int16 70000, a Delta beyond 64 bits): Bad with no value, never
      // converted or wrapped; a result that was bad already keeps its own code (the shared rule
      // of `statusCodeOfServed`).
      const unencoded = typeof encoded === "number" ? encoded : HistoryStatusCodes.BadNoData;
      return new runtime.DataValue({
        value: variant ?? { dataType: runtime.DataType.Null },
        statusCode: runtime.getStatusCodeFromCode(variant === undefined && code < QualityCodes.Bad ? unencoded : code),
        sourceTimestamp: new Date(cursor.reverse ? row.end : row.start),
      });
    });
    if (cursor.reverse) values.reverse();
    if (cursor.reverse) cursor.to = from;
    else cursor.from = to;
    if (cursor.from < cursor.to) return this.#continue(values, cursor, cursors);
    return this.#result(values);
  }

  /**
   * An exact 64-bit integer result: in the tag's own DataType when it fits (a picked value of an
   * `int64`/`uint64` tag), else Int64 when it fits (a negative `Delta` of a `uint64` tag), else
   * UInt64 when it fits; a result that fits neither (a `Delta` of 2^64−1 → 0: −(2^64−1)) is never
   * wrapped: `BadOutOfRange` (returned as the StatusCode, no value). node-opcua carries 64-bit
   * integers as [high, low] 32-bit words.
   */
  #bigintVariant(tag: Tag, value: bigint): Variant | number {
    const runtime = this.#runtime;
    const fitsInt64 = value >= -(2n ** 63n) && value < 2n ** 63n;
    const fitsUInt64 = value >= 0n && value < 2n ** 64n;
    if (!fitsInt64 && !fitsUInt64) return QualityCodes.BadOutOfRange;
    const own =
      (tag.dataType === "int64" && fitsInt64) || (tag.dataType === "uint64" && fitsUInt64) ? tag.dataType : undefined;
    const type = own ?? (fitsInt64 ? "int64" : "uint64");
    const words = BigInt.asUintN(64, value);
    return new runtime.Variant({
      dataType: type === "int64" ? runtime.DataType.Int64 : runtime.DataType.UInt64,
      arrayType: runtime.VariantArrayType.Scalar,
      value: [Number(words >> 32n), Number(words & 0xffffffffn)],
    });
  }

  /**
   * The Variant of an aggregate. Values in the tag's DataType (Part 13, 5.4.3: "Same as Source"),
   * by the same encoding rule as Raw and AtTime (`variantOf`: a value that does not fit, such as an
   * int16 tag's stored 70000, is `BadTypeMismatch`, never converted): the values picked from the
   * samples (Minimum, Maximum, Start, End) and the Interpolative value, see {@link #sourceVariant};
   * a bigint (64-bit tags: picked values, Delta, an Interpolative value at a sample) exact, see
   * {@link #bigintVariant}; a 64-bit tag's Interpolative value between two samples is interpolated
   * by core in float64 (a number): within ±2^53 rounded and served exactly, beyond it
   * `BadTypeMismatch` (never an inexact value served as Good);
   * a Delta of a float tag in its DataType, of another tag as Double; counts as UInt32; durations
   * (DurationGood, ms) and computed values (Average, TimeAverage, Total, PercentGood...) as Double,
   * a `bool` tag's too.
   * @returns the Variant, or the Bad StatusCode when the value cannot be encoded.
   */
  #aggregateVariant(tag: Tag, name: AggregateName, value: number | bigint): Variant | number {
    const runtime = this.#runtime;
    const double = (v: number): Variant => new runtime.Variant({ dataType: runtime.DataType.Double, value: v });
    const floating = tag.dataType === "float32" || tag.dataType === "float64";
    switch (name) {
      case "Count":
        return new runtime.Variant({ dataType: runtime.DataType.UInt32, value: Number(value) });
      case "Minimum":
      case "Maximum":
      case "Start":
      case "End":
      case "Interpolative":
        if (typeof value === "bigint") return this.#bigintVariant(tag, value);
        return this.#sourceVariant(tag, value, name === "Interpolative");
      case "Delta":
        if (typeof value === "bigint") return this.#bigintVariant(tag, value);
        if (floating) return this.#host.variantOf(tag, value) ?? QualityCodes.BadTypeMismatch;
        return double(value);
      default:
        return double(Number(value));
    }
  }

  /**
   * A picked or interpolated aggregate value in the tag's own DataType: a `bool` tag's (which Kiln
   * computes as 0 and 1; its interpolation is always stepped) as Boolean, true when the value is
   * not 0; an integer tag's Interpolative value, which a sloped line between two samples may put
   * between integers, rounded to the nearest integer (a half up, `Math.round`); any other value as
   * it is. A value outside the DataType's range is `BadTypeMismatch`.
   */
  #sourceVariant(tag: Tag, value: number, interpolated: boolean): Variant | number {
    const integer = tag.dataType !== "float32" && tag.dataType !== "float64" && tag.dataType !== "bool";
    const own = tag.dataType === "bool" ? value !== 0 : interpolated && integer ? Math.round(value) : value;
    return this.#host.variantOf(tag, own) ?? QualityCodes.BadTypeMismatch;
  }
}
