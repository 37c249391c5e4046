import type { KilnEvents } from "../events/catalogue";
import type { EventStore } from "@kiln/core/driver-kit";

/** Event types appended to the event store, by the aggregate id they carry. */
export const RECORDED_EVENTS: ReadonlySet<keyof KilnEvents> = new Set<keyof KilnEvents>(["machine-state-change"]);

/**
 * Appends recorded domain events from the bus to the event store, one aggregate's events in
 * order: each append waits for the previous one of its aggregate and uses the version it
 * produced (after a failure, the store's current version).
 */
export class EventRecorder {
  readonly #events: EventStore;
  readonly #versions = new Map<string, Promise<number>>();

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
      .then((version) => events.append(aggregateId, version, [{ type, at, payload: toJson(payload) }]));
    this.#versions.set(aggregateId, next);
    return next.then(() => undefined);
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
