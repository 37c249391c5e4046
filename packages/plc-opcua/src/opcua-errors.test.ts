import { KilnError } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { StatusCodes } from "node-opcua-client";
import {
  connectError,
  redact,
  requestError,
  statusNameOf,
  statusOfError,
  withWriteSent,
  writeNotApplied,
} from "./opcua-errors";

const context = {
  endpointUrl: "opc.tcp://plc:4840",
  securityMode: "SignAndEncrypt",
  securityPolicy: "Basic256Sha256",
  pkiDir: "/pki",
  secret: "hunter2-password",
};

describe("statusOfError", () => {
  test("reads node-opcua's 'BadXxx (0x........)' from the message", () => {
    expect(statusOfError(new Error("BadUserAccessDenied (0x801f0000)"))).toEqual({
      statusCode: 0x801f0000,
      statusName: "BadUserAccessDenied",
    });
  });

  test("prefers the ServiceFault's service result", () => {
    const error = Object.assign(new Error("fault"), {
      response: { responseHeader: { serviceResult: { value: 0x80250000 } } },
    });
    expect(statusOfError(error)).toEqual({ statusCode: 0x80250000, statusName: statusNameOf(0x80250000) });
    expect(statusNameOf(0x80250000)).toBe("BadSessionIdInvalid");
  });

  test("is undefined for errors without a status", () => {
    expect(statusOfError(new Error("ECONNREFUSED"))).toBeUndefined();
    expect(statusOfError("text")).toBeUndefined();
  });

  test("names unknown codes in hex", () => {
    expect(statusNameOf(0x80ff1234)).toBe("0x80ff1234");
  });
});

describe("connectError", () => {
  test("a refused identity is KILN_AUTHENTICATION_FAILED, not retryable", () => {
    const error = connectError(new Error("BadIdentityTokenRejected (0x80210000)"), context);
    expect(error.code).toBe("KILN_AUTHENTICATION_FAILED");
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ statusName: "BadIdentityTokenRejected", endpointUrl: context.endpointUrl });
  });

  test("a repair that lost its channel again says so, not 'Cannot connect' (adv13h LOW)", () => {
    const error = connectError(new Error("Failure during reconnection : client or session is not usable anymore"), {
      ...context,
      stage: "session",
    });
    expect(error.code).toBe("KILN_CONNECTION_FAILED");
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/lost again while the session and its subscriptions were being re-created/);
    expect(error.message).not.toMatch(/^Cannot connect/);
    expect(error.details.reason).toBe("lost-during-repair");
  });

  test("sibling: any other failure of a connection attempt still reads 'Cannot connect', retryable", () => {
    const error = connectError(new Error("connect ECONNREFUSED 127.0.0.1:4840"), context);
    expect(error.message).toMatch(/^Cannot connect to the OPC UA server/);
    expect(error.retryable).toBe(true);
    expect(error.details.reason).toBeUndefined();
  });

  test("an untrusted server certificate says how to trust it, not retryable", () => {
    const error = connectError(
      new Error("server Certificate verification failed with err BadCertificateUntrusted (0x801a0000)"),
      context,
    );
    expect(error.code).toBe("KILN_CONNECTION_FAILED");
    expect(error.retryable).toBe(false);
    expect(error.message).toContain("trustedServerCertificates");
    expect(error.details.reason).toBe("server-certificate-untrusted");
  });

  test("a server refusing our certificate, or no matching endpoint, is not retryable", () => {
    expect(connectError(new Error("BadSecurityChecksFailed (0x80130000)"), context)).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      retryable: false,
      details: { reason: "client-certificate-rejected" },
    });
    expect(connectError(new Error("Cannot find an Endpoint matching security mode"), context)).toMatchObject({
      retryable: false,
      details: { reason: "no-matching-endpoint" },
    });
  });

  test("BadSecurityChecksFailed on CreateSession is reported as a refused session, not a refused channel with client-certificate advice (adv13 LOW)", () => {
    const error = connectError(new Error("BadSecurityChecksFailed (0x80130000)"), { ...context, stage: "session" });
    expect(error).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      details: { reason: "session-security-checks-failed", stage: "session" },
    });
    expect(error.message).toMatch(/refused to create or activate the session/);
    expect(error.message).not.toMatch(/refused the secure channel/);
    // Sibling: the same status while opening the channel keeps the channel's advice, and says the stage.
    const channel = connectError(new Error("BadSecurityChecksFailed (0x80130000)"), { ...context, stage: "channel" });
    expect(channel.details).toMatchObject({ reason: "client-certificate-rejected", stage: "channel" });
    expect(channel.message).toMatch(/refused the secure channel/);
  });

  test("an unreachable server is a retryable KILN_CONNECTION_FAILED", () => {
    const error = connectError(new Error("connect ECONNREFUSED 127.0.0.1:4840"), context);
    expect(error).toMatchObject({ code: "KILN_CONNECTION_FAILED", retryable: true });
  });

  test("never repeats the password, and passes Kiln errors through", () => {
    const error = connectError(new Error(`login hunter2-password failed`), context);
    expect(error.message).not.toContain("hunter2-password");
    const kiln = new KilnError("KILN_ABORTED", "aborted");
    expect(connectError(kiln, context)).toBe(kiln);
    expect(redact("a s3cret-pw b s3cret-pw", "s3cret-pw")).toBe("a *** b ***");
    expect(redact("text", undefined)).toBe("text");
  });

  test.each(["a", "ab", "abc"])(
    "a short password (%j) is never revealed, not even by where it was masked (adv13 LOW)",
    (secret) => {
      const text = `BadUserAccessDenied: user "operator" with password "${secret}" rejected; a abc bad cab`;
      const masked = redact(text, secret);
      // Masking each occurrence of a 1-3 character secret inside other words shows which letters it is made of.
      expect(masked).not.toContain(`"${secret}"`);
      expect(masked).not.toContain("***");
      expect(masked).toMatch(/withheld/);
      // Nothing of the original text is left to compare against: the same words whatever the secret.
      expect(masked).toBe(redact("another text holding a b c", "a b c"));
      const error = connectError(new Error(text), { ...context, secret });
      expect(error.message).not.toContain(`"${secret}"`);
      expect(error.message).not.toContain("***");
      // Sibling: a message that does not contain it is left as it is.
      expect(redact("BadUserAccessDenied (0x801f0000)", "xyz")).toBe("BadUserAccessDenied (0x801f0000)");
      // A withheld message still classifies the error by what it said (a timeout stays KILN_TIMEOUT,
      // a lost connection KILN_CONNECTION_FAILED), only the text is not shown.
      const timedOut = requestError(new Error(`request timed out while ${secret} waited`), "read", secret);
      expect(timedOut).toMatchObject({ code: "KILN_TIMEOUT", retryable: true });
      expect(timedOut.message).toMatch(/withheld/);
      const closed = requestError(new Error(`socket closed (${secret})`), "write", secret);
      expect(closed).toMatchObject({ code: "KILN_CONNECTION_FAILED", retryable: true });
    },
  );
});

