import { EventEmitter } from "node:events";
import { KilnError } from "@kiln/core";
import { ReadRequest, WriteRequest, type OPCUAClient } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { writeNotApplied } from "./opcua-errors";
import { trackWireFates, wireFate } from "./opcua-wire-fate";

// Adversarial review of fix13 (LOW): a write the server refused with a session fault
// (BadSessionIdInvalid: it checks the session before executing anything), or one node-opcua held
// during a repair and never sent, was reported `details.sent: true` when node-opcua relayed the
// repair's own failure for it ("Cannot recreate session", "Failure during reconnection ..."): those
// errors carry no response of the write. What the wire saw of the WriteRequest now decides
// (docs/adr/0022, amendment fix13z).
type Fault = { readonly requestHandle: number; readonly statusName: string };

function tracked(): { client: EventEmitter; fault: (fault: Fault) => void } {
  const client = new EventEmitter();
  let relay: ((fault: Fault) => void) | undefined;
  trackWireFates(client as unknown as OPCUAClient, (listener) => (relay = listener));
  return { client, fault: (fault) => relay?.(fault) };
}

function writeRequest(handle: number): WriteRequest {
  const request = new WriteRequest({ nodesToWrite: [] });
  request.requestHeader.requestHandle = handle;
  return request;
}

describe("the wire fate of a write (docs/adr/0022, amendment fix13z)", () => {
  test("answered BadSessionIdInvalid, then failed by the repair: not applied (sent: false)", () => {
    const { client, fault } = tracked();
    const request = writeRequest(7);
    client.emit("send_request", request);
    fault({ requestHandle: 7, statusName: "BadSessionIdInvalid" });
    expect(wireFate(request)).toBe("refused");
    // What node-opcua's #_recreate_session_and_reperform_transaction relays when the repair fails.
    expect(writeNotApplied(new Error("Cannot recreate session"), wireFate(request))).toBe(true);
    // Before: the same error said nothing about the write, so it may have landed.
    expect(writeNotApplied(new Error("Cannot recreate session"))).toBe(false);
  });

  test("sibling: held during a repair and never sent, failed by it: not applied; Kiln's own abort stays sent", () => {
    tracked();
    const request = writeRequest(8);
    expect(wireFate(request)).toBe("unsent");
    const repairFailed = new Error("Failure during reconnection : client or session is not usable anymore");
    expect(writeNotApplied(repairFailed, wireFate(request))).toBe(true);
    // An abort ends the caller's wait, not node-opcua's: it may still send what it holds.
    expect(writeNotApplied(new KilnError("KILN_ABORTED", "aborted"), wireFate(request))).toBe(false);
  });

  test("sibling: re-sent after the refusal and unanswered, or refused for another reason: may have landed", () => {
    const { client, fault } = tracked();
    const request = writeRequest(9);
    client.emit("send_request", request);
    fault({ requestHandle: 9, statusName: "BadSessionClosed" });
    request.requestHeader.requestHandle = 10;
    client.emit("send_request", request);
    expect(wireFate(request)).toBe("sent");
    expect(writeNotApplied(new Error("Transaction has timed out ( timeout = 3000 ms)"), wireFate(request))).toBe(false);
    // A fault that is not a session refusal keeps its own rule (the service result on the error).
    const other = writeRequest(11);
    client.emit("send_request", other);
    fault({ requestHandle: 11, statusName: "BadTimeout" });
    expect(wireFate(other)).toBe("sent");
    // One rule with writeNotApplied (fix13d): a fault after the server may have acted stays "sent",
    // any refusal before execution (not only a session one) is "refused".
    const faulted = writeRequest(12);
    client.emit("send_request", faulted);
    fault({ requestHandle: 12, statusName: "BadInternalError" });
    expect(wireFate(faulted)).toBe("sent");
    const tooMany = writeRequest(13);
    client.emit("send_request", tooMany);
    fault({ requestHandle: 13, statusName: "BadTooManyOperations" });
    expect(wireFate(tooMany)).toBe("refused");
    // Other requests are not tracked.
    const read = new ReadRequest({ nodesToRead: [] });
    client.emit("send_request", read);
    expect(wireFate(read)).toBe("unsent");
  });
});
