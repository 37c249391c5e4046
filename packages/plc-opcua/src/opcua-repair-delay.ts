import type { Clock } from "@kiln/core";

/** The part of node-opcua's client that starts the repair of a lost secure channel (an internal method). */
interface RepairingClient {
  _repairConnection?: () => void;
}

/**
 * Makes node-opcua's repair of `client`'s lost channel wait `waitMs()` ms (on `clock`) before it starts, on top of
 * node-opcua's own delay (`OPCUAClientBase.retryDelay`, 1 s, process-wide). node-opcua starts every repair the same
 * way after any connection that came up, so a server that drops each session shortly after it is established was
 * asked for a new one every ~1.2 s forever (issue 13 MEDIUM-2); the driver passes the driver kit's wait for a loss
 * before the connection proved itself (`ConnectionLifecycle.connectionLost`). node-opcua calls the method on the
 * instance (`this._repairConnection()`), so it is wrapped there; when `signal` aborts, a waiting repair is dropped
 * (the client is being disposed). Returns whether the method was found (an unknown node-opcua version: repairs are
 * not delayed, and the driver's rebuild backoff still applies to failed ones).
 */
export function delayRepairs(client: object, waitMs: () => number, clock: Clock, signal: AbortSignal): boolean {
  const repairing = client as RepairingClient;
  const repair = repairing._repairConnection;
  if (typeof repair !== "function") return false;
  repairing._repairConnection = function delayedRepair(this: unknown): void {
    const ms = waitMs();
    if (ms <= 0) {
      repair.call(client);
      return;
    }
    clock.sleep(ms, signal).then(
      () => repair.call(client),
      () => undefined,
    );
  };
  return true;
}
