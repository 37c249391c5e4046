import type { OPCUAClient } from "node-opcua-client";
import { refusedBeforeExecution } from "./opcua-errors";

/**
 * What the wire says about a WriteRequest: `"unsent"` (node-opcua never put it on a secure
 * channel: it held it while repairing and failed it from there), `"sent"` (on the wire, no answer
 * known), `"refused"` (the server's last answer to it was a fault refusing it before execution,
 * `refusedBeforeExecution` of `opcua-errors.ts`, the same rule as `writeNotApplied`: not
 * applied; node-opcua re-sends it after a repair, which makes it `"sent"` again).
 */
export type WireFate = "unsent" | "sent" | "refused";

const fates = new WeakMap<object, "sent" | "refused">();

/**
 * Records the {@link WireFate} of every WriteRequest `client` sends: node-opcua's `send_request`
 * (emitted as the request is chunked onto the channel, each re-send included) and the ServiceFault
 * answers `onFault` relays, matched by request handle (docs/adr/0022, amendments fix13z, fix13d).
 */
export function trackWireFates(
  client: OPCUAClient,
  onFault: (listener: (fault: { readonly requestHandle: number; readonly statusName: string }) => void) => void,
): void {
  const outstanding = new Map<number, object>();
  client.on("send_request", (request: unknown) => {
    if (typeof request !== "object" || request === null || request.constructor.name !== "WriteRequest") return;
    fates.set(request, "sent");
    const handle = (request as { requestHeader?: { requestHandle?: unknown } }).requestHeader?.requestHandle;
    if (typeof handle !== "number") return;
    outstanding.set(handle, request);
    // Few writes are out at once; a long-lost one must not keep the map growing.
    if (outstanding.size > 1_000) outstanding.delete(outstanding.keys().next().value!);
  });
  client.on("receive_response", (response: unknown) => {
    const handle = (response as { responseHeader?: { requestHandle?: unknown } } | null)?.responseHeader?.requestHandle;
    if (typeof handle === "number") outstanding.delete(handle);
  });
  onFault((fault) => {
    const request = outstanding.get(fault.requestHandle);
    if (request === undefined) return;
    outstanding.delete(fault.requestHandle);
    if (refusedBeforeExecution(fault.statusName)) fates.set(request, "refused");
  });
}

/** The {@link WireFate} of `request` (a WriteRequest handed to a tracked client's session). */
export function wireFate(request: object): WireFate {
  return fates.get(request) ?? "unsent";
}
