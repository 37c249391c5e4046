import { abortError, onAbort } from "@kiln/core/driver-kit";
import type { ClientSession } from "node-opcua-client";

type Callback = (error: Error | null, response?: unknown) => void;
type Transaction = (this: unknown, request: object, callback: Callback) => unknown;

/**
 * Ends every request `session` carries when `lifetime` (the driver's, aborted by `close()`)
 * aborts: its caller gets `KILN_ABORTED` at once instead of waiting for node-opcua's own
 * `timeouts.requestMs` timeout (docs/adr/0022, amendment fix13z). One place for every request,
 * whoever sent it: the application's (`read`, `write`, `browse`), the driver's upkeep (the
 * reconcile's read of the namespace table and limits after a repair, re-creating or deleting a
 * subscription, reads after a repair) and node-opcua's own (Publish, keep-alive reads). A request
 * asked for after the abort fails at once. CloseSession is exempt: `close()` sends it itself,
 * bounded by its dispose budget. What node-opcua still holds for an ended request is released
 * when `close()` disconnects the client (its answer, if any, is ignored).
 */
export function endRequestsWith(session: ClientSession, lifetime: AbortSignal): void {
  const target = session as unknown as { performMessageTransaction: Transaction };
  const send = target.performMessageTransaction;
  target.performMessageTransaction = function (this: unknown, request: object, callback: Callback): unknown {
    const name = (request as { constructor?: { name?: unknown } }).constructor?.name;
    if (name === "CloseSessionRequest" || typeof callback !== "function") return send.call(this, request, callback);
    const what = `the OPC UA ${typeof name === "string" ? name.replace(/Request$/, "") : "request"}`;
    if (lifetime.aborted) {
      callback(abortError(lifetime, what));
      return undefined;
    }
    let settled = false;
    const ended = (): void => {
      if (settled) return;
      settled = true;
      callback(abortError(lifetime, what));
    };
    // One listener on the driver's signal however many requests are in flight (Publish, reads,
    // upkeep): `onAbort` fans out, so more than ten never trip MaxListenersExceededWarning.
    const stopWaiting = onAbort(lifetime, ended);
    return send.call(this, request, (error, response) => {
      stopWaiting();
      if (settled) return;
      settled = true;
      callback(error, response);
    });
  };
}
