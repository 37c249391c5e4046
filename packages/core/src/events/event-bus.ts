// EventBus is homed in "@kiln/core/advanced"; what its declarations name from the main entry is
// imported by package name so the API reports show that home (ADR 0027).
import type { Disposer, EventBusView, EventHandler } from "@kiln/core";

export type { Disposer } from "../domain/disposer";
export type { EventBusView, EventHandler } from "./event-bus-view";

/** Receives every event that passes through a bus, after its handlers ran. */
export type EventTap<TEvents> = <TType extends keyof TEvents & string>(
  type: TType,
  event: TEvents[TType],
) => void | Promise<void>;

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * A deep frozen copy of the plain data in `value`: plain objects and arrays are copied and frozen
 * (cycles keep their shape); anything else (errors, class instances, functions) is passed as is.
 * Used so one published event is the same immutable fact for every handler and tap.
 */
function frozenCopy(value: unknown, seen = new Map<object, unknown>()): unknown {
  if (typeof value !== "object" || value === null) return value;
  const done = seen.get(value);
  if (done !== undefined) return done;
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    seen.set(value, copy);
    for (const item of value) copy.push(frozenCopy(item, seen));
    return Object.freeze(copy);
  }
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype !== Object.prototype && prototype !== null) return value;
  const copy: Record<string, unknown> = {};
  seen.set(value, copy);
  for (const key of Object.keys(value)) {
    // defineProperty: a "__proto__" key in an event's data stays data (an assignment would drop it).
    const item = frozenCopy((value as Record<string, unknown>)[key], seen);
    Object.defineProperty(copy, key, { value: item, enumerable: true, writable: true, configurable: true });
  }
  return Object.freeze(copy);
}

/**
 * A read-only view of `bus`: a separate frozen object whose methods forward to the bus's
 * subscription methods. A cast cannot reach `publish` through it: the bus is not reachable from it.
 * Each handler subscribed through the view receives its own deep-frozen copy of the event's plain
 * data, so host code cannot change the fact the system's own handlers, the event recorder and
 * other host handlers act on. The copy is made here, at the trust boundary, so the system's own
 * dispatch (the hot path) pays nothing for it.
 */
export function eventBusViewOf<TEvents extends object>(bus: EventBus<TEvents>): EventBusView<TEvents> {
  const copied =
    <TEvent>(handler: EventHandler<TEvent>): EventHandler<TEvent> =>
    (event) =>
      handler(frozenCopy(event) as TEvent);
  return Object.freeze({
    on: (type, handler) => bus.on(type, copied(handler)),
    once: (type, handler) => bus.once(type, copied(handler)),
    next: <TType extends keyof TEvents & string>(
      type: TType,
      predicate?: (event: TEvents[TType]) => boolean,
    ): Promise<TEvents[TType]> =>
      new Promise<TEvents[TType]>((resolve) => {
        const dispose = bus.on(
          type,
          copied<TEvents[TType]>((event) => {
            if (predicate !== undefined && !predicate(event)) return;
            dispose();
            resolve(event);
          }),
        );
      }),
  } satisfies EventBusView<TEvents>);
}

/**
 * A typed publish/subscribe bus. Handlers run in subscription order; synchronous ones run
 * inside `publish`. Handlers are isolated: one that throws or rejects never stops the others
 * or the publisher; its failure is published as `handler-error` (when the event map has that
 * type) and passed to `onHandlerError`. (Why not eventemitter3's `emit`: docs/adr/0003-event-bus.md.)
 *
 * @example
 * const bus = new EventBus<KilnEvents>();
 * const off = bus.on("process-end", (event) => console.log(event.reason));
 * await bus.publish("process-end", { ... });
 * off();
 */
export class EventBus<TEvents extends object> implements EventBusView<TEvents> {
  /** Handlers per type. Arrays are replaced, never mutated, so a publish in progress is unaffected. */
  readonly #handlers = new Map<string, readonly EventHandler<never>[]>();
  readonly #taps: EventTap<TEvents>[] = [];
  readonly #onHandlerError: (type: string, error: unknown) => void;
  readonly #now: () => number;
  /** Async handler results of the publish in progress (saved and restored around nested publishes). */
  #pending: Promise<void>[] | undefined;

