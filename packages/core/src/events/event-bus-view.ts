import type { Disposer } from "../domain/disposer";

/** A handler for one event type; it may be async, and the publisher then awaits it. */
export type EventHandler<TPayload> = (event: TPayload) => void | Promise<void>;

/**
 * The subscribing half of an `EventBus` (`@kiln/core/advanced`): what a host gets as
 * `system.bus`. It has no `publish` and no `tap`, so code holding it can listen to every event
 * but cannot make one up (a fake alarm or machine-state event that the event recorder would
 * store as fact). Publishing is reserved to the parts of the system, and to
 * `system.unchecked.bus`.
 *
 * @example
 * const off = system.bus.on("alarm-raise", (event) => console.log(event.alarmId));
 * const end = await system.bus.next("process-end");
 * off();
 */
export interface EventBusView<TEvents extends object> {
  /** Subscribes `handler` to `type`; returns a disposer. See `EventBus.on`. */
  on<TType extends keyof TEvents & string>(type: TType, handler: EventHandler<TEvents[TType]>): Disposer;
  /** Subscribes `handler` to the next `type` event only. See `EventBus.once`. */
  once<TType extends keyof TEvents & string>(type: TType, handler: EventHandler<TEvents[TType]>): Disposer;
  /** Resolves with the next `type` event for which `predicate` holds. See `EventBus.next`. */
  next<TType extends keyof TEvents & string>(
    type: TType,
    predicate?: (event: TEvents[TType]) => boolean,
  ): Promise<TEvents[TType]>;
}
