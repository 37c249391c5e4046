import type { Quality } from "../domain/quality";

/** Fields every Kiln event carries. */
export interface EventBase {
  /** When it happened, ms since the Unix epoch, from the system's clock. */
  readonly at: number;
  /**
   * The aggregate (machine, process, alarm) the event belongs to. Events with one are domain
   * events and are appended to the {@link EventStore} when the system has one.
   */
  readonly aggregateId?: string;
}

/** A circuit breaker's state. */
export type BreakerState = "closed" | "open" | "half-open";

/**
 * The catalogue of events Kiln publishes, by type name (kebab-case, noun-verb). The bus is
 * typed by this map, so `bus.on("process-end", (event) => event.reason)` is checked.
 */
export interface KilnEvents {
  /** A machine's state machine changed state. */
  "machine-state-change": EventBase & {
    readonly machineId: string;
    readonly model: string;
    readonly from: string;
    readonly to: string;
    readonly command: string;
  };
  /** A handler threw or rejected; the publisher and the other handlers were not affected. */
  "handler-error": EventBase & { readonly eventType: string; readonly error: unknown };
  /** A circuit breaker changed state. */
  "breaker-state-change": EventBase & {
    readonly breaker: string;
    readonly from: BreakerState;
    readonly to: BreakerState;
    readonly reason?: string;
  };
  /** Kiln lost communication with a PLC; its tags turned uncertain. */
  "plc-connection-lose": EventBase & { readonly driver: string; readonly reason: string };
  /** Communication with a PLC is back; fresh values follow. */
  "plc-connection-restore": EventBase & { readonly driver: string; readonly downtimeMs: number };
  /** A scan took longer than its period; the missed cycles were skipped. */
  "scan-overrun": EventBase & { readonly group: string; readonly missedCycles: number; readonly durationMs: number };
  /** A batch reached the store. */
  "batch-flush-end": EventBase & { readonly size: number; readonly durationMs: number; readonly attempts: number };
  /** A batch could not be written; it will be retried or spooled, never dropped silently. */
  "batch-flush-fail": EventBase & { readonly size: number; readonly attempt: number; readonly error: unknown };
  /** Samples were dropped under the `drop-oldest` overflow policy. */
  "samples-drop": EventBase & { readonly count: number; readonly reason: string };
  /** Samples were written to the on-disk spool because the store was unavailable. */
  "samples-spool": EventBase & { readonly count: number };
  /** Spooled samples were replayed into the store. */
  "spool-replay": EventBase & { readonly count: number };
  /** A tag's quality changed. */
  "tag-quality-change": EventBase & { readonly tag: string; readonly from: Quality; readonly to: Quality };
}

/** The type name of a Kiln event. */
export type KilnEventType = keyof KilnEvents;
