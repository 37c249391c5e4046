import { KilnValidationError, SystemClock, type Clock, type Tag, type ValidationIssue } from "@kiln/core";
import { reconnectDelay, TagListCache } from "@kiln/core/driver-kit";
import { MODBUS_AREAS, isBitArea, modbusTagAddress, type ModbusAddress, type ModbusArea } from "./modbus-address";

/** One thing to read: a tag's span in one area of one unit. */
export interface ModbusReadItem {
  /** Index of the tag in the array being read. */
  readonly index: number;
  /** Unit id (slave id). */
  readonly unitId: number;
  /** Data area. */
  readonly area: ModbusArea;
  /** First register or bit. */
  readonly address: number;
  /** Registers (register areas) or bits (bit areas) occupied. */
  readonly count: number;
}

/** One read request on the wire (function code 1, 2, 3 or 4) and the items it serves. */
export interface ModbusReadRequest {
  /** Unit id (slave id). */
  readonly unitId: number;
  /** Data area, which picks the function code. */
  readonly area: ModbusArea;
  /** First register or bit requested. */
  readonly address: number;
  /** Registers or bits requested. */
  readonly count: number;
  /** The items served, sorted by address. */
  readonly items: readonly ModbusReadItem[];
}

/** How requests may be formed. */
export interface ModbusReadLimits {
  /** Most registers per read (function codes 3 and 4); the protocol allows 125. @default 125 */
  readonly maxRegistersPerRead: number;
  /** Most bits per read (function codes 1 and 2); the protocol allows 2000. @default 2000 */
  readonly maxBitsPerRead: number;
  /** Most unused registers read through to join two register items into one request. @default 8 */
  readonly maxGap: number;
  /** Most unused bits read through to join two bit items into one request. @default 64 */
  readonly maxBitGap: number;
}

/** The protocol's limits and Kiln's default gaps. */
export const MODBUS_READ_LIMIT_DEFAULTS: ModbusReadLimits = Object.freeze({
  maxRegistersPerRead: 125,
  maxBitsPerRead: 2000,
  maxGap: 8,
  maxBitGap: 64,
});

/** An inclusive range of addresses in one area, optionally of one unit only. */
export interface ModbusAddressRange {
  /** The area. */
  readonly area: ModbusArea;
  /** First address of the range. */
  readonly start: number;
  /** Last address of the range (inclusive). */
  readonly end: number;
  /** Only this unit; every unit when undefined. */
  readonly unitId?: number;
}

/**
 * A boundary learned from the device: no request may cover both `from` and `to` (the device refused a
 * request that did, although it answered each side alone).
 */
export interface ModbusReadBarrier {
  /** Unit id. */
  readonly unitId: number;
  /** The area. */
  readonly area: ModbusArea;
  /** Last address of the left side. */
  readonly from: number;
  /** First address of the right side (greater than `from`). */
  readonly to: number;
}

/** Everything {@link planModbusReads} honours besides the items. */
export interface ModbusPlanSettings {
  /** Request size and gap limits. */
  readonly limits: ModbusReadLimits;
  /** Addresses a request must never read through (an item may still sit inside one). */
  readonly forbidden?: readonly ModbusAddressRange[];
  /** Boundaries no request may span. */
  readonly barriers?: readonly ModbusReadBarrier[];
}

interface Block {
  start: number;
  end: number;
  items: ModbusReadItem[];
}

const AREA_RANK: Readonly<Record<ModbusArea, number>> = Object.fromEntries(
  MODBUS_AREAS.map((area, index) => [area, index]),
) as Record<ModbusArea, number>;

/** The most registers or bits one request may cover in `area`. */
export function requestLimit(area: ModbusArea, limits: ModbusReadLimits): number {
  return isBitArea(area) ? limits.maxBitsPerRead : limits.maxRegistersPerRead;
}

function gapLimit(area: ModbusArea, limits: ModbusReadLimits): number {
  return isBitArea(area) ? limits.maxBitGap : limits.maxGap;
}