  constructor(options: { onHandlerError?: (type: string, error: unknown) => void; now?: () => number } = {}) {
    this.#onHandlerError = options.onHandlerError ?? (() => undefined);
    this.#now = options.now ?? Date.now;
  }

  /** Subscribes `handler` to `type`; returns a disposer. The same function may subscribe twice. */
  on<TType extends keyof TEvents & string>(type: TType, handler: EventHandler<TEvents[TType]>): Disposer {
    const wrapped = ((event: TEvents[TType]) => handler(event)) as EventHandler<never>;
    this.#handlers.set(type, [...(this.#handlers.get(type) ?? []), wrapped]);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      const remaining = (this.#handlers.get(type) ?? []).filter((candidate) => candidate !== wrapped);
      if (remaining.length === 0) this.#handlers.delete(type);
      else this.#handlers.set(type, remaining);
    };
  }

  /** Subscribes `handler` to the next `type` event only. */
  once<TType extends keyof TEvents & string>(type: TType, handler: EventHandler<TEvents[TType]>): Disposer {
    const dispose = this.on(type, (event) => {
      dispose();
      return handler(event);
    });
    return dispose;
  }

  /** Resolves with the next `type` event for which `predicate` holds. */
  next<TType extends keyof TEvents & string>(
    type: TType,
    predicate: (event: TEvents[TType]) => boolean = () => true,
  ): Promise<TEvents[TType]> {
    return new Promise((resolve) => {
      const dispose = this.on(type, (event) => {
        if (!predicate(event)) return;
        dispose();
        resolve(event);
      });
    });
  }

  /**
   * Receives every published event after its handlers (used to append domain events to an
   * event store). A tap's failure is reported like a handler's.
   */
  tap(tap: EventTap<TEvents>): Disposer {
    this.#taps.push(tap);
    return () => {
      const index = this.#taps.indexOf(tap);
      if (index >= 0) this.#taps.splice(index, 1);
    };
  }

  /** Number of handlers subscribed to `type`. */
  listenerCount(type: keyof TEvents & string): number {
    return this.#handlers.get(type)?.length ?? 0;
  }

  /**
   * Delivers `event` to every handler of `type`, synchronously for synchronous handlers. The
   * returned promise settles when every async handler has settled; it never rejects.
   * Handlers and taps receive the publisher's object: they are the system's own parts and must
   * not change it. Host code subscribes through {@link eventBusViewOf} (`system.bus`), which hands
   * each of its handlers a deep-frozen copy.
   */
  publish<TType extends keyof TEvents & string>(type: TType, event: TEvents[TType]): Promise<void> {
    const delivered = event;
    const outer = this.#pending;
    this.#pending = undefined;
    const handlers = this.#handlers.get(type) as readonly EventHandler<TEvents[TType]>[] | undefined;
    if (handlers !== undefined) {
      for (let index = 0; index < handlers.length; index++) {
        try {
          const result = handlers[index]!(delivered);
          if (result !== undefined && typeof result.then === "function") {
            (this.#pending ??= []).push(
              result.then(undefined, (error: unknown) => this.#reportHandlerError(type, error)),
            );
          }
        } catch (error) {
          this.#reportHandlerError(type, error);
        }
      }
    }
    if (this.#taps.length > 0) this.#runTaps(type, delivered);
    const pending = this.#pending;
    this.#pending = outer;
    if (pending === undefined) return RESOLVED;
    return Promise.all(pending).then(() => undefined);
  }

  #runTaps<TType extends keyof TEvents & string>(type: TType, event: TEvents[TType]): void {
    for (const tap of this.#taps) {
      try {
        const result = tap(type, event);
        if (result !== undefined) {
          (this.#pending ??= []).push(
            result.then(undefined, (error: unknown) => this.#reportHandlerError(type, error)),
          );
        }
      } catch (error) {
        this.#reportHandlerError(type, error);
      }
    }
  }

  #reportHandlerError(type: string, error: unknown): void {
    try {
      this.#onHandlerError(type, error);
    } catch {
      // The error reporter itself failed; nothing further can be done without recursing.
    }
    if (type === "handler-error") return;
    const event = { at: this.#now(), eventType: type, error };
    void this.publish("handler-error" as keyof TEvents & string, event as never);
  }
}