describe("requestError", () => {
  test("timeouts and lost sessions are retryable; other faults are device errors with the status", () => {
    expect(requestError(new Error("Transaction has timed out ( timeout = 10 ms )"), "read")).toMatchObject({
      code: "KILN_TIMEOUT",
      retryable: true,
    });
    expect(requestError(new Error("BadSessionIdInvalid (0x80250000)"), "read")).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      retryable: true,
    });
    // node-opcua fails the requests pending on a channel it broke (its keep-alive failure, the link watchdog).
    expect(requestError(new Error("Connection Break"), "read")).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      retryable: true,
    });
    expect(requestError(new Error("BadTooManyOperations (0x80100000)"), "read")).toMatchObject({
      code: "KILN_DEVICE_ERROR",
      retryable: false,
      details: { operation: "read", statusName: "BadTooManyOperations" },
    });
  });

  // Issue 13, MEDIUM-2: node-opcua's refusal of a slow group's subscription mentions the
  // session timeout and was mapped to a retryable KILN_TIMEOUT by a loose "timeout" match, so
  // the driver retried it forever.
  test("node-opcua's NODE-OPCUA-W09 refusal is a non-retryable KILN_VALIDATION naming the option", () => {
    const error = requestError(
      new Error("[NODE-OPCUA-W09] The subscription parameters are not compatible with the session timeout "),
      "subscribe",
    );
    expect(error).toMatchObject({ code: "KILN_VALIDATION", retryable: false });
    expect(error.details.issues).toEqual([expect.objectContaining({ path: "subscriptions.keepAliveMs" })]);
    expect(error.message).toContain("timeouts.sessionMs");
  });

  // Issue 13d, MEDIUM-1: every Bad service result was non-retryable, so a transient
  // BadTooManySubscriptions at start (a previous instance's orphans) stopped acquisition for good.
  test.each([
    ["BadTooManySubscriptions (0x80770000)", "KILN_DEVICE_ERROR", true],
    ["BadServerTooBusy (0x80ee0000)", "KILN_DEVICE_ERROR", true],
    ["BadTcpServerTooBusy (0x807d0000)", "KILN_DEVICE_ERROR", true],
    ["BadResourceUnavailable (0x80040000)", "KILN_DEVICE_ERROR", true],
    ["BadOutOfMemory (0x80030000)", "KILN_DEVICE_ERROR", true],
    ["BadTooManyPublishRequests (0x80780000)", "KILN_DEVICE_ERROR", true],
    ["BadNoSubscription (0x80790000)", "KILN_DEVICE_ERROR", true],
    ["BadSecureChannelTokenUnknown (0x80870000)", "KILN_DEVICE_ERROR", true],
    ["BadTimeout (0x800a0000)", "KILN_TIMEOUT", true],
    ["BadSessionIdInvalid (0x80250000)", "KILN_CONNECTION_FAILED", true],
    ["BadSessionClosed (0x80260000)", "KILN_CONNECTION_FAILED", true],
    ["BadConnectionClosed (0x80ae0000)", "KILN_CONNECTION_FAILED", true],
    ["BadTooManySessions (0x80560000)", "KILN_CONNECTION_FAILED", true],
    ["Timeout(A) in waiting for data on socket(timeout was = 10000 ms)", "KILN_TIMEOUT", true],
    ["ERROR in waiting for data on socket(timeout was = 10000 ms) hadErrorfalse", "KILN_TIMEOUT", true],
    ["connect ETIMEDOUT 10.0.0.5:4840", "KILN_TIMEOUT", true],
    ["BadTooManyOperations (0x80100000)", "KILN_DEVICE_ERROR", false],
    ["BadInvalidArgument (0x80ab0000)", "KILN_DEVICE_ERROR", false],
    ["BadInvalidState (0x80af0000)", "KILN_DEVICE_ERROR", false],
    ["BadNodeIdUnknown (0x80340000)", "KILN_DEVICE_ERROR", false],
    ["BadTooManyMonitoredItems (0x80db0000)", "KILN_DEVICE_ERROR", false],
  ] as const)("serviceResult = %s maps to %s, retryable %s", (text, code, retryable) => {
    expect(requestError(new Error(`serviceResult = ${text}`), "subscribe")).toMatchObject({ code, retryable });
  });

  test("only a request that timed out is a timeout: a fault whose text merely mentions a timeout is not", () => {
    expect(requestError(new Error("BadRequestTimeout (0x80850000)"), "read")).toMatchObject({
      code: "KILN_TIMEOUT",
      retryable: true,
    });
    expect(requestError(new Error("request timed out after 3000 ms"), "read")).toMatchObject({ code: "KILN_TIMEOUT" });
    expect(
      requestError(new Error("BadInvalidArgument (0x80ab0000) sessionTimeout out of range"), "subscribe"),
    ).toMatchObject({ code: "KILN_DEVICE_ERROR", retryable: false });
  });
});

