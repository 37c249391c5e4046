import { EventEmitter } from "eventemitter3";

/** Calling it removes the subscription. Calling it twice is harmless. */
export type Disposer = () => void;

/** A handler for one event type; it may be async, and the publisher then awaits it. */
export type EventHandler<TPayload> = (event: TPayload) => void | Promise<void>;

/** Receives every event that passes through a bus, after its handlers ran. */
export type EventTap<TEvents> = <TType extends keyof TEvents & string>(
  type: TType,
  event: TEvents[TType],
) => void | Promise<void>;

interface Dispatch {
  pending: Promise<void>[] | undefined;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * A typed publish/subscribe bus on eventemitter3. Handlers are isolated: one that throws or
 * rejects never stops the others or the publisher; its failure is published as
 * `handler-error` (when the event map has that type) and passed to `onHandlerError`.
 *
 * @example
 * const bus = new EventBus<KilnEvents>();
 * const off = bus.on("process-end", (event) => console.log(event.reason));
 * await bus.publish("process-end", { ... });
 * off();
 */
export class EventBus<TEvents extends object> {
  readonly #emitter = new EventEmitter();
  readonly #taps: EventTap<TEvents>[] = [];
  readonly #onHandlerError: (type: string, error: unknown) => void;
  readonly #now: () => number;

  constructor(options: { onHandlerError?: (type: string, error: unknown) => void; now?: () => number } = {}) {
    this.#onHandlerError = options.onHandlerError ?? (() => undefined);
    this.#now = options.now ?? Date.now;
  }

  /** Subscribes `handler` to `type`; returns a disposer. */
  on<TType extends keyof TEvents & string>(type: TType, handler: EventHandler<TEvents[TType]>): Disposer {
    const listener = (event: TEvents[TType], dispatch: Dispatch): void => {
      try {
        const result = handler(event);
        if (result !== undefined && typeof (result as Promise<void>).then === "function") {
          (dispatch.pending ??= []).push(
            (result as Promise<void>).then(undefined, (error: unknown) => this.#reportHandlerError(type, error)),
          );
        }
      } catch (error) {
        this.#reportHandlerError(type, error);
      }
    };
    this.#emitter.on(type, listener);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#emitter.off(type, listener);
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
    return this.#emitter.listenerCount(type);
  }

  /**
   * Delivers `event` to every handler of `type`, synchronously for synchronous handlers. The
   * returned promise settles when every async handler has settled; it never rejects.
   */
  publish<TType extends keyof TEvents & string>(type: TType, event: TEvents[TType]): Promise<void> {
    const dispatch: Dispatch = { pending: undefined };
    this.#emitter.emit(type, event, dispatch);
    for (const tap of this.#taps) {
      try {
        const result = tap(type, event);
        if (result !== undefined) {
          (dispatch.pending ??= []).push(
            result.then(undefined, (error: unknown) => this.#reportHandlerError(type, error)),
          );
        }
      } catch (error) {
        this.#reportHandlerError(type, error);
      }
    }
    const pending = dispatch.pending;
    if (pending === undefined) return RESOLVED;
    return Promise.all(pending).then(() => undefined);
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