function itemEnd(item: ModbusReadItem): number {
  return item.address + item.count - 1;
}

function makeRequest(items: readonly ModbusReadItem[]): ModbusReadRequest {
  const first = items[0]!;
  let start = first.address;
  let end = itemEnd(first);
  for (const item of items) {
    if (item.address < start) start = item.address;
    const last = itemEnd(item);
    if (last > end) end = last;
  }
  return { unitId: first.unitId, area: first.area, address: start, count: end - start + 1, items };
}

/**
 * Coalesces items into as few read requests as the limits allow. Items are grouped by unit and area; in
 * each group, overlapping items form blocks, and consecutive blocks join a request while the request stays
 * within the protocol limit, the unused registers between them are at most `maxGap` (`maxBitGap` for bits),
 * none of those unused addresses is forbidden, and no learned barrier is spanned. Each constraint holds for
 * any run of consecutive blocks inside a valid request, so this greedy pass gives the fewest requests.
 *
 * Pure: the same input gives the same list, ordered by unit, area (coil, discrete input, input register,
 * holding register) and address.
 *
 * @throws RangeError when one item alone is larger than its area's request limit.
 */
export function planModbusReads(items: readonly ModbusReadItem[], settings: ModbusPlanSettings): ModbusReadRequest[] {
  const groups = new Map<string, ModbusReadItem[]>();
  for (const item of items) {
    const key = `${item.unitId}|${item.area}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(item);
  }
  const ordered = [...groups.values()].sort(
    (a, b) => a[0]!.unitId - b[0]!.unitId || AREA_RANK[a[0]!.area] - AREA_RANK[b[0]!.area],
  );
  const requests: ModbusReadRequest[] = [];
  for (const group of ordered) planGroup(group, settings, requests);
  return requests;
}

function planGroup(group: ModbusReadItem[], settings: ModbusPlanSettings, out: ModbusReadRequest[]): void {
  const { unitId, area } = group[0]!;
  const limit = requestLimit(area, settings.limits);
  const maxGap = gapLimit(area, settings.limits);
  const forbidden = (settings.forbidden ?? []).filter(
    (range) => range.area === area && (range.unitId === undefined || range.unitId === unitId),
  );
  const barriers = (settings.barriers ?? []).filter((barrier) => barrier.area === area && barrier.unitId === unitId);
  const sorted = [...group].sort((a, b) => a.address - b.address || b.count - a.count || a.index - b.index);

  const blocks: Block[] = [];
  for (const item of sorted) {
    if (item.count > limit) {
      throw new RangeError(`a ${item.count}-wide item cannot be read in one request (limit ${limit} in ${area})`);
    }
    const last = blocks[blocks.length - 1];
    const end = itemEnd(item);
    if (last && item.address <= last.end && Math.max(last.end, end) - last.start + 1 <= limit) {
      last.end = Math.max(last.end, end);
      last.items.push(item);
    } else blocks.push({ start: item.address, end, items: [item] });
  }

  const gapForbidden = (from: number, to: number): boolean =>
    from <= to && forbidden.some((range) => range.start <= to && range.end >= from);
  const spansBarrier = (start: number, end: number): boolean =>
    barriers.some((barrier) => barrier.from >= start && barrier.to <= end);

  let current: Block | undefined;
  for (const block of blocks) {
    if (current) {
      const gap = block.start - current.end - 1;
      const end = Math.max(current.end, block.end);
      if (
        gap <= maxGap &&
        end - current.start + 1 <= limit &&
        !gapForbidden(current.end + 1, block.start - 1) &&
        !spansBarrier(current.start, end)
      ) {
        current.end = end;
        current.items.push(...block.items);
        continue;
      }
      out.push(finish(current, unitId, area));
    }
    current = { start: block.start, end: block.end, items: [...block.items] };
  }
  if (current) out.push(finish(current, unitId, area));
}

function finish(block: Block, unitId: number, area: ModbusArea): ModbusReadRequest {
  return { unitId, area, address: block.start, count: block.end - block.start + 1, items: block.items };
}

/**
 * Splits a failed request into two halves by its items, preferring a split point between items that do not
 * overlap, nearest the middle. Returns undefined for a request with a single item.
 */
export function splitModbusReadRequest(
  request: ModbusReadRequest,
): readonly [ModbusReadRequest, ModbusReadRequest] | undefined {
  const items = request.items;
  if (items.length < 2) return undefined;
  const middle = Math.floor(items.length / 2);
  const prefixEnd: number[] = [];
  let running = -1;
  for (const item of items) {
    running = Math.max(running, itemEnd(item));
    prefixEnd.push(running);
  }
  let best = -1;
  for (let index = 1; index < items.length; index++) {
    if (prefixEnd[index - 1]! < items[index]!.address) {
      if (best === -1 || Math.abs(index - middle) < Math.abs(best - middle)) best = index;
    }
  }
  const at = best === -1 ? middle : best;
  return [makeRequest(items.slice(0, at)), makeRequest(items.slice(at))];
}

/** The result of reading one request, or one part of it after splitting. */
export type ModbusReadOutcome<TData> =
  | { readonly ok: true; readonly request: ModbusReadRequest; readonly data: TData }
  | { readonly ok: false; readonly request: ModbusReadRequest; readonly error: unknown };

/** What {@link readModbusRequest} needs besides the request. */
export interface ModbusSplitOptions {
  /** The exception code of `error` when it should split the request (illegal data address...), else undefined. */
  splitCode(error: unknown): number | undefined;
  /** Told which items the device refuses and which boundaries it refuses to read across. */
  readonly learner?: Pick<ModbusReadPlanner, "refused" | "learnBarrier">;
}

/**
 * Reads `request` with `read`; when it fails with a split-worthy exception, splits it in halves and reads
 * each, recursively, so one bad address costs about 2·log2(n) extra requests and poisons only itself. Items
 * refused alone are reported to `learner.refused` once the whole split is done: as proven only when some
 * other part of the same split was read and the refused part, read once more after the split, is refused
 * again (a device that refuses everything for a moment proves nothing about one address, also when the
 * moment ends during the split; such refusals count as unproven strikes across reads); two halves read fine alone after
 * refusing together are reported to `learner.learnBarrier`. Every other failure comes back as an outcome
 * with its error.
 *
 * @returns The outcomes, left to right; together they cover every item of `request` exactly once.
 */
export async function readModbusRequest<TData>(
  request: ModbusReadRequest,
  read: (request: ModbusReadRequest) => Promise<TData>,
  options: ModbusSplitOptions,
): Promise<ModbusReadOutcome<TData>[]> {
  let refusals: { item: ModbusReadItem; code: number }[] = [];
  const outcomes = await readSplitting(request, read, options, refusals);
  const split = outcomes.length > 1;
  if (split && refusals.length > 0 && outcomes.some((outcome) => outcome.ok)) {
    // Proof only if the refused parts are refused again now: a device whose blanket refusal ended
    // during the split (reloading its map) served the later parts, which "proved" the earlier ones
    // holes, bad for 30 s while the device served them.
    refusals = await confirmRefusals(outcomes, read, options, refusals);
  }
  const proven = refusals.length > 0 && outcomes.some((outcome) => outcome.ok);
  for (const { item, code } of refusals) options.learner?.refused(item, code, proven && split);
  return outcomes;
}

/**
 * Reads each refused part of a split once more, in place in `outcomes`: a part served now is an
 * outcome with its data and teaches nothing; a part refused again stays refused (the proof); a part
 * failing otherwise keeps that failure and teaches nothing. Returns the refusals still standing.
 */
async function confirmRefusals<TData>(
  outcomes: ModbusReadOutcome<TData>[],
  read: (request: ModbusReadRequest) => Promise<TData>,
  options: ModbusSplitOptions,
  refusals: readonly { item: ModbusReadItem; code: number }[],
): Promise<{ item: ModbusReadItem; code: number }[]> {
  const standing = new Set<ModbusReadItem>();
  for (let index = 0; index < outcomes.length; index++) {
    const outcome = outcomes[index]!;
    if (outcome.ok || options.splitCode(outcome.error) === undefined) continue;
    try {
      outcomes[index] = { ok: true, request: outcome.request, data: await read(outcome.request) };
    } catch (error) {
      outcomes[index] = { ok: false, request: outcome.request, error };
      if (options.splitCode(error) !== undefined) for (const item of outcome.request.items) standing.add(item);
    }
  }
  return refusals.filter(({ item }) => standing.has(item));
}

async function readSplitting<TData>(
  request: ModbusReadRequest,
  read: (request: ModbusReadRequest) => Promise<TData>,
  options: ModbusSplitOptions,
  refusals: { item: ModbusReadItem; code: number }[],
): Promise<ModbusReadOutcome<TData>[]> {
  try {
    return [{ ok: true, request, data: await read(request) }];
  } catch (error) {
    const code = options.splitCode(error);
    if (code === undefined) return [{ ok: false, request, error }];
    const halves = splitModbusReadRequest(request);
    if (!halves) {
      for (const item of request.items) refusals.push({ item, code });
      return [{ ok: false, request, error }];
    }
    const [left, right] = halves;
    const leftOutcomes = await readSplitting(left, read, options, refusals);
    const rightOutcomes = await readSplitting(right, read, options, refusals);
    if (leftOutcomes.length === 1 && leftOutcomes[0]!.ok && rightOutcomes.length === 1 && rightOutcomes[0]!.ok) {
      options.learner?.learnBarrier(left, right);
    }
    return [...leftOutcomes, ...rightOutcomes];
  }
}

/** An address the device refused, reported bad without traffic until `nextProbeAt`. */
export interface ModbusLearnedHole {
  /** Unit id. */
  readonly unitId: number;
  /** Area. */
  readonly area: ModbusArea;
  /** First address. */
  readonly address: number;
  /** Registers or bits. */
  readonly count: number;
  /** The Modbus exception code the device answered (2 or 3 by default). */
  readonly exceptionCode: number;
  /** When it was learned, ms since epoch on the planner's clock. */
  readonly learnedAt: number;
  /** When it is read again, ms since epoch: the probe interval grows with each relearning, up to `relearnAfterMs`. */
  readonly nextProbeAt: number;
}

/** What the read planner has learned from the device, for diagnostics. */
export interface ModbusLearnedMap {
  /** Items the device refused to read alone, each with its exception code and next probe. */
  readonly poisoned: readonly ModbusLearnedHole[];
  /** Boundaries the device refused to read across. */
  readonly barriers: readonly (ModbusReadBarrier & { readonly learnedAt: number })[];
}

/** The plan for one tag array. */
export interface ModbusReadPlan {
  /** Resolved address of each tag, by tag index. */
  readonly addresses: readonly ModbusAddress[];
  /** The requests to send, in order. */
  readonly requests: readonly ModbusReadRequest[];
  /** Tags not read because the device refused their address: tag index → the learned hole. */
  readonly poisoned: ReadonlyMap<number, ModbusLearnedHole>;
}

/** Options of {@link ModbusReadPlanner}. */
export interface ModbusReadPlannerOptions {
  /** Request size and gap limits. @default MODBUS_READ_LIMIT_DEFAULTS */
  readonly limits?: Partial<ModbusReadLimits>;
  /** Addresses never read through. */
  readonly forbidden?: readonly ModbusAddressRange[];
  /** Unit id of tags that do not give one. @default 1 */
  readonly defaultUnitId?: number;
  /**
   * Longest time a learned hole goes unread: it is probed first after `min(30 s, relearnAfterMs)`, then
   * after twice as long each time it is refused again, up to this. Barriers are forgotten after this long.
   * @default 600000
   */
  readonly relearnAfterMs?: number;
  /** Refusals of an item read alone (not proven by a split) in reads in a row before it is learned. @default 3 */
  readonly learnAfterRefusals?: number;
  /**
   * Least time (ms) from the first to the last of those refusals: refusals bunched closer than this (a device
   * refusing for a moment while it reloads its map) teach nothing, however many reads saw them. @default 10000
   */
  readonly learnRefusalSpanMs?: number;
  /** Source of time for learned entries. @default new SystemClock() */
  readonly clock?: Clock;
}

/**
 * Exception codes that say "not now" rather than "not here" (device failure, acknowledge, busy, gateway
 * path, gateway target): never learned as a hole, never split on.
 */
export const TRANSIENT_MODBUS_EXCEPTIONS: ReadonlySet<number> = new Set([4, 5, 6, 10, 11]);

interface CachedPlan {
  readonly version: number;
  readonly plan: ModbusReadPlan;
}

function poisonKey(item: Pick<ModbusReadItem, "unitId" | "area" | "address" | "count">): string {
  return `${item.unitId}|${item.area}|${item.address}|${item.count}`;
}

/**
 * Plans reads for tag arrays and remembers what the device taught it. A plan is computed once per tag array
 * (cached in a `WeakMap`, so the core's stable per-scan-group arrays cost one plan each) and recomputed only
 * when the learned map changes: an address the device refuses is poisoned (reported bad without traffic),
 * and a boundary it refuses to read across becomes a barrier. Learned entries expire after `relearnAfterMs`.
 *
 * @example
 * const planner = new ModbusReadPlanner({ limits: { maxGap: 4 } });
 * const plan = planner.plan(tags.list());
 * plan.requests.length; // requests per scan
 */
export class ModbusReadPlanner {
  readonly #settings: { limits: ModbusReadLimits; forbidden: readonly ModbusAddressRange[] };
  readonly #defaultUnitId: number;
  readonly #relearnAfterMs: number;
  readonly #clock: Clock;
  /** Hit only while the array holds the same tags in the same order (an array changed in place is planned anew). */
  readonly #cache = new TagListCache<CachedPlan>();
  readonly #addresses = new WeakMap<Tag, ModbusAddress>();
  readonly #poisoned = new Map<string, ModbusLearnedHole>();
  /** Times each hole was learned since the last `forget()`: the probe backoff's attempt number. */
  readonly #learnings = new Map<string, number>();
  /** Unproven refusals of an item read alone, in reads in a row, and when (clock ms) the first of them came. */
  readonly #strikes = new Map<string, { readonly count: number; readonly since: number }>();
  readonly #learnAfterRefusals: number;
  readonly #learnRefusalSpanMs: number;
  readonly #barriers = new Map<string, ModbusReadBarrier & { readonly learnedAt: number }>();
  /** Barriers seen once (a joined request refused, its halves served), not learned yet: a second sighting learns. */
  readonly #barrierSightings = new Map<string, ModbusReadBarrier>();
  #version = 0;

  constructor(options: ModbusReadPlannerOptions = {}) {
    const limits = { ...MODBUS_READ_LIMIT_DEFAULTS, ...options.limits };
    if (!(limits.maxRegistersPerRead >= 1 && limits.maxRegistersPerRead <= 125)) {
      throw new RangeError("maxRegistersPerRead must be 1..125");
    }
    if (!(limits.maxBitsPerRead >= 1 && limits.maxBitsPerRead <= 2000)) {
      throw new RangeError("maxBitsPerRead must be 1..2000");
    }
    this.#settings = { limits, forbidden: options.forbidden ?? [] };
    this.#defaultUnitId = options.defaultUnitId ?? 1;
    this.#relearnAfterMs = options.relearnAfterMs ?? 600_000;
    this.#learnAfterRefusals = options.learnAfterRefusals ?? 3;
    this.#learnRefusalSpanMs = options.learnRefusalSpanMs ?? 10_000;
    this.#clock = options.clock ?? new SystemClock();
  }

  /** The limits in force. */
  get limits(): ModbusReadLimits {
    return this.#settings.limits;
  }

  /**
   * The plan for `tags`, from cache when this array was planned before, still holds the same tags in the same
   * order, and nothing was learned since.
   * @throws KilnValidationError naming `<tag>.address` for every tag whose address is missing or invalid.
   */
  plan(tags: readonly Tag[]): ModbusReadPlan {
    this.#expire();
    const cached = this.#cache.get(tags);
    if (cached && cached.version === this.#version) return cached.plan;
    const plan = this.#build(tags);
    this.#cache.set(tags, { version: this.#version, plan });
    return plan;
  }

  /** The resolved address of `tag` (cached per tag object). */
  address(tag: Tag): ModbusAddress {
    let address = this.#addresses.get(tag);
    if (!address) {
      address = modbusTagAddress(tag);
      this.#addresses.set(tag, address);
    }
    return address;
  }

  /**
   * Marks `item`'s address as refused by the device: later plans report it bad without reading it until
   * its probe is due (after `min(30 s, relearnAfterMs)`, doubling with each relearning up to `relearnAfterMs`).
   */
  poison(item: Pick<ModbusReadItem, "unitId" | "area" | "address" | "count">, exceptionCode: number): void {
    const key = poisonKey(item);
    if (this.#poisoned.has(key)) return;
    const learnings = (this.#learnings.get(key) ?? 0) + 1;
    this.#learnings.set(key, learnings);
    this.#strikes.delete(key);
    const { unitId, area, address, count } = item;
    const learnedAt = this.#clock.now();
    const backoff = { initialDelayMs: Math.min(30_000, this.#relearnAfterMs), maxDelayMs: this.#relearnAfterMs };
    const nextProbeAt = learnedAt + reconnectDelay(learnings, { ...backoff, jitter: "none" });
    this.#poisoned.set(key, { unitId, area, address, count, exceptionCode, learnedAt, nextProbeAt });
    this.#version++;
  }

  /**
   * Records that the device refused `item` read alone with exception `exceptionCode`. It is learned as a
   * hole when `proven` (it was refused in a bigger request and again alone while a neighbour was served) or
   * after `learnAfterRefusals` refusals in reads in a row spread over at least `learnRefusalSpanMs` (a device
   * refusing for a moment proves nothing about one address, however fast it is scanned); never for the
   * transient codes 4, 5, 6, 10 and 11.
   */
  refused(
    item: Pick<ModbusReadItem, "unitId" | "area" | "address" | "count">,
    exceptionCode: number,
    proven: boolean,
  ): void {
    if (TRANSIENT_MODBUS_EXCEPTIONS.has(exceptionCode)) return;
    const key = poisonKey(item);
    const now = this.#clock.now();
    const before = this.#strikes.get(key);
    const strikes = { count: (before?.count ?? 0) + 1, since: before?.since ?? now };
    const spread = now - strikes.since >= this.#learnRefusalSpanMs;
    if (proven || (strikes.count >= this.#learnAfterRefusals && spread)) this.poison(item, exceptionCode);
    else this.#strikes.set(key, strikes);
  }

  /**
   * Records that the items of `request` were read: their unproven refusals no longer count, nor a barrier
   * seen once inside its range (the device served across it).
   */
  served(request: ModbusReadRequest): void {
    if (this.#barrierSightings.size > 0) {
      const end = request.address + request.count - 1;
      for (const [key, barrier] of this.#barrierSightings) {
        const inside = barrier.from >= request.address && barrier.to <= end;
        if (inside && barrier.unitId === request.unitId && barrier.area === request.area) {
          this.#barrierSightings.delete(key);
        }
      }
    }
    if (this.#strikes.size === 0) return;
    for (const item of request.items) this.#strikes.delete(poisonKey(item));
  }

  /**
   * Records that the device refused a request covering both `left` and `right` although it answered each
   * alone. The second time with no read served across it in between, later plans never join them again
   * (until `relearnAfterMs`); once is only remembered, as one refusal may be transient.
   */
  learnBarrier(left: ModbusReadRequest, right: ModbusReadRequest): void {
    const from = left.address + left.count - 1;
    const to = right.address;
    if (from >= to) return;
    const key = `${left.unitId}|${left.area}|${from}|${to}`;
    if (this.#barriers.has(key)) return;
    // Learned on its second sighting with no read across it between: one transient refusal (a device busy
    // for a moment answering exception 2 or 3) must not split the plan for relearnAfterMs.
    if (!this.#barrierSightings.has(key)) {
      this.#barrierSightings.set(key, { unitId: left.unitId, area: left.area, from, to });
      return;
    }
    this.#barrierSightings.delete(key);
    this.#barriers.set(key, { unitId: left.unitId, area: left.area, from, to, learnedAt: this.#clock.now() });
    this.#version++;
  }

  /** What has been learned so far. */
  get learned(): ModbusLearnedMap {
    this.#expire();
    return { poisoned: [...this.#poisoned.values()], barriers: [...this.#barriers.values()] };
  }

  /** Forgets everything learned (after a reconnect: it may be another device now); the next plans read every address again. */
  forget(): void {
    this.#learnings.clear();
    this.#strikes.clear();
    this.#barrierSightings.clear();
    if (this.#poisoned.size === 0 && this.#barriers.size === 0) return;
    this.#poisoned.clear();
    this.#barriers.clear();
    this.#version++;
  }

  #expire(): void {
    if (this.#poisoned.size === 0 && this.#barriers.size === 0) return;
    const now = this.#clock.now();
    const cutoff = now - this.#relearnAfterMs;
    let changed = false;
    for (const [key, entry] of this.#poisoned) {
      if (entry.nextProbeAt <= now) changed = this.#poisoned.delete(key) || changed;
    }
    for (const [key, entry] of this.#barriers) {
      if (entry.learnedAt <= cutoff) changed = this.#barriers.delete(key) || changed;
    }
    if (changed) this.#version++;
  }

  #build(tags: readonly Tag[]): ModbusReadPlan {
    const issues: ValidationIssue[] = [];
    const addresses: ModbusAddress[] = [];
    const items: ModbusReadItem[] = [];
    const poisoned = new Map<number, ModbusLearnedHole>();
    const limits = this.#settings.limits;
    tags.forEach((tag, index) => {
      let address: ModbusAddress;
      try {
        address = this.address(tag);
      } catch (error) {
        if (error instanceof KilnValidationError) {
          issues.push(...error.issues);
          return;
        }
        throw error;
      }
      addresses.push(address);
      const limit = requestLimit(address.area, limits);
      if (address.count > limit) {
        issues.push({
          path: `${tag.name}.address`,
          message: `the tag spans ${address.count} registers but one read may cover ${limit} (maxRegistersPerRead)`,
        });
        return;
      }
      const item: ModbusReadItem = {
        index,
        unitId: address.unitId ?? this.#defaultUnitId,
        area: address.area,
        address: address.address,
        count: address.count,
      };
      const poison = this.#poisoned.get(poisonKey(item));
      if (poison) poisoned.set(index, poison);
      else items.push(item);
    });
    if (issues.length > 0) throw new KilnValidationError("Modbus tag addresses", issues);
    // A poisoned address must not be read through as part of a gap either.
    const forbidden: ModbusAddressRange[] = [...this.#settings.forbidden];
    for (const entry of this.#poisoned.values()) {
      forbidden.push({
        unitId: entry.unitId,
        area: entry.area,
        start: entry.address,
        end: entry.address + entry.count - 1,
      });
    }
    const requests = planModbusReads(items, {
      limits: this.#settings.limits,
      forbidden,
      barriers: [...this.#barriers.values()],
    });
    return { addresses, requests, poisoned };
  }
}
