import { KilnError, KilnValidationError } from "../domain/errors";
import {
  frozenTagValue,
  sameTagValue,
  tagValueProblem,
  type Tag,
  type TagCatalog,
  type TagValue,
} from "../domain/tags";
import { abortError, raceAbort } from "../driver-kit/abort";
import type { PlcDriver } from "../ports/plc-driver";
import type { Clock } from "../ports/clock";
import type { GuardedDriver } from "../resilience/guarded-ports";
import type { SystemLifecycle, SystemState } from "./system-lifecycle";

/** Options of one {@link TagWriter.write}. */
export interface TagWriteOptions {
  /**
   * True for the writes of a running process (its steps and its safe state): accepted while the
   * system is `stopping` too, so the abort at `stop()` can write the safe state. Operator writes
   * are accepted only while `running`.
   */
  readonly duringStop?: boolean;
  /**
   * Checked at the last point before the write reaches the driver (after the writes made before
   * it to its tag have settled); throwing refuses the write, not sent. An operator write uses it
   * so a write issued before an interlock trip is never sent after it (adversarial review 15-2, M2).
   */
  readonly beforeSend?: () => void;
  /**
   * Told when this write's driver call settles after the write was answered (given up at its
   * timeout while the call was still out): `landed` true when the device took the value after
   * all. Not called for a write answered by its driver call (review 15f, LOW). Also told when the
   * driver call failed after its request may have been sent (`details.sent: true`, or a timeout or
   * abort that does not say `sent: false`): then `landed` is true and `unconfirmed` true, the
   * device may have taken the value (review 15g, M1).
   */
  readonly onLateSettle?: (settled: { readonly landed: boolean; readonly unconfirmed?: boolean }) => void;
  /** The process (and its principal) making the write: named when it lands late (review 15g, M3). */
  readonly origin?: { readonly processId: string; readonly principal?: string };
  /**
   * The safe state's announcement of this write ({@link TagWriter.reserveSafeWrite}): the write is
   * the safe state's own, never refused for the backlog of other writes (`maxCallsOutPerTag`;
   * bounded only by its own, see there), and what the tag must end with from the moment it was
   * announced (review 15k, H1/H2).
   */
  readonly reservation?: {
    readonly tag: string;
    release(): void;
    /**
     * True once the write made with this reservation joined a safe-state write of the same tag
     * and value still waiting for its answer (no call of its own; answered by that write; fix15s).
     */
    readonly joined?: boolean;
    /**
     * True while a write made now with this reservation would join (see `joined`): the safe state
     * then writes at once instead of deferring until the tag settles, which would wait for the
     * very write it joins (fix15s).
     */
    readonly joinable?: boolean;
  };
}

/**
 * A safe-state write announced before it is sent (see {@link TagWriter.reserveSafeWrite}): `tag`, the
 * tag the safe state writes, and `release()`, which withdraws the announcement of a write that will
 * not be made (idempotent; no effect once written). Pass it to the write as
 * {@link TagWriteOptions.reservation}. Internal name; the public signatures spell the shape out.
 */
export type SafeWriteReservation = NonNullable<TagWriteOptions["reservation"]>;

/** A write given up at its timeout whose driver call is still out: it may yet land at the device (review 15f, H2). */
export interface LateDeviceCall {
  /** The tag written. */
  readonly tag: string;
  /** The value the given-up call carries. */
  readonly value: TagValue;
  /** When the write was given up (ms since the Unix epoch, the writer's clock). */
  readonly since: number;
  /** The write's number in the writer's issue order (see {@link WatchesLateCalls.confirmedAfter}). */
  readonly sequence?: number;
  /** The process that made the write, when one did. */
  readonly origin?: { readonly processId: string; readonly principal?: string };
}

/**
 * A given-up write's driver call that settled late (review 15f, H2): `landed` true when the
 * device took it (or may have: `unconfirmed`). When it landed after a later-issued write to the tag
 * that may have landed, the value of the latest-issued such write is written again
 * (`reasserted`), so the device ends with the latest-issued value, never one older than a
 * safe-state write issued after it (review 15g); `reassertError` when that failed.
 */
export interface LateDeviceSettle extends LateDeviceCall {
  /** True when the device took the value after all (or may have); false when the driver's call failed. */
  readonly landed: boolean;
  /** True when the call failed after its request may have been sent: the device may have taken it (review 15g, M1). */
  readonly unconfirmed?: boolean;
  /** The later value written again after the late landing, when one had been written. */
  readonly reasserted?: TagValue;
  /** Why writing `reasserted` again failed, when it did. */
  readonly reassertError?: unknown;
}

