/**
 * What the audit journal's records and its reserve (`<journal>.reserve`) hold, written and read
 * back: the denial overflow counts, the drop tally, the coalesced runs and the entries the journal
 * could not take, the tombstones of earlier versions, and the reserve's room (issue 15, ADR 0013).
 */
import type { AuditEntry } from "@kiln/core/driver-kit";
import { decodeExactJson, encodeExactJson } from "../logging/sample-journal";

/**
 * The key of a journal record that names entries dropped by `drop-oldest` (an entry has no such
 * field). Written by earlier versions, before a drop was made durable by a release mark (ADR
 * 0034); still read, so a journal they left keeps its drops.
 */
const TOMBSTONE_KEY = "kiln.audit.dropped";

/** The ids a tombstone record names, or undefined when `payload` is not one. */
export function decodeTombstone(payload: Buffer): string[] | undefined {
  try {
    const record = decodeExactJson(payload.toString("utf8")) as Record<string, unknown> | null;
    const ids = typeof record === "object" && record !== null ? record[TOMBSTONE_KEY] : undefined;
    return Array.isArray(ids) && ids.every((id) => typeof id === "string") ? ids : undefined;
  } catch {
    return undefined;
  }
}

/** The entry in a journal record, or undefined when it cannot be decoded into one. */
export function decodeEntry(payload: Buffer): AuditEntry | undefined {
  try {
    const entry = decodeExactJson(payload.toString("utf8")) as AuditEntry | null;
    return typeof entry === "object" && entry !== null && typeof entry.id === "string" ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** What a reserve that could not be opened holds, read without changing it (review 15w, B). */
export interface UnopenedReserve {
  /** Denied attempts it counts, not yet summarized. */
  readonly overflow: number;
  /** Dropped entries it counts, not yet summarized. */
  readonly drops: number;
  /** Entries it holds (put in the backlog when read). */
  readonly held: number;
  /** Their ids: not queued again when it opens. */
  readonly ids: ReadonlySet<string>;
  /** Journal records dropped by the dead run whose release was not durable, released unread (fix15e). */
  readonly released: number;
  /**
   * Entries the dead run held only in memory (its `memoryOnly` tally): lost, recorded as dropped
   * once it opens, named by health until then (fix15e, adv15d F4).
   */
  readonly memoryOnly: number;
}

/** Attempts counted while the backlog was full (refuse-commands), summarized into one entry later. */
export interface DenialOverflow {
  /**
   * The id its `audit.overflow` summary entry takes, kept in the reserve's record with the
   * count: a next start that finds a summary with this id in the journal knows the record's count
   * is summarized already (fix15p, adv15o MEDIUM-1). Absent only in a record an earlier version wrote.
   */
  id?: string;
  /**
   * In a collapsed bucket of a record ({@link collapseOverflow}): the buckets it merged, as
   * `[id, count]`, so a next start can take off those whose summaries the journal holds.
   */
  parts?: readonly (readonly [string, number])[];
  count: number;
  first: number;
  last: number;
  /** The first {@link OVERFLOW_NAMES} principals. */
  readonly principals: Set<string>;
  morePrincipals: boolean;
  /** The first {@link OVERFLOW_NAMES} actions. */
  readonly actions: Set<string>;
  /**
   * Why its attempts were counted instead of recorded, in words (the first {@link OVERFLOW_NAMES}):
   * the backlog's share for denied entries, the backlog's `maxEntries`, the journal at its
   * `maxBytes` or a full disk with no room left in the reserve (fix15c). Empty in a record an
   * earlier version wrote.
   */
  readonly causes: Set<string>;
}

/** Most principals and actions an overflow summary names. */
export const OVERFLOW_NAMES = 16;

/** Most principals counted apart while the backlog is full; the attempts of any further ones share one bucket. */
export const OVERFLOW_PRINCIPALS = 64;

/** The key of the bucket of principals beyond {@link OVERFLOW_PRINCIPALS}. */
export const OTHER_PRINCIPALS = "\u0000others";

/** Size limit of `<journal>.overflow`, the overflow counts of earlier versions (read once, then moved into the reserve). */
export const LEGACY_OVERFLOW_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Room of each of the reserve's two slots (`<journal>.reserve`, 2 × 64 KiB reserved when the
 * journal opens): the overflow counts and the entries the journal could not take.
 */
export const RESERVE_SLOT_BYTES = 64 * 1024;

/**
 * Free space the reserve leaves for the journal when it is made: it is made (at open, and on each
 * retry) only when its room (2 × {@link RESERVE_SLOT_BYTES}) plus this much is free, so the
 * safeguard for a full disk never takes the journal's last room (issue 15).
 */
export const RESERVE_HEADROOM_BYTES = 2 * RESERVE_SLOT_BYTES;

/**
 * The reserve's record: `{ overflow, held, drops?, coalesced?, memoryOnly? }`. `memoryOnly` counts
 * the entries held only in memory when it was written (no room for them in the journal or in the
 * reserve): lost if the process dies before the store takes them, so the next start records them
 * as dropped (an `audit.drop` summary). Rewritten with every write, so it is never more than what
 * memory held at the last write. `releasedThrough` is the id of the newest journal record that
 * `drop-oldest` dropped (counted in `drops`): every record up to it was released, durably or not,
 * so a next start that finds it in the journal releases it and those before it unread (fix15e).
 */
export function encodeReserve(
  overflow: unknown[],
  held: readonly AuditEntry[],
  drops: DropTally | undefined,
  coalesced: readonly CoalescedRun[] = [],
  memoryOnly?: DropTally,
  releasedThrough?: string,
): Buffer {
  return Buffer.from(
    encodeExactJson({
      overflow,
      held,
      ...(releasedThrough === undefined ? {} : { releasedThrough }),
      ...(drops === undefined ? {} : { drops: { ...drops, reasons: [...drops.reasons] } }),
      ...(memoryOnly === undefined ? {} : { memoryOnly: { ...memoryOnly, reasons: [...memoryOnly.reasons] } }),
      ...(coalesced.length === 0
        ? {}
        : {
            coalesced: coalesced.map(({ id, count, first, last }) => ({
              ...(id === undefined ? {} : { id }),
              count,
              first,
              last,
            })),
          }),
    }),
    "utf8",
  );
}

/** A reserve record's `coalesced` runs (those that decode: a count and two entries). */
function decodeCoalesced(value: unknown): CoalescedRun[] {
  if (!Array.isArray(value)) return [];
  const isEntry = (entry: unknown): entry is AuditEntry =>
    typeof entry === "object" &&
    entry !== null &&
    typeof (entry as AuditEntry).id === "string" &&
    typeof (entry as AuditEntry).at === "number";
  const runs: CoalescedRun[] = [];
  for (const raw of value as unknown[]) {
    const { id, count, first, last } = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    if (Number.isSafeInteger(count) && (count as number) > 0 && isEntry(first) && isEntry(last)) {
      runs.push({ ...(typeof id === "string" ? { id } : {}), count: count as number, first, last });
    }
  }
  return runs;
}

/**
 * A collapsed bucket's `parts` read back: each `[id, count]` with a count of 1 or more and an id
 * not seen before in it; undefined (none) when they add up to more than the bucket's `count`. A
 * record the writer made always passes; a damaged or edited one cannot make a start take off more
 * than the bucket holds, or one summary's count twice (adv15q LOW-1).
 */
function decodeParts(parts: readonly unknown[], count: number): (readonly [string, number])[] | undefined {
  const seen = new Set<string>();
  const kept: (readonly [string, number])[] = [];
  let sum = 0;
  for (const part of parts) {
    if (!Array.isArray(part) || typeof part[0] !== "string" || !Number.isSafeInteger(part[1])) continue;
    const [id, partCount] = part as [string, number];
    if (partCount < 1 || seen.has(id)) continue;
    seen.add(id);
    sum += partCount;
    kept.push([id, partCount]);
  }
  return sum > count ? undefined : kept;
}

/**
 * The ids of the summary entries that stand for these counts (fix15p, adv15o MEDIUM-1): each
 * overflow bucket's (and, in a collapsed bucket, each merged one's), each coalesced run's (a run
 * of one: its entry's too) and the drop tally's. A summary with one of these ids is not stored
 * while a reserve record that holds its count is the last one written, and a next start drops a
 * count whose summary it finds in the journal: so each count is summarized once.
 */
export function summaryIdsOf(
  overflow: Iterable<DenialOverflow>,
  coalesced: Iterable<CoalescedRun>,
  drops: DropTally | undefined,
): Set<string> {
  const ids = new Set<string>();
  for (const bucket of overflow) {
    if (bucket.id !== undefined) ids.add(bucket.id);
    for (const [id] of bucket.parts ?? []) ids.add(id);
  }
  for (const run of coalesced) {
    if (run.id !== undefined) ids.add(run.id);
    if (run.count === 1) ids.add(run.first.id);
  }
  if (drops?.id !== undefined) ids.add(drops.id);
  return ids;
}

/** A run of entries of one kind coalesced while the backlog was full: how many, the first and the last (by time). */
export interface CoalescedRun {
  /**
   * The id its `audit.coalesce` summary entry takes (a run of one is its entry, with that entry's
   * id), kept in the reserve's record (fix15p). Absent only in a record an earlier version wrote.
   */
  id?: string;
  count: number;
  first: AuditEntry;
  last: AuditEntry;
}

/** Entries dropped and not yet summarized: their count, the first and last known (id, time), why. */
export interface DropTally {
  /** The id its `audit.drop` summary entry takes, kept in the reserve's record (fix15p). */
  id?: string;
  count: number;
  first?: { readonly id: string; readonly at: number };
  last?: { readonly id: string; readonly at: number };
  /** The first {@link OVERFLOW_NAMES} reasons. */
  readonly reasons: Set<string>;
}

/**
 * The tally of `entries` held only in memory (no room in the journal or the reserve), in a
 * reserve record's `memoryOnly`; undefined when there are none. Its reason names the first
 * {@link MEMORY_ONLY_NAMES} actions and principals, so the `audit.drop` summary a next start makes
 * of it says whose commands the trail lost.
 */
export function memoryOnlyTally(entries: readonly AuditEntry[]): DropTally | undefined {
  if (entries.length === 0) return undefined;
  const names = (pick: (entry: AuditEntry) => string): string => {
    const found = [...new Set(entries.map(pick))];
    return found.slice(0, MEMORY_ONLY_NAMES).join(", ") + (found.length > MEMORY_ONLY_NAMES ? ", ..." : "");
  };
  const byTime = [...entries].sort((a, b) => a.at - b.at);
  return {
    count: entries.length,
    first: { id: byTime[0]!.id, at: byTime[0]!.at },
    last: { id: byTime.at(-1)!.id, at: byTime.at(-1)!.at },
    reasons: new Set([
      `entries held only in memory (the audit journal and its reserve had no room) when the process ended ` +
        `before the audit store took them: ${names((entry) => entry.action)} by ${names((entry) => entry.principal)}`,
    ]),
  };
}

/** Most actions and principals the reason of a {@link memoryOnlyTally} names. */
const MEMORY_ONLY_NAMES = 4;

/** A reserve record's `drops`, or undefined when absent or not decodable. */
function decodeDrops(value: unknown): DropTally | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { id, count, first, last, reasons } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(count) || (count as number) <= 0) return undefined;
  const point = (raw: unknown) => {
    const { id, at } = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    return typeof id === "string" && typeof at === "number" ? { id, at } : undefined;
  };
  const firstPoint = point(first);
  const lastPoint = point(last);
  return {
    ...(typeof id === "string" ? { id } : {}),
    count: count as number,
    ...(firstPoint === undefined ? {} : { first: firstPoint }),
    ...(lastPoint === undefined ? {} : { last: lastPoint }),
    reasons: new Set(
      Array.isArray(reasons) ? reasons.filter((reason): reason is string => typeof reason === "string") : [],
    ),
  };
}

