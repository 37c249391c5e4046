import { KilnError, KilnValidationError } from "../domain/errors";
import { frozenTagValue, tagValueProblem, type Tag, type TagCatalog, type TagValue } from "../domain/tags";
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
   * all. Not called for a write answered by its driver call (review 15f, LOW).
   */
  readonly onLateSettle?: (settled: { readonly landed: boolean }) => void;
}

/** A write given up at its timeout whose driver call is still out: it may yet land at the device (review 15f, H2). */
export interface LateDeviceCall {
  /** The tag written. */
  readonly tag: string;
  /** The value the given-up call carries. */
  readonly value: TagValue;
  /** When the write was given up (ms since the Unix epoch, the writer's clock). */
  readonly since: number;
}

/**
 * A given-up write's driver call that settled after its tag's next writes were sent (review 15f,
 * H2): `landed` true when the device took it. When it landed after a later write to the tag had
 * succeeded (a safe state above all), that later value is written again (`reasserted`), so the
 * device ends with the last value written, not the stale one; `reassertError` when that failed.
 */
export interface LateDeviceSettle extends LateDeviceCall {
  /** True when the device took the value after all; false when the driver's call failed. */
  readonly landed: boolean;
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
  /** Numbers the driver calls in the order they are made. */
  #sequence = 0;
  /** Per tag: the last write whose driver call succeeded, by its number. */
  readonly #lastWritten = new Map<string, { readonly sequence: number; readonly value: TagValue }>();
  /** Given-up writes whose driver call is still out. */
  readonly #late = new Set<LateDeviceCall>();
  readonly #lateListeners = new Set<(settle: LateDeviceSettle) => void>();

  constructor(options: CheckedTagWriterOptions) {
    this.#options = options;
  }

  /** @inheritDoc TagWriter.write */
  write(tag: string, value: TagValue, signal?: AbortSignal, options: TagWriteOptions = {}): Promise<void> {
    const { tags, driver, lifecycle } = this.#options;
    const accepted = options.duringStop === true ? PROCESS_WRITE_STATES : OPERATOR_WRITE_STATES;
    // An array (or a typed array) goes on as a frozen copy: checked once, it cannot change afterwards.
    const written = frozenTagValue(value);
    let definition: Tag;
    try {
      definition = checkTagWrite(tags, lifecycle, tag, written, accepted);
      if (signal?.aborted === true) throw abortError(signal, `the write to ${tag}`);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const before = this.#tails.get(tag);
    // The driver's own call, when it may outlive this write's answer (a timeout): see lateWriteWaitMs.
    let deviceCall: Promise<boolean | undefined> | undefined;
    /** This write's driver call's number (0 until it is made). */
    let sequence = 0;
    const send = async (): Promise<void> => {
      if (before !== undefined) {
        await raceAbort(before, signal, `the write to ${tag}`);
        // It waited: the system may have begun to stop meanwhile.
        checkTagWrite(tags, lifecycle, tag, written, accepted);
      }
      options.beforeSend?.();
      const { lateWriteWaitMs = 0, clock } = this.#options;
      sequence = ++this.#sequence;
      if (lateWriteWaitMs > 0 && clock !== undefined && driver.writeTracked !== undefined) {
        const tracked = driver.writeTracked(definition, written);
        deviceCall = tracked.device;
        await tracked.result;
      } else await driver.write(definition, written);
      if ((this.#lastWritten.get(tag)?.sequence ?? 0) < sequence)
        this.#lastWritten.set(tag, { sequence, value: written });
    };
    const sent = send();
    sent.catch((error: unknown) => {
      // Given up at its timeout with the driver's call still out: it may land later.
      const gaveUp = KilnError.is(error) && error.code === "KILN_TIMEOUT";
      if (gaveUp && deviceCall !== undefined) this.#watchLate(tag, written, sequence, deviceCall, options.onLateSettle);
    });
    // Settles once this write has (or, not sent, once the one before it has); never rejects. A
    // write that gave up with the driver's call still out keeps the tag busy until that call
    // settles, at most lateWriteWaitMs: the next write to the tag (a safe state) lands after it,
    // not before (review 15e).
    const settled = Promise.all([before, sent]).then(
      () => undefined,
      () => (deviceCall === undefined ? before : this.#lateWrite(deviceCall)),
    );
    this.#tails.set(tag, settled);
    void settled.then(() => {
      if (this.#tails.get(tag) === settled) this.#tails.delete(tag);
    });
    return sent;
  }

  /**
   * Watches a given-up write's driver call (`sequence`: its number) until it settles: named by
   * {@link lateCalls} meanwhile; then `onLateSettle` and the listeners are told, and when it
   * landed after a later write to the tag had succeeded, that later value is written again
   * (review 15f, H2).
   */
  #watchLate(
    tag: string,
    value: TagValue,
    sequence: number,
    deviceCall: Promise<boolean | undefined>,
    onLateSettle: TagWriteOptions["onLateSettle"],
  ): void {
    const call: LateDeviceCall = { tag, value, since: this.#options.clock?.now() ?? Number.NaN };
    this.#late.add(call);
    const settle = async (landed: boolean): Promise<void> => {
      this.#late.delete(call);
      onLateSettle?.({ landed });
      let reassert: { reasserted?: TagValue; reassertError?: unknown } = {};
      if (landed) {
        // The writes sent after it settle first: the last value written is the one to restore.
        await this.settled(tag);
        const later = this.#lastWritten.get(tag);
        if (later !== undefined && later.sequence > sequence) {
          try {
            await this.write(tag, later.value, undefined, { duringStop: true });
            reassert = { reasserted: later.value };
          } catch (failure) {
            reassert = { reasserted: later.value, reassertError: failure };
          }
        }
      }
      const event: LateDeviceSettle = { ...call, landed, ...reassert };
      for (const listener of this.#lateListeners) {
        try {
          listener(event);
        } catch {
          // A listener's failure is its own.
        }
      }
    };
    void deviceCall.then(async (outcome) => {
      // Not called (the breaker was open): nothing was out.
      if (outcome === undefined) this.#late.delete(call);
      else await settle(outcome);
    });
  }

  /** @inheritDoc WatchesLateCalls.lateCalls */
  lateCalls(): readonly LateDeviceCall[] {
    return [...this.#late];
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
    const drain = async (): Promise<void> => {
      for (let tail = this.#tails.get(tag); tail !== undefined; tail = this.#tails.get(tag)) await tail;
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

/** Operator writes: only while running; `stop()` closes the gate first. */
const OPERATOR_WRITE_STATES: readonly SystemState[] = ["running"];
/** A process's writes: also while stopping, so the abort at `stop()` writes the safe state. */
const PROCESS_WRITE_STATES: readonly SystemState[] = ["running", "stopping"];