/** Writes a value to a tag on the machine's PLC. Operator writes, recipe steps and the safe state all use it. */
export interface TagWriter {
  /**
   * Writes `value` to `tag`. Writes to one tag are sent in the order they are made, by whatever
   * writer (operator, process step, safe state, the next process): a write goes out once the
   * writes made before it to its tag have settled. `signal` cancels a write still waiting for
   * them (it is then not sent, and rejects with the signal's reason); once sent, a write is not cut
   * off (the request may be on the fieldbus): it settles within the driver's write timeout.
   * @throws `KILN_TAG_UNKNOWN`, `KILN_TAG_NOT_WRITABLE`, `KILN_OUT_OF_RANGE`, `KILN_VALIDATION`,
   *   `KILN_BUFFER_FULL` while too many writes of the tag are out (see `maxCallsOutPerTag`; for
   *   the safe state's own writes, too many of them: `details.safeState: true`),
   *   `KILN_LIFECYCLE` while the system is not running (for `duringStop` writes: not running or
   *   stopping), the signal's reason (aborted before it was sent), or the device's error
   *   (`KILN_TIMEOUT`, `KILN_CIRCUIT_OPEN`, `KILN_WRITE_REJECTED`...).
   */
  write(tag: string, value: TagValue, signal?: AbortSignal, options?: TagWriteOptions): Promise<void>;
  /**
   * Resolves once every write to `tag` made so far, and any made meanwhile, has settled (never
   * rejects); undefined when none is in flight. The safe state uses it to defer only the writes
   * whose tag is busy (adversarial review 15u). Optional: a writer without it keeps no order,
   * and the safe state then waits for nothing.
   */
  settled?(tag: string): Promise<void> | undefined;
  /**
   * Announces the safe state's write of `value` to `tag` before it is made (the safe state defers
   * a write whose tag is busy): from now until it settles, a late landing of an older value is
   * answered by that write, not by writing an older value again, and if it fails the safe value is
   * written again (review 15k, H2, M1). The reservation may say `joinable` (a write made with it
   * now would join the tag's pending safe-state write of the same value still waiting for its
   * answer: make it at once, do not wait for the tag to settle) and, after the write, `joined`
   * (it did: no call of its own, answered by that write; fix15s). Optional: a writer without it
   * keeps no ledger.
   */
  reserveSafeWrite?(
    tag: string,
    value: TagValue,
  ): { readonly tag: string; release(): void; readonly joined?: boolean; readonly joinable?: boolean };
}

/**
 * A writer that watches its given-up driver calls (the {@link CheckedTagWriter}): internal, the
 * control system uses it when the registered writer has it (review 15f, H2).
 */
export interface WatchesLateCalls {
  /** The given-up writes whose driver call is still out (health names them). */
  lateCalls(): readonly LateDeviceCall[];
  /** Subscribes to given-up driver calls settling later (see {@link LateDeviceSettle}); returns the unsubscribe. */
  onLateSettle(listener: (settle: LateDeviceSettle) => void): () => void;
  /**
   * Tags whose device may hold a value other than their latest write's: writing it again failed
   * or was given up. Each stays until a later write of the tag is confirmed (review 15g, H3).
   */
  unresolvedTags(): readonly UnresolvedTag[];
  /** True once a write of `tag` issued after write number `sequence` was confirmed at the device. */
  confirmedAfter(tag: string, sequence: number): boolean;
  /**
   * The number of the latest write issued or announced so far (the writer's issue order): a write
   * issued from now on has a greater one (see {@link confirmedAfter}; fix15s).
   */
  issued(): number;
  /**
   * Waits until every driver call made is settled (its outcome told to the listeners) and every
   * write still waiting its turn (a queued re-assert) has been sent or refused, at most
   * `timeoutMs`; resolves with how many calls are still out plus writes still queued (reviews
   * 15g H4, 15h H2).
   */
  drain(timeoutMs: number): Promise<number>;
  /** The tags whose re-assert is queued and not yet sent (what a bounded {@link drain} left; review 15h, H2). */
  queuedReasserts(): readonly string[];
}

/** A tag whose device may hold a stale value (see {@link WatchesLateCalls.unresolvedTags}). */
export interface UnresolvedTag {
  readonly tag: string;
  /**
   * True when a write of the value the tag must end with was tried and failed (or was given up);
   * false when none was tried: the safe state's own write of the tag is still to come (review 15j, M1).
   */
  readonly tried: boolean;
  /** Why: the failure of the write made to restore the value, or what is awaited. */
  readonly reason: string;
  /** When (ms since the Unix epoch, the writer's clock). */
  readonly since: number;
}

/** Options of {@link CheckedTagWriter}. */
export interface CheckedTagWriterOptions {
  /** The tag catalog the write is checked against. */
  readonly tags: TagCatalog;
  /** The guarded driver (timeout and the device breaker, applied by composition). */
  readonly driver: PlcDriver & Partial<Pick<GuardedDriver, "writeTracked">>;
  /** Writes are refused unless it is `running` (or `stopping`, for a process's writes). */
  readonly lifecycle: SystemLifecycle;
  /**
   * How long (ms) a tag stays busy after a write to it gave up (timed out) while the driver's
   * call may still land at the device: the next write to the tag (the safe state above all) is
   * held until that call settles, at most this long (review 15e). Needs `clock` and a driver with
   * `writeTracked` (the guarded driver). @default 0 (not held)
   */
  readonly lateWriteWaitMs?: number;
  /** The clock of `lateWriteWaitMs` (and of {@link LateDeviceCall.since}). */
  readonly clock?: Pick<Clock, "sleep" | "now">;
  /**
   * At most this many writes of one tag may be out at the device or waiting their turn: a further
   * write of the tag is refused `KILN_BUFFER_FULL` (`details: { tag, rule: "maxCallsOutPerTag",
   * limit }`) until some settle, so a driver that never settles (and ignores abort) cannot make the
   * ledger grow without end (adversarial review 15h, H4). The safe state's own writes (announced,
   * {@link TagWriter.reserveSafeWrite}) are not refused for that backlog (review 15k, H1): one
   * joins the tag's latest pending write when that is a safe-state write of the same value still
   * waiting for its answer (answered by it, no call added; at any count since fix15s); else it is sent, as long
   * as fewer than this many of the safe state's own writes of the tag are out or queued; past
   * that it is refused `KILN_BUFFER_FULL` with `details.safeState: true` (review 15m, H1). A
   * safe-state write already answered (given up at its timeout, refused) is never joined: a safe
   * state asked for again writes again. Anyone else's write of the safe value is bounded like any
   * write (review 15k, M2).
   * @default 32
   */
  readonly maxCallsOutPerTag?: number;
  /**
   * The device-call order shared with acquisition's reads (`CvtChange.readIssued`): taken when a
   * write's call settles having landed (or maybe landed), so {@link CheckedTagWriter.quietSince}
   * can tell whether a read issued at some point could have sampled the device before a write
   * took effect (ADR 0042, amendment fix15z). Without it `quietSince` is false while any write
   * of the tag ever landed.
   */
  readonly order?: () => number;
}

