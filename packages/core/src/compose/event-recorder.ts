import type { KilnEvents } from "../events/catalogue";
import type { EventStore } from "@kiln/core/driver-kit";

/** Event types appended to the event store, by the aggregate id they carry. */
export const RECORDED_EVENTS: ReadonlySet<keyof KilnEvents> = new Set<keyof KilnEvents>(["machine-state-change"]);

/** What the event recorder could not store (`ControlSystemHealth.events`). */
export interface EventRecorderHealth {
  /** Events whose append failed (the store down, its breaker open, a timeout), since construction: each is not in the event store. */
  readonly notRecorded: number;
  /** The latest append failure, in words. */
  readonly lastError?: string;
}

/**
 * Appends recorded domain events from the bus to the event store, one aggregate's events in
 * order: each append waits for the previous one of its aggregate and uses the version it
 * produced (after a failure, the store's current version). An append is made once (not
 * idempotent); one that fails is counted ({@link health}), not retried (fix15z, adv15y).
 */
export class EventRecorder {
  readonly #events: EventStore;
  readonly #versions = new Map<string, Promise<number>>();
  #notRecorded = 0;
  #lastError: string | undefined;

  /** @param events the (guarded) event store. */
  constructor(events: EventStore) {
    this.#events = events;
  }

  /** Appends `event` when its type is recorded and it carries an aggregate id; otherwise does nothing. */
  record(type: keyof KilnEvents, event: KilnEvents[keyof KilnEvents]): Promise<void> | undefined {
    if (!RECORDED_EVENTS.has(type) || event.aggregateId === undefined) return undefined;
    const aggregateId = event.aggregateId;
    const {
      at,
      aggregateId: _aggregateId,
      ...payload
    } = event as KilnEvents[keyof KilnEvents] & Record<string, unknown>;
    const events = this.#events;
    const previous = this.#versions.get(aggregateId) ?? events.version(aggregateId);
    const next = previous
      .catch(() => events.version(aggregateId))
      .then((version) => events.append(aggregateId, version, [{ type, at, payload: toJson(payload) }]))
      .catch((error: unknown) => {
        this.#notRecorded++;
        this.#lastError = error instanceof Error ? error.message : String(error);
        throw error;
      });
    this.#versions.set(aggregateId, next);
    return next.then(() => undefined);
  }

  /** Events not stored so far (see {@link EventRecorderHealth}). */
  health(): EventRecorderHealth {
    return { notRecorded: this.#notRecorded, ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }) };
  }

  /** Resolves once every append started so far has settled. Never rejects. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#versions.values());
  }
}

/** A JSON copy of `payload`, with errors as `{ name, message }`. */
export function toJson(payload: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(payload, (_key, value: unknown) =>
      value instanceof Error ? { name: value.name, message: value.message } : value,
    ),
  ) as Record<string, unknown>;
}