/** The counts and entries of a reserve record, or undefined when there is none or it cannot be decoded. */
export function decodeReserve(payload: Buffer | undefined):
  | {
      overflow: Map<string, DenialOverflow>;
      held: AuditEntry[];
      drops: DropTally | undefined;
      coalesced: CoalescedRun[];
      /** Entries held only in memory when it was written: lost, if this is what a dead run left. */
      memoryOnly: DropTally | undefined;
      /** The id of the newest journal record dropped (released) when it was written, if any. */
      releasedThrough: string | undefined;
    }
  | undefined {
  if (payload === undefined) return undefined;
  try {
    const record = decodeExactJson(payload.toString("utf8")) as {
      overflow?: unknown;
      held?: unknown;
      drops?: unknown;
      coalesced?: unknown;
      memoryOnly?: unknown;
      releasedThrough?: unknown;
    } | null;
    if (typeof record !== "object" || record === null) return undefined;
    const overflow = decodeOverflow(Buffer.from(encodeExactJson(record.overflow ?? []), "utf8")) ?? new Map();
    const held = Array.isArray(record.held)
      ? (record.held as unknown[]).filter(
          (entry): entry is AuditEntry =>
            typeof entry === "object" && entry !== null && typeof (entry as AuditEntry).id === "string",
        )
      : [];
    return {
      overflow,
      held,
      drops: decodeDrops(record.drops),
      coalesced: decodeCoalesced(record.coalesced),
      memoryOnly: decodeDrops(record.memoryOnly),
      releasedThrough: typeof record.releasedThrough === "string" ? record.releasedThrough : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * All counts in one bucket naming at most {@link OVERFLOW_NAMES} principals (`named`, the default),
 * or none (`named: false`: what always fits the reserve, its last resort).
 */
export function collapseOverflow(
  overflow: ReadonlyMap<string, DenialOverflow>,
  { named = true, id }: { readonly named?: boolean; readonly id?: string } = {},
): Map<string, DenialOverflow> {
  const buckets = [...overflow.values()];
  if (buckets.length === 0) return new Map();
  // The merged bucket still names its first OVERFLOW_NAMES principals (fix15c): a count that
  // names nobody tells an auditor nothing about who was refused.
  const principals = new Set<string>();
  let morePrincipals = !named;
  for (const bucket of buckets) {
    morePrincipals ||= bucket.morePrincipals;
    for (const principal of bucket.principals) {
      if (named && principals.size < OVERFLOW_NAMES) principals.add(principal);
      else if (!principals.has(principal)) morePrincipals = true;
    }
  }
  return new Map([
    [
      OTHER_PRINCIPALS,
      {
        ...(id === undefined ? {} : { id }),
        // Each merged bucket's summary id and count (fix15p): its summary may be journaled already.
        parts: buckets.flatMap((bucket) => (bucket.id === undefined ? [] : [[bucket.id, bucket.count] as const])),
        count: buckets.reduce((sum, bucket) => sum + bucket.count, 0),
        first: Math.min(...buckets.map((bucket) => bucket.first)),
        last: Math.max(...buckets.map((bucket) => bucket.last)),
        principals,
        morePrincipals,
        actions: new Set<string>(),
        causes: new Set(buckets.flatMap((bucket) => [...bucket.causes]).slice(0, OVERFLOW_NAMES)),
      },
    ],
  ]);
}

/** The overflow counts as plain buckets (a reserve record's `overflow`, an earlier version's `<journal>.overflow` record). */
export function encodeOverflowBuckets(overflow: ReadonlyMap<string, DenialOverflow>): unknown[] {
  return [...overflow].map(([key, bucket]) => ({
    key,
    ...(bucket.id === undefined ? {} : { id: bucket.id }),
    ...(bucket.parts === undefined ? {} : { parts: bucket.parts.map(([id, count]) => [id, count]) }),
    count: bucket.count,
    first: bucket.first,
    last: bucket.last,
    principals: [...bucket.principals],
    morePrincipals: bucket.morePrincipals,
    actions: [...bucket.actions],
    causes: [...bucket.causes],
  }));
}

/** The overflow counts in a `<journal>.overflow` record, or undefined when it cannot be decoded. */
export function decodeOverflow(payload: Buffer): Map<string, DenialOverflow> | undefined {
  try {
    const buckets = decodeExactJson(payload.toString("utf8")) as unknown;
    if (!Array.isArray(buckets)) return undefined;
    const overflow = new Map<string, DenialOverflow>();
    for (const bucket of buckets as Record<string, unknown>[]) {
      const { key, id, parts, count, first, last, principals, morePrincipals, actions, causes } = bucket;
      if (
        typeof key !== "string" ||
        !Number.isSafeInteger(count) ||
        typeof first !== "number" ||
        typeof last !== "number" ||
        !Array.isArray(principals) ||
        !Array.isArray(actions)
      ) {
        return undefined;
      }
      // A count below 1 counts nothing (a damaged or edited record: it would take off others' counts).
      if ((count as number) < 1) continue;
      const merged = Array.isArray(parts) ? decodeParts(parts as unknown[], count as number) : undefined;
      overflow.set(key, {
        ...(typeof id === "string" ? { id } : {}),
        ...(merged === undefined ? {} : { parts: merged }),
        count: count as number,
        first,
        last,
        principals: new Set((principals as unknown[]).filter((name): name is string => typeof name === "string")),
        morePrincipals: morePrincipals === true,
        actions: new Set((actions as unknown[]).filter((name): name is string => typeof name === "string")),
        // Absent in a record an earlier version wrote.
        causes: new Set(
          (Array.isArray(causes) ? (causes as unknown[]) : []).filter(
            (cause): cause is string => typeof cause === "string",
          ),
        ),
      });
    }
    return overflow;
  } catch {
    return undefined;
  }
}

/**
 * What an evicted summary entry becomes in the drop tally: its count, span and why. `reported`:
 * the count was published by `audit-entry-drop` already (an `audit.drop` summary).
 */
export function foldedTally(entry: AuditEntry): { tally: DropTally; reported: boolean } {
  const value = (typeof entry.newValue === "object" && entry.newValue !== null ? entry.newValue : {}) as Record<
    string,
    unknown
  >;
  const count = Number.isSafeInteger(value["count"]) && (value["count"] as number) > 0 ? (value["count"] as number) : 1;
  if (entry.action === "audit.drop") {
    const point = (id: unknown, at: unknown) =>
      typeof id === "string" && typeof at === "number" ? { id, at } : undefined;
    const first = point(value["firstId"], value["first"]);
    const last = point(value["lastId"], value["last"]);
    const reasons = Array.isArray(value["reasons"]) ? value["reasons"].filter((r) => typeof r === "string") : [];
    return {
      tally: {
        count,
        ...(first === undefined ? {} : { first }),
        ...(last === undefined ? {} : { last }),
        reasons: new Set(reasons.length === 0 ? [entry.reason ?? "an earlier audit.drop summary"] : reasons),
      },
      reported: true,
    };
  }
  if (entry.action === "audit.coalesce") {
    return {
      tally: {
        count,
        reasons: new Set([
          `an audit.coalesce summary of ${count} ${typeof value["action"] === "string" ? value["action"] : "(unknown)"} ` +
            `entries by ${entry.principal} was dropped from the full audit backlog (drop-oldest)`,
        ]),
      },
      reported: false,
    };
  }
  const list = (key: string) =>
    Array.isArray(value[key]) ? (value[key] as unknown[]).filter((v) => typeof v === "string").join(", ") : "";
  return {
    tally: {
      count,
      reasons: new Set([
        `an audit.overflow summary of ${count} denied or failed attempt(s) by ${list("principals") || entry.principal}` +
          ` (${list("actions")}) was dropped from the full audit backlog (drop-oldest)`,
      ]),
    },
    reported: false,
  };
}

/** What a reserve that could not be opened holds, for its journal problem (empty when nothing). */
export function unopenedReserveText(found: UnopenedReserve | undefined): string {
  if (found === undefined) return "";
  const drops = found.drops > 0 ? ` and ${found.drops} dropped entr${found.drops === 1 ? "y" : "ies"}` : "";
  const lost =
    found.memoryOnly > 0
      ? `, ${found.memoryOnly} entr${found.memoryOnly === 1 ? "y" : "ies"} the run that ended held only in memory ` +
        "(lost; recorded as dropped once it opens)"
      : "";
  return (
    `; the reserve file of an earlier run, read without opening it and left as it is, holds ${found.overflow} ` +
    `counted denied attempt(s)${drops} not yet in summary entries (recorded once it opens)${lost} and ${found.held} ` +
    `held entr${found.held === 1 ? "y" : "ies"} (in the backlog)`
  );
}