/**
 * The checked write path: the tag exists, is writable, the value fits its type and range, the
 * system is running; only then the guarded driver's `write` (once: a write is not idempotent).
 * The one place writes to a tag are put in order: chained per tag, for every writer of the
 * system (adversarial reviews 15t, 15s).
 */
export class CheckedTagWriter implements TagWriter, WatchesLateCalls {
  readonly #options: CheckedTagWriterOptions;
  /** The last write made to each tag, settled (never rejects); removed once nothing follows it. */
  readonly #tails = new Map<string, Promise<void | undefined>>();
  /** The tails that are the writer's own re-asserts (see {@link settled}). */
  readonly #reassertTails = new WeakSet<Promise<void | undefined>>();
  /** Numbers the driver calls in the order they are made. */
  #sequence = 0;
  /**
   * Per tag: the writes issued to it, in issue order, while any of them may still land (review
   * 15g): the device must end with the value of the latest-issued write that may have landed.
   */
  readonly #ledger = new Map<string, LedgerEntry[]>();
  /** The ledger entry of each announced safe-state write ({@link reserveSafeWrite}). */
  readonly #reservations = new WeakMap<SafeWriteReservation, LedgerEntry>();
  /** Tags whose device may hold a value other than their latest write's, with why (review 15g, H3). */
  readonly #unresolved = new Map<string, UnresolvedTag>();
  /** Per tag: the number of the latest write confirmed as the tag's latest intent. */
  readonly #confirmed = new Map<string, number>();
  /** Per tag, the device-call order ({@link CheckedTagWriterOptions.order}) when a call of it last settled landed or maybe landed. */
  readonly #landedOrder = new Map<string, number>();
  /** Given-up writes whose driver call is still out. */
  readonly #late = new Set<LateDeviceCall>();
  /** Every driver call made and not yet settled (a stop waits for them, bounded; review 15g, H4). */
  readonly #out = new Set<Promise<unknown>>();
  readonly #lateListeners = new Set<(settle: LateDeviceSettle) => void>();
  /**
   * Per tag: the re-assert queued and not yet decided (its value is chosen right before it is
   * sent, so one covers every landing meanwhile; review 15h, M1).
   */
  readonly #queuedReasserts = new Map<string, Promise<{ reasserted?: TagValue; reassertError?: unknown }>>();

  constructor(options: CheckedTagWriterOptions) {
    this.#options = options;
  }

  /** @inheritDoc TagWriter.write */
  write(tag: string, value: TagValue, signal?: AbortSignal, options: TagWriteOptions = {}): Promise<void> {
    const { tags, lifecycle } = this.#options;
    const accepted = options.duringStop === true ? PROCESS_WRITE_STATES : OPERATOR_WRITE_STATES;
    // An array (or a typed array) goes on as a frozen copy: checked once, it cannot change afterwards.
    const written = frozenTagValue(value);
    const reserved = this.#reservedEntry(tag, options.reservation);
    let joined: Promise<TagValue | undefined> | undefined;
    try {
      checkTagWrite(tags, lifecycle, tag, written, accepted);
      if (signal?.aborted === true) throw abortError(signal, `the write to ${tag}`);
      if (reserved === undefined) this.#checkCallsOut(tag);
      else joined = this.#joinedSafeWrite(tag, written, reserved);
    } catch (error) {
      options.reservation?.release();
      return Promise.reject(error as Error);
    }
    if (joined !== undefined) return joined.then(() => undefined);
    return this.#issue(tag, () => written, signal, options, false, written, reserved).then(() => undefined);
  }

  /** @inheritDoc TagWriter.reserveSafeWrite */
  reserveSafeWrite(tag: string, value: TagValue): SafeWriteReservation {
    const entry: LedgerEntry = {
      sequence: ++this.#sequence,
      requested: frozenTagValue(value),
      value: undefined,
      state: "queued",
      reassert: false,
      safe: true,
      reserved: true,
    };
    const ledger = this.#ledger.get(tag) ?? [];
    ledger.push(entry);
    this.#ledger.set(tag, ledger);
    const joinable = (): boolean =>
      entry.reserved === true && this.#joinable(tag, entry.requested as TagValue, entry) !== undefined;
    const reservation: SafeWriteReservation = {
      tag,
      get joined() {
        return entry.joined === true;
      },
      get joinable() {
        return joinable();
      },
      release: () => {
        if (entry.reserved !== true) return;
        entry.reserved = false;
        this.#fail(tag, entry);
      },
    };
    this.#reservations.set(reservation, entry);
    return reservation;
  }

