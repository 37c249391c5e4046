import { AsyncLocalStorage } from "node:async_hooks";
import type { ClientSession } from "node-opcua-client";

/**
 * Who sent a request, for the link watchdog (docs/adr/0022, amendment fix13u). A request sent
 * within an application's call to the driver (`read`, `write`, `browse`, `subscribe`) was given
 * `timeouts.requestMs` by its caller: silence while it is out is no stall before that deadline (a
 * one-request-at-a-time PLC may take seconds for it). Every other request is upkeep, sent by the
 * driver or by node-opcua on their own behalf (keep-alive reads, Republish, a subscription
 * re-created or deleted, a refused item created again, reads after a repair, namespace table
 * reads...): answered within the server's response time, so never waited for beyond the stall
 * bound. The rule is by origin, not by request type: a CreateMonitoredItems of `subscribe()` is
 * the application's, the same request re-creating an item is upkeep.
 */
const applicationCall = new AsyncLocalStorage<{
  open: boolean;
  readonly purpose?: string;
  readonly onRequest?: (request: object) => void;
}>();

/** Requests a session was asked to send inside an application's call (marked before node-opcua may queue them). */
const applicationRequests = new WeakSet<object>();

/** Upkeep requests sent inside {@link asUpkeepCall}: their purpose. */
const upkeepPurposes = new WeakMap<object, string>();

/**
 * Runs `call` as the application's: every request a session marked by
 * {@link markApplicationRequests} is asked to send while it runs (also later in the call's
 * promise chain) counts as the application's. Timers and callbacks the call leaves behind (a
 * retry, a watchdog) inherit the context but not the origin: it ends when `call` settles.
 * `onRequest` is given each request the call asks the session to send (a write keeps its
 * WriteRequest to tell later whether it went on the wire, docs/adr/0022 amendment fix13z).
 */
export async function asApplicationCall<T>(call: () => Promise<T>, onRequest?: (request: object) => void): Promise<T> {
  const scope = onRequest ? { open: true, onRequest } : { open: true };
  try {
    return await applicationCall.run(scope, call);
  } finally {
    scope.open = false;
  }
}

/**
 * Runs `call` as the driver's upkeep named `purpose` (e.g. the read of current values after a
 * repair): its requests stay upkeep, and the link watchdog can tell them apart by
 * {@link upkeepPurpose} (docs/adr/0022, amendment fix13w: an upkeep purpose whose request was
 * outstanding when a stall was declared is given the application's deadline next time).
 */
export async function asUpkeepCall<T>(purpose: string, call: () => Promise<T>): Promise<T> {
  const scope = { open: true, purpose };
  try {
    return await applicationCall.run(scope, call);
  } finally {
    scope.open = false;
  }
}

/**
 * Makes `session` note which requests it is asked to send inside {@link asApplicationCall}.
 * Marked where node-opcua's session takes the request (`performMessageTransaction`), before it
 * queues a request while the channel is down, so a queued application request sent at the
 * reconnection keeps its origin. node-opcua re-creates a session in the same object, so the mark
 * survives repairs; a rebuild marks its new session.
 */
export function markApplicationRequests(session: ClientSession): void {
  type Transaction = (this: unknown, request: object, ...rest: unknown[]) => unknown;
  const target = session as unknown as { performMessageTransaction: Transaction };
  const send = target.performMessageTransaction;
  target.performMessageTransaction = function (this: unknown, request: object, ...rest: unknown[]): unknown {
    const scope = applicationCall.getStore();
    if (scope?.open === true) {
      scope.onRequest?.(request);
      if (scope.purpose === undefined) applicationRequests.add(request);
      else upkeepPurposes.set(request, scope.purpose);
    }
    return send.call(this, request, ...rest);
  };
}

/** True when `request` was sent inside an application's call ({@link asApplicationCall}). */
export function isApplicationRequest(request: unknown): boolean {
  return typeof request === "object" && request !== null && applicationRequests.has(request);
}

/** The purpose of an upkeep request sent inside {@link asUpkeepCall}; undefined for any other. */
export function upkeepPurpose(request: unknown): string | undefined {
  return typeof request === "object" && request !== null ? upkeepPurposes.get(request) : undefined;
}
