import type { Sample } from "../domain/sample";
import type { TagValue } from "../domain/tags";
import type { CurrentValueTable } from "../cvt/current-value-table";
import type { Disposer } from "../events/event-bus";
import type { SafeWriteReservation } from "../compose/checked-write";

/** Who a write of a process is made for: the process, and the principal who started it. */
export interface WriteOrigin {
  /** The process id. */
  readonly processId: string;
  /** The id of the principal who started the process, when known. */
  readonly principal?: string;
}

/**
 * The device I/O a recipe executor uses. Bind `write` to the control system's checked,
 * audited write path (validation, access, breaker, timeout), and `current`/`onChange` to the
 * current value table.
 */
export interface RecipeIo {
  /**
   * Writes `value` to `tag`. `signal` aborts a write the process no longer needs; writes that
   * must complete (a pulse's off value, the safe state) are made without one, so the write path
   * should bound them with its own timeout. `origin` names the process (and its principal)
   * making the write, for logs and audit; every write of a process carries it.
   */
  write(
    tag: string,
    value: TagValue,
    signal?: AbortSignal,
    origin?: WriteOrigin,
    reservation?: SafeWriteReservation,
  ): Promise<void>;
  /**
   * Announces the safe state's write of `value` to `tag` before it is made (the control system
   * binds it to `TagWriter.reserveSafeWrite`); the reservation is passed to that {@link write}, or
   * released when the write is not made. Optional (review 15k).
   */
  reserveSafeWrite?(tag: string, value: TagValue): SafeWriteReservation;
  /**
   * Resolves once the writes to `tag` in flight (by any writer of the system) have settled;
   * undefined when none is (the control system binds it to `TagWriter.settled`). The safe state defers a write whose tag
   * is busy, so it lands last without holding the writes after it. Optional: without it the safe
   * state waits for nothing.
   */
  settled?(tag: string): Promise<void> | undefined;
  /** The current sample of `tag`, or undefined before its first value. */
  current(tag: string): Sample | undefined;
  /**
   * Why the current good sample of `tag` is too old to be trusted (the source-age rule of the
   * control system: its source has not advanced within the tag's `maxSourceAgeMs`), or undefined
   * when it is fresh or the tag has no limit. A `waitUntil` is not satisfied by a stale sample
   * (review 15e). Optional: without it every good sample counts.
   */
  stale?(tag: string): string | undefined;
  /** Calls `listener` with every new sample of `tag` until the returned disposer is called. */
  onChange(tag: string, listener: (sample: Sample) => void): Disposer;
}

/**
 * A {@link RecipeIo} reading a {@link CurrentValueTable} and writing through `write` (the
 * system's checked write path), with `settled` from the same write path and `stale` from the
 * system's source-age rule.
 */
export function tableRecipeIo(
  table: Pick<CurrentValueTable, "get" | "observe">,
  write: RecipeIo["write"],
  settled?: (tag: string) => Promise<void> | undefined,
  stale?: (tag: string) => string | undefined,
  reserveSafeWrite?: (tag: string, value: TagValue) => SafeWriteReservation,
): RecipeIo {
  return {
    write,
    ...(settled === undefined ? {} : { settled }),
    ...(stale === undefined ? {} : { stale }),
    ...(reserveSafeWrite === undefined ? {} : { reserveSafeWrite }),
    current: (tag) => table.get(tag),
    onChange: (tag, listener) => table.observe(tag, (change) => listener(change.sample)),
  };
}