  /** The ledger entry `reservation` announced for `tag`, while it is not issued yet. */
  #reservedEntry(tag: string, reservation: SafeWriteReservation | undefined): LedgerEntry | undefined {
    if (reservation === undefined || reservation.tag !== tag) return undefined;
    const entry = this.#reservations.get(reservation);
    return entry?.reserved === true ? entry : undefined;
  }

  /**
   * A safe-state write joins the tag's latest pending write when that is a safe-state write of
   * the same value **still waiting for its answer** (not sent yet, or sent and within its
   * timeout), at any count: answered by it, no call added (fix15s, review 15q: each press of a
   * stop, fault or abort re-driving a failed safe state queued a write of its own behind the one
   * still out). A safe-state write already answered (given up at its timeout, refused) is never
   * joined: a safe state asked for again then writes again, with its own answer (review 15m, H1).
   * Past the per-tag bound the safe state's write still goes (never refused for the backlog of
   * other writes, review 15k H1), but at most `maxCallsOutPerTag` of the safe state's own writes of
   * the tag may be out or queued on top: past them it is refused `KILN_BUFFER_FULL`
   * (`details.safeState: true`), a new refusal of its own, never an earlier write's answer
   * (reviews 15i H1, 15m H1). Undefined: issue it.
   * @throws `KILN_BUFFER_FULL` past both bounds.
   */
  #joinedSafeWrite(tag: string, value: TagValue, reserved: LedgerEntry): Promise<TagValue | undefined> | undefined {
    const { maxCallsOutPerTag: limit = 32 } = this.#options;
    const ledger = this.#ledger.get(tag) ?? [];
    const pending = ledger.filter((entry) => entry !== reserved && (entry.state === "queued" || entry.state === "out"));
    const latest = this.#joinable(tag, value, reserved);
    if (latest?.sent !== undefined) {
      reserved.reserved = false;
      reserved.joined = true;
      ledger.splice(ledger.indexOf(reserved), 1);
      return latest.sent;
    }
    if (pending.length < limit) return undefined;
    // Announced writes not made yet are not out: only the safe state's writes issued count.
    const safeOut = pending.filter((entry) => entry.safe && entry.sent !== undefined).length;
    if (safeOut < limit) return undefined;
    throw new KilnError(
      "KILN_BUFFER_FULL",
      `Cannot write the safe state's ${String(value)} to ${tag}: ${pending.length} writes of it are out at the device or waiting their turn, ${safeOut} of them the safe state's own (at most ${limit} of each, maxCallsOutPerTag): the device is not settling writes of ${tag}.`,
      { details: { tag, rule: "maxCallsOutPerTag", limit, out: pending.length, safeState: true } },
    );
  }

  /**
   * The tag's latest pending write (other than `reserved`) when it is a safe-state write of
   * `value` issued and still waiting for its answer: a safe-state write of `value` made now joins it.
   */
  #joinable(tag: string, value: TagValue, reserved: LedgerEntry): LedgerEntry | undefined {
    const ledger = this.#ledger.get(tag) ?? [];
    let latest: LedgerEntry | undefined;
    for (let index = ledger.length - 1; index >= 0 && latest === undefined; index--) {
      const entry = ledger[index]!;
      if (entry !== reserved && (entry.state === "queued" || entry.state === "out")) latest = entry;
    }
    return latest?.safe === true &&
      latest.sent !== undefined &&
      latest.answered !== true &&
      sameTagValue(latest.value ?? latest.requested, value)
      ? latest
      : undefined;
  }

  /**
   * Issues a write to `tag` in the tag's order; `valueAt` gives its value right before it is sent
   * (undefined: not sent). Resolves with the value sent.
   */
  #issue(
    tag: string,
    valueAt: (sequence: number) => TagValue | undefined,
    signal: AbortSignal | undefined,
    options: TagWriteOptions,
    reassert = false,
    requested?: TagValue,
    reserved?: LedgerEntry,
  ): Promise<TagValue | undefined> {
    const { tags, driver, lifecycle } = this.#options;
    const accepted = options.duringStop === true ? PROCESS_WRITE_STATES : OPERATOR_WRITE_STATES;
    const before = this.#tails.get(tag);
    const ledger = this.#ledger.get(tag) ?? [];
    let entry: LedgerEntry;
    if (reserved !== undefined) {
      // The announced safe-state write takes its place in the issue order now, the order it is sent in.
      ledger.splice(ledger.indexOf(reserved), 1);
      reserved.sequence = ++this.#sequence;
      reserved.reserved = false;
      entry = reserved;
    } else {
      entry = { sequence: ++this.#sequence, requested, value: undefined, state: "queued", reassert, safe: false };
    }
    ledger.push(entry);
    this.#ledger.set(tag, ledger);
    // The driver's own call, when it may outlive this write's answer (a timeout): see lateWriteWaitMs.
    let deviceCall: Promise<DeviceOutcome | undefined> | undefined;
    const send = async (): Promise<TagValue | undefined> => {
      if (before !== undefined) await raceAbort(before, signal, `the write to ${tag}`);
      const value = valueAt(entry.sequence);
      if (value === undefined) return undefined;
      // It may have waited: the system may have begun to stop meanwhile.
      const definition = checkTagWrite(tags, lifecycle, tag, value, accepted);
      options.beforeSend?.();
      entry.value = value;
      entry.state = "out";
      const { lateWriteWaitMs = 0, clock } = this.#options;
      if (lateWriteWaitMs > 0 && clock !== undefined && driver.writeTracked !== undefined) {
        const tracked = driver.writeTracked(definition, value);
        deviceCall = tracked.device;
        this.#trackOut(deviceCall);
        await tracked.result;
      } else {
        const call = driver.write(definition, value).then(
          () => "landed" as const,
          (error: unknown) => {
            throw error;
          },
        );
        deviceCall = call.then(
          (outcome) => outcome,
          (error: unknown) => deviceOutcomeOf(error),
        );
        this.#trackOut(deviceCall);
        await call;
      }
      return value;
    };
    const sent = send();
    entry.sent = sent;
    sent.then(
      () => {
        entry.answered = true;
        if (deviceCall === undefined) this.#fail(tag, entry);
        else void deviceCall.then((outcome) => this.#settle(tag, entry, outcome ?? "failed", undefined));
      },
      (error: unknown) => {
        entry.answered = true;
        if (deviceCall === undefined) {
          this.#fail(tag, entry);
          return;
        }
        // Given up at its timeout with the driver's call still out: it may land later.
        const gaveUp = KilnError.is(error) && error.code === "KILN_TIMEOUT";
        const call: LateDeviceCall = {
          tag,
          value: entry.value as TagValue,
          since: this.#options.clock?.now() ?? Number.NaN,
          sequence: entry.sequence,
          ...(options.origin === undefined ? {} : { origin: options.origin }),
        };
        if (gaveUp) this.#late.add(call);
        void deviceCall.then((outcome) => {
          this.#late.delete(call);
          // Not called (the breaker was open): nothing was out.
          if (outcome === undefined) this.#fail(tag, entry);
          // Answered with the device's refusal: nothing late to tell.
          else if (outcome === "failed" && !gaveUp) this.#settle(tag, entry, outcome, undefined);
          else this.#settle(tag, entry, outcome, { call, onLateSettle: options.onLateSettle });
        });
      },
    );
    // Settles once this write has (or, not sent, once the one before it has); never rejects. A
    // write that gave up with the driver's call still out, or whose call failed after the request
    // was sent (review 15g, M1), keeps the tag busy until that call settles, at most
    // lateWriteWaitMs: the next write to the tag (a safe state) lands after it, not before (review 15e).
    const settled = Promise.all([before, sent]).then(
      () => undefined,
      () =>
        deviceCall === undefined
          ? before
          : this.#lateWrite(deviceCall.then((outcome) => (outcome === "unknown" ? NEVER : undefined))),
    );
    this.#tails.set(tag, settled);
    if (reassert) this.#reassertTails.add(settled);
    void settled.then(() => {
      if (this.#tails.get(tag) === settled) this.#tails.delete(tag);
    });
    if (reassert)
      sent.catch((error: unknown) => {
        // The device may hold a stale value until a later write of the tag is confirmed (review 15g, H3).
        this.#unresolved.set(tag, {
          tag,
          tried: true,
          reason: describe(error),
          since: this.#options.clock?.now() ?? Number.NaN,
        });
      });
    return sent;
  }

  #trackOut(call: Promise<unknown>): void {
    this.#out.add(call);
    void call.then(() => this.#out.delete(call));
  }

  /** A write not sent (refused, aborted, not called) or whose driver call failed: it cannot land. */
  #fail(tag: string, entry: LedgerEntry): void {
    entry.state = "failed";
    this.#afterSafeWriteFailed(tag, entry);
    this.#prune(tag);
  }

  /**
   * A safe-state write that failed while a late landing waited for it (health said "nothing was
   * written again yet"): the safe value is written again now (review 15k, M1).
   */
  #afterSafeWriteFailed(tag: string, entry: LedgerEntry): void {
    if (!entry.safe || this.#unresolved.get(tag)?.tried !== false || this.#queuedReasserts.has(tag)) return;
    const end = this.#mustEndWith(tag);
    if (end?.from === "safe-state-failed") void this.#rewrite(tag);
  }

  /**
   * What `tag` must end with (reviews 15j M1, 15k H2: one rule), judged on the writes issued before
   * `below`, latest first:
   * - **the safe state's own write** when it is the latest: `pending` while it is announced or
   *   waits its turn (it is sent after every write issued before it and will be the last); its
   *   value, to be written again, when it was tried and failed (`safe-state-failed`); else its
   *   value, as the latest write.
   * - **else the latest-issued write sent and not known to have failed** (one still out counts:
   *   writing its value again is harmless; one still queued will be sent after anyway); undefined
   *   when there is none.
   * A safe state that writes no value to the tag (a stop with no process) changes nothing here:
   * only a safe-state write actually announced does (review 15k, H2).
   */
  #mustEndWith(tag: string, below = Number.POSITIVE_INFINITY): EndValue | undefined {
    const ledger = this.#ledger.get(tag) ?? [];
    for (let index = ledger.length - 1; index >= 0; index--) {
      const entry = ledger[index]!;
      if (entry.sequence >= below) continue;
      if (entry.safe) {
        if (entry.reserved === true || entry.state === "queued")
          return { value: entry.requested as TagValue, from: "safe-state-pending" };
        if (entry.state === "failed") return { value: entry.requested as TagValue, from: "safe-state-failed" };
        return { value: entry.value ?? (entry.requested as TagValue), from: "latest", entry };
      }
      if (entry.state !== "failed" && entry.value !== undefined) return { value: entry.value, from: "latest", entry };
    }
    return undefined;
  }

  /** True when a safe-state write of `tag` issued or announced after write `sequence` has not failed: it will be the last. */
  #safeWriteFollows(tag: string, sequence: number): boolean {
    return (this.#ledger.get(tag) ?? []).some(
      (entry) => entry.safe && entry.sequence > sequence && entry.state !== "failed",
    );
  }

  /**
   * A write's driver call settled (`late`: the write had been answered first): when it may have
   * landed leaving the tag at another value than the one it must end with ({@link #mustEndWith}),
   * that value is written again, itself a write in the tag's order (reviews 15g, 15j). Then
   * `onLateSettle` and the listeners are told.
   */
  #settle(
    tag: string,
    entry: LedgerEntry,
    outcome: DeviceOutcome,
    late: { call: LateDeviceCall; onLateSettle: TagWriteOptions["onLateSettle"] } | undefined,
  ): void {
    entry.state = outcome;
    const landed = outcome !== "failed";
    const unconfirmed = outcome === "unknown";
    if (landed) this.#landedOrder.set(tag, this.#options.order?.() ?? Number.POSITIVE_INFINITY);
    let reassert: Promise<{ reasserted?: TagValue; reassertError?: unknown }> = Promise.resolve({});
    if (landed) {
      const end = this.#mustEndWith(tag);
      const queued = this.#queuedReasserts.get(tag);
      const differs = end !== undefined && !sameTagValue(end.value, entry.value);
      if (queued !== undefined) {
        // One re-assert per tag waits its turn at a time: its value is chosen when it is sent, so
        // it answers this landing too, and is reported (audited) once, with the landing that
        // queued it (review 15h, M1).
        reassert = queued.then(() => ({}));
      } else if (differs && end.from === "safe-state-pending") {
        // The safe state's own write of the tag is still to come, after this landing: it is the
        // re-write. Named until a later write is confirmed, in case it never comes (review 15j, M1).
        this.#unresolved.set(tag, {
          tag,
          tried: false,
          reason: `the device may hold ${String(entry.value)} until the safe state's write of ${String(end.value)} lands`,
          since: this.#options.clock?.now() ?? Number.NaN,
        });
      } else if (differs && (end.from === "safe-state-failed" || end.entry!.sequence > entry.sequence)) {
        reassert = this.#rewrite(tag);
      } else if (outcome === "landed" && !differs && end?.from === "latest") {
        this.#unresolved.delete(tag);
        this.#confirmed.set(tag, Math.max(this.#confirmed.get(tag) ?? 0, entry.sequence));
      }
    } else if (entry.reassert && !this.#unresolved.get(tag)?.tried) {
      this.#unresolved.set(tag, {
        tag,
        tried: true,
        reason: "writing the value again failed at the device",
        since: this.#options.clock?.now() ?? Number.NaN,
      });
    } else this.#afterSafeWriteFailed(tag, entry);
    this.#prune(tag);
    if (late === undefined) return;
    late.onLateSettle?.({ landed, ...(unconfirmed ? { unconfirmed } : {}) });
    void reassert.then((result) => {
      const event: LateDeviceSettle = { ...late.call, landed, ...(unconfirmed ? { unconfirmed } : {}), ...result };
      for (const listener of this.#lateListeners) {
        try {
          listener(event);
        } catch {
          // A listener's failure is its own.
        }
      }
    });
  }

  /**
   * Writes again what `tag` must end with ({@link #mustEndWith}), itself a write in the tag's order;
   * one queued per tag at a time (its value is chosen right before it is sent, so it answers every
   * landing meanwhile; review 15h, M1). Not sent when the safe state's write comes after it.
   */
  #rewrite(tag: string): Promise<{ reasserted?: TagValue; reassertError?: unknown }> {
    let reasserted: TagValue | undefined;
    const again = this.#issue(
      tag,
      (own) => {
        this.#queuedReasserts.delete(tag);
        // Decided right before it is sent: every write issued before it has then been sent or refused.
        if (this.#safeWriteFollows(tag, own)) return undefined;
        const chosen = this.#mustEndWith(tag, own);
        if (chosen?.from === "safe-state-pending") return undefined;
        reasserted = chosen?.value;
        return reasserted;
      },
      undefined,
      { duringStop: true },
      true,
    );
    const reassert = again.then(
      (value) => (value === undefined ? {} : { reasserted: value }),
      (failure: unknown) => ({ ...(reasserted === undefined ? {} : { reasserted }), reassertError: failure }),
    );
    this.#queuedReasserts.set(tag, reassert);
    void reassert.then(() => {
      if (this.#queuedReasserts.get(tag) === reassert) this.#queuedReasserts.delete(tag);
    });
    return reassert;
  }

  /** Refuses a write of `tag` while too many of its writes are out or queued (see {@link CheckedTagWriterOptions.maxCallsOutPerTag}). */
  #checkCallsOut(tag: string): void {
    const { maxCallsOutPerTag: limit = 32 } = this.#options;
    const out = (this.#ledger.get(tag) ?? []).filter(
      (entry) => entry.state === "queued" || entry.state === "out",
    ).length;
    if (out < limit) return;
    throw new KilnError(
      "KILN_BUFFER_FULL",
      `Cannot write ${tag}: ${out} writes of it are still out at the device or waiting their turn (at most ${limit}, maxCallsOutPerTag; only the safe state's own writes go past it); write again once they settle.`,
      { details: { tag, rule: "maxCallsOutPerTag", limit, out } },
    );
  }

  /**
   * Forgets a tag's ledger once none of its writes can land any more; meanwhile keeps only what
   * {@link #mustEndWith} can reach: the pending writes, and the settled ones up to the latest that
   * landed (or may have) or the latest settled safe-state write (it decides, whatever came
   * before it), so a call that never settles does not make the ledger grow with every later
   * write, nor with every safe state the device refuses (review 15m, M3).
   */
  #prune(tag: string): void {
    const ledger = this.#ledger.get(tag);
    if (ledger === undefined) return;
    const pending = (entry: LedgerEntry): boolean => entry.state === "queued" || entry.state === "out";
    if (!ledger.some(pending)) {
      this.#ledger.delete(tag);
      return;
    }
    const kept: LedgerEntry[] = [];
    let reached = false;
    for (let index = ledger.length - 1; index >= 0; index--) {
      const entry = ledger[index]!;
      if (pending(entry)) kept.push(entry);
      else if (!reached) {
        // A failed ordinary write is never what the tag must end with: dropped at once, so writes
        // the device refuses behind a call that never settles do not pile up (review 15k, M3).
        if (entry.state === "failed" && !entry.safe) continue;
        kept.push(entry);
        // A settled safe-state write is where #mustEndWith stops: an older failed one is never
        // reached, nor anything settled before it.
        reached = entry.state === "landed" || entry.state === "unknown" || entry.safe;
      }
    }
    this.#ledger.set(tag, kept.reverse());
  }

  /**
   * How many writes of `tag` the ledger holds (pending, and the settled ones {@link #mustEndWith}
   * can still reach). Internal, for tests of the ledger's bound (review 15m, M3).
   */
  ledgerSize(tag: string): number {
    return this.#ledger.get(tag)?.length ?? 0;
  }

  /** @inheritDoc WatchesLateCalls.lateCalls */
  lateCalls(): readonly LateDeviceCall[] {
    return [...this.#late];
  }

  /** @inheritDoc WatchesLateCalls.unresolvedTags */
  unresolvedTags(): readonly UnresolvedTag[] {
    return [...this.#unresolved.values()];
  }

  /** @inheritDoc WatchesLateCalls.confirmedAfter */
  confirmedAfter(tag: string, sequence: number): boolean {
    return (this.#confirmed.get(tag) ?? 0) > sequence;
  }

  /**
   * True when no write of `tag` is queued or out at the device now, and none settled landed (or
   * maybe landed) after the device-call order `since` ({@link CheckedTagWriterOptions.order}): a
   * read issued at `since` shows what the device holds, not a value a write changed since, nor
   * one a write still out may yet change (ADR 0042, amendment fix15z).
   */
  quietSince(tag: string, since: number): boolean {
    if ((this.#ledger.get(tag) ?? []).some((entry) => entry.state === "queued" || entry.state === "out")) return false;
    return (this.#landedOrder.get(tag) ?? Number.NEGATIVE_INFINITY) < since;
  }

  /** @inheritDoc WatchesLateCalls.issued */
  issued(): number {
    return this.#sequence;
  }

  /** @inheritDoc WatchesLateCalls.drain */
  async drain(timeoutMs: number): Promise<number> {
    const { clock } = this.#options;
    // Queued writes too (a re-assert behind a late-write wait), not only calls out (review 15h, H2).
    if ((this.#out.size === 0 && this.#tails.size === 0) || clock === undefined)
      return this.#out.size + this.#tails.size;
    const timer = new AbortController();
    try {
      await Promise.race([
        (async () => {
          // Writes still waiting their turn too: a re-assert queued behind a late-write wait.
          while (this.#out.size > 0 || this.#tails.size > 0) await Promise.all([...this.#out, ...this.#tails.values()]);
        })(),
        clock.sleep(timeoutMs, timer.signal).catch(() => undefined),
      ]);
    } finally {
      timer.abort();
    }
    // Told to the listeners (audited) before the caller goes on to close.
    await Promise.resolve();
    return this.#out.size + this.#tails.size;
  }

  /** @inheritDoc WatchesLateCalls.queuedReasserts */
  queuedReasserts(): readonly string[] {
    return [...this.#queuedReasserts.keys()];
  }

  /** @inheritDoc WatchesLateCalls.onLateSettle */
  onLateSettle(listener: (settle: LateDeviceSettle) => void): () => void {
    this.#lateListeners.add(listener);
    return () => void this.#lateListeners.delete(listener);
  }

  /** Resolves once `deviceCall` settles or lateWriteWaitMs has passed (never rejects). */
  async #lateWrite(deviceCall: Promise<unknown>): Promise<void> {
    const { lateWriteWaitMs = 0, clock } = this.#options;
    if (clock === undefined) return;
    const timer = new AbortController();
    try {
      await Promise.race([deviceCall, clock.sleep(lateWriteWaitMs, timer.signal).catch(() => undefined)]);
    } finally {
      timer.abort();
    }
  }

  /** @inheritDoc TagWriter.settled */
  settled(tag: string): Promise<void> | undefined {
    if (!this.#tails.has(tag)) return undefined;
    // Writes made meanwhile are waited for too, but not the writer's own re-asserts: a late landing
    // re-asserting with each settle would hold a safe state back without end (review 15h, H1).
    const drain = async (): Promise<void> => {
      await this.#tails.get(tag);
      for (
        let tail = this.#tails.get(tag);
        tail !== undefined && !this.#reassertTails.has(tail);
        tail = this.#tails.get(tag)
      )
        await tail;
    };
    return drain();
  }
}

/**
 * The checks of a tag write, before anything reaches a driver: the tag exists, is writable, the
 * value fits its type and range (for an array tag: its shape, its length and every element,
 * `KILN_VALIDATION` naming `value[3]`), the system is in one of `accepted` (default: running).
 * Returns the tag's definition.
 * @throws `KILN_TAG_UNKNOWN`, `KILN_TAG_NOT_WRITABLE`, `KILN_OUT_OF_RANGE`, `KILN_VALIDATION`,
 *   `KILN_LIFECYCLE`.
 */
export function checkTagWrite(
  tags: TagCatalog,
  lifecycle: SystemLifecycle,
  tag: string,
  value: TagValue,
  accepted: readonly SystemState[] = OPERATOR_WRITE_STATES,
): Tag {
  const definition = tags.find(tag);
  if (!definition) throw new KilnError("KILN_TAG_UNKNOWN", `No tag named "${tag}".`, { details: { tag } });
  if (definition.access !== "readwrite") {
    throw new KilnError(
      "KILN_TAG_NOT_WRITABLE",
      `Tag "${tag}" is read-only; declare it access: "readwrite" to write it.`,
      { details: { tag } },
    );
  }
  const problem = tagValueProblem(definition, value);
  if (problem !== undefined) {
    const { range } = definition;
    if (range && typeof value === "number" && Number.isFinite(value) && (value < range.min || value > range.max)) {
      throw new KilnError("KILN_OUT_OF_RANGE", `Cannot write ${tag}: ${problem.message}.`, {
        details: { tag, value, min: range.min, max: range.max },
      });
    }
    // An array tag's element names its index (value[3]); its range applies to every element.
    const path = problem.element === undefined ? "value" : `value[${problem.element}]`;
    throw new KilnValidationError(`write to ${tag}`, [{ path, message: problem.message }]);
  }
  if (!accepted.includes(lifecycle.state)) {
    throw new KilnError("KILN_LIFECYCLE", `Cannot write ${tag}: the control system is ${lifecycle.state}.`);
  }
  return definition;
}

/**
 * What became of a driver call: `landed` (it succeeded), `failed` (it failed before the request
 * was sent, or the device refused it), `unknown` (it failed after the request may have been sent:
 * the device may have taken the value; review 15g, M1).
 */
export type DeviceOutcome = "landed" | "failed" | "unknown";

/**
 * A driver call's rejection read by the driver contract (see `PlcDriver.write`): `details.sent:
 * true`, or a timeout or abort that does not say `details.sent: false`, means the request may
 * have reached the device (`unknown`); any other error is a failure (`failed`).
 */
export function deviceOutcomeOf(error: unknown): DeviceOutcome {
  if (!KilnError.is(error)) return "failed";
  const sent = (error.details as { sent?: unknown } | undefined)?.sent;
  if (sent === true) return "unknown";
  if (sent === false) return "failed";
  return error.code === "KILN_TIMEOUT" || error.code === "KILN_ABORTED" ? "unknown" : "failed";
}

/** What a tag must end with (see `CheckedTagWriter.#mustEndWith`). */
interface EndValue {
  readonly value: TagValue;
  /**
   * `latest`: the latest-issued write not known to have failed (`entry`, a safe-state write
   * among them); `safe-state-pending`: the safe state's write of the tag is announced or waits its
   * turn, after every write issued before it; `safe-state-failed`: it was tried and failed, the
   * safe value is to be written again.
   */
  readonly from: "latest" | "safe-state-pending" | "safe-state-failed";
  readonly entry?: LedgerEntry;
}

/** One write in a tag's ledger. */
interface LedgerEntry {
  /** Its place in the issue order (a safe-state write: moved to the end when it is issued). */
  sequence: number;
  /** The value asked for when the write was issued (undefined for a re-assert, decided when sent). */
  readonly requested: TagValue | undefined;
  /** The safe state's own write, announced by {@link CheckedTagWriter.reserveSafeWrite} (review 15k). */
  readonly safe: boolean;
  /** A safe-state write announced and not issued yet: its value is `requested`. */
  reserved?: boolean;
  /** An announced safe-state write that joined a pending one instead of being issued (fix15s). */
  joined?: boolean;
  /** The write's answer once issued (a safe-state write past the bound joins it while it is not `answered`). */
  sent?: Promise<TagValue | undefined>;
  /** True once `sent` settled: the write was answered (landed, refused, or given up at its timeout; review 15m, H1). */
  answered?: boolean;
  /** The value sent (undefined until it is). */
  value: TagValue | undefined;
  state: "queued" | "out" | DeviceOutcome;
  /** Written again by the writer itself after a late landing. */
  readonly reassert: boolean;
}

const NEVER = new Promise<never>(() => undefined);

function describe(error: unknown): string {
  return KilnError.is(error)
    ? `${error.code}: ${error.message}`
    : error instanceof Error
      ? error.message
      : String(error);
}

/** Operator writes: only while running; `stop()` closes the gate first. */
const OPERATOR_WRITE_STATES: readonly SystemState[] = ["running"];
/** A process's writes: also while stopping, so the abort at `stop()` writes the safe state. */
const PROCESS_WRITE_STATES: readonly SystemState[] = ["running", "stopping"];