describe("writeNotApplied and withWriteSent (docs/adr/0022, amendment fix13y)", () => {
  const fault = (statusCode: { readonly value: number }): Error =>
    Object.assign(new Error("ServiceFault"), {
      response: { responseHeader: { serviceResult: { value: statusCode.value } } },
    });

  test("only a service fault that refuses the request before execution is not applied (fix13d)", () => {
    for (const refusal of [
      StatusCodes.BadSessionIdInvalid,
      StatusCodes.BadSessionClosed,
      StatusCodes.BadSecureChannelIdInvalid,
      StatusCodes.BadTooManyOperations,
      StatusCodes.BadNothingToDo,
      StatusCodes.BadUserAccessDenied,
      StatusCodes.BadTcpServerTooBusy,
      StatusCodes.BadServerTooBusy,
      StatusCodes.BadRequestTooLarge,
    ]) {
      expect(writeNotApplied(fault(refusal))).toBe(true);
    }
    for (const mayHaveActed of [
      StatusCodes.BadTimeout,
      StatusCodes.BadRequestTimeout,
      StatusCodes.BadInternalError,
      StatusCodes.BadUnexpectedError,
      StatusCodes.BadOutOfMemory,
      StatusCodes.BadShutdown,
      StatusCodes.BadEncodingLimitsExceeded,
    ]) {
      expect(writeNotApplied(fault(mayHaveActed))).toBe(false);
    }
  });

  test("node-opcua's failures before the wire are not applied; a lost answer may have been", () => {
    expect(writeNotApplied(new Error("Invalid Channel BadConnectionClosed"))).toBe(true);
    expect(
      writeNotApplied(new Error("Session has been closed and should not be used to perform a transaction anymore")),
    ).toBe(true);
    expect(writeNotApplied(new Error("Connection Break"))).toBe(false);
    expect(writeNotApplied(new Error("Transaction has timed out ( timeout = 3000 ms , request = WriteRequest)"))).toBe(
      false,
    );
    expect(writeNotApplied(new KilnError("KILN_ABORTED", "aborted"))).toBe(false);
  });

  test("withWriteSent: sent true is not retryable and says so; sent false keeps retryable", () => {
    const lost = new KilnError("KILN_CONNECTION_FAILED", "lost.", { retryable: true, details: { operation: "write" } });
    const sent = withWriteSent(lost, true) as KilnError;
    expect(sent).toMatchObject({
      code: "KILN_CONNECTION_FAILED",
      retryable: false,
      details: { operation: "write", sent: true },
    });
    expect(sent.message).toMatch(/may have applied it/);
    const notSent = withWriteSent(lost, false) as KilnError;
    expect(notSent).toMatchObject({ retryable: true, details: { sent: false } });
    expect(notSent.message).toMatch(/\(not applied\)$/);
  });
});
