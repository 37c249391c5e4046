import { KilnError, QualityCodes, quality, type Quality } from "@kiln/core";

/** Why a Modbus request failed: an exception code from the device, no reply, or no connection. */
export type ModbusFailure = number | "timeout" | "disconnected";

/** Modbus exception codes (application protocol v1.1b3, section 7). */
export const ModbusExceptions: Readonly<Record<number, string>> = {
  1: "illegal function",
  2: "illegal data address",
  3: "illegal data value",
  4: "server device failure",
  5: "acknowledge",
  6: "server device busy",
  8: "memory parity error",
  10: "gateway path unavailable",
  11: "gateway target device failed to respond",
};

/**
 * Maps a Modbus failure to a Kiln quality: always `bad`, with a reason naming the exception.
 * `failure` is an exception code (1-11), or `"timeout"` / `"disconnected"`.
 */
export function qualityFromModbus(failure: ModbusFailure): Quality {
  if (failure === "timeout") return quality("bad", "modbus request timed out", QualityCodes.BadTimeout);
  if (failure === "disconnected") return quality("bad", "modbus connection lost", QualityCodes.BadNotConnected);
  const name = ModbusExceptions[failure] ?? "a code Modbus does not define: a gateway's own, taken as its giving up";
  const code =
    failure === 2
      ? QualityCodes.BadNodeIdUnknown
      : failure === 1 || failure === 3
        ? QualityCodes.BadConfigurationError
        : gatewayMayAnswerLate(failure)
          ? QualityCodes.BadCommunicationError
          : QualityCodes.BadDeviceFailure;
  return quality("bad", `modbus exception ${failure} (${name})`, code);
}

/** Exception codes after which the same request may succeed later (acknowledge, busy; gateway codes too). */
const RETRYABLE_EXCEPTIONS: ReadonlySet<number> = new Set([5, 6]);

/**
 * Whether an exception answer may be a gateway's, not the device's: exception 10 (Gateway Path Unavailable), 11
 * (Gateway Target Device Failed To Respond) or a code Modbus does not define (Modbus Application Protocol v1.1b3,
 * section 7). Gateways answer their own serial timeout with any of these (Moxa NPort: 10; ICP DAS: 0x4B "data
 * timeout", 0x41-0x43 for a bad serial answer), so the request may have reached the device, which may still answer
 * after the gateway moved on: its late answer can be handed to the next request. For the answer stream such an
 * exception counts as a timeout (ADR 0041, amendments fix12f and adv12i); for the unit, as no answer; for a write,
 * as an outcome not known. The codes 1-6 and 8 are the device's own final answers (for the answer stream only, a
 * 4 or 6 later than the unit's usual answer time is not: the request queue marks it, see {@link markLateException}).
 */
export function gatewayMayAnswerLate(code: number): boolean {
  return code === 10 || code === 11 || !(code in ModbusExceptions);
}

/**
 * The exception error `error` with `details.lateException: true`: the request queue took its 4 or 6 as possibly a
 * gateway's answer to its own serial timeout, since it came later than the unit's usual answer time (ADR 0041
 * fix12k). The writer then reports the write's outcome as not known (`KILN_TIMEOUT`), not as refused. Other errors
 * are returned as they are.
 */
export function markLateException(error: unknown): unknown {
  if (!KilnError.is(error)) return error;
  return new KilnError(error.code, error.message, {
    cause: error.cause,
    retryable: error.retryable,
    details: { ...error.details, lateException: true },
  });
}

/** Whether the request queue marked `error`'s 4 or 6 as late ({@link markLateException}). */
export function isLateException(error: unknown): boolean {
  return KilnError.is(error) && error.details.lateException === true;
}

/** The failure a Kiln error carries (`details.modbus`), if it came from a Modbus request. */
export function modbusFailureOf(error: unknown): ModbusFailure | undefined {
  if (!KilnError.is(error)) return undefined;
  const failure = error.details.modbus;
  return typeof failure === "number" || failure === "timeout" || failure === "disconnected" ? failure : undefined;
}

/** A `KILN_TIMEOUT` error for a request that got no reply within `timeoutMs`. */
export function modbusTimeoutError(timeoutMs: number, what: string): KilnError {
  return new KilnError(
    "KILN_TIMEOUT",
    `No reply to ${what} within ${timeoutMs} ms. Check the unit id and wiring, or raise requestTimeoutMs for a slow device.`,
    { retryable: true, details: { modbus: "timeout", timeoutMs } },
  );
}

/** A `KILN_CONNECTION_FAILED` error for a connection that dropped. */
export function modbusDisconnectedError(reason: string, cause?: unknown): KilnError {
  return new KilnError(
    "KILN_CONNECTION_FAILED",
    `Modbus connection lost: ${reason}. The driver reconnects by itself.`,
    {
      retryable: true,
      cause,
      details: { modbus: "disconnected" },
    },
  );
}

/**
 * Converts whatever modbus-serial rejected with into a Kiln error: exception responses become
 * `KILN_DEVICE_ERROR` with `details.modbus` = the exception code; modbus-serial's own timeout becomes
 * `KILN_TIMEOUT`; "port not open" becomes `KILN_CONNECTION_FAILED`; a request the client never wrote (`notSent`:
 * the RTU client's "line busy (noise)") becomes a retryable `KILN_DEVICE_ERROR` with `details.sent: false`
 * (`details.lineBusy` for noise); anything else (CRC, length, unexpected
 * reply) becomes a retryable `KILN_DEVICE_ERROR`.
 */
export function kilnErrorFromModbus(error: unknown, what: string): KilnError {
  if (KilnError.is(error)) return error;
  const record = (typeof error === "object" && error !== null ? error : {}) as Record<string, unknown>;
  const message = typeof record.message === "string" ? record.message : String(error);
  const code = record.modbusCode;
  if (typeof code === "number") {
    const gateway = gatewayMayAnswerLate(code);
    const name = exceptionName(code);
    const text = gateway
      ? `A gateway answered ${what} with Modbus exception ${code} (${name}): it gave up waiting for the device.`
      : `The device answered ${what} with Modbus exception ${code} (${name}).`;
    return new KilnError("KILN_DEVICE_ERROR", text, {
      retryable: isRetryableException(code),
      cause: error,
      details: { modbus: code },
    });
  }
  if (record.errno === "ETIMEDOUT") return modbusTimeoutError(0, what);
  if (record.errno === "ECONNREFUSED" || record.name === "PortNotOpenError" || message === "Port Not Open") {
    return modbusDisconnectedError(`port not open during ${what}`, error);
  }
  // Never written (the RTU client: the line stayed noisy past the point an answer could still come in time, or
  // a newer request took the line): nothing reached the device; retryable, not counted against the unit.
  if (record.notSent === true) {
    return new KilnError("KILN_DEVICE_ERROR", `${what} was not sent: ${message}.`, {
      retryable: true,
      cause: error,
      details: { sent: false, ...(record.lineBusy === true ? { lineBusy: true } : {}) },
    });
  }
  // An answer that does not match its request (modbus-tcp-client, modbus-rtu-client): with several requests
  // in flight, `pipelineDesync` says the device's transaction ids cannot be trusted.
  return new KilnError("KILN_DEVICE_ERROR", `Bad reply to ${what}: ${message}`, {
    retryable: true,
    cause: error,
    details: record.pipelineDesync === true ? { pipelineDesync: true } : {},
  });
}

/** The quality of a tag whose read failed with `error`. */
export function qualityFromModbusError(error: unknown): Quality {
  const failure = modbusFailureOf(error);
  if (failure !== undefined) return qualityFromModbus(failure);
  const message = error instanceof Error ? error.message : String(error);
  return quality("bad", message, QualityCodes.BadCommunicationError);
}

/** The name of exception `code` (section 7 of the protocol), or that it is a code Modbus does not define, a gateway's own. */
export function exceptionName(code: number): string {
  return ModbusExceptions[code] ?? "a code Modbus does not define, a gateway's own";
}

/** True when an exception code says the same write may succeed later. */
export function isRetryableException(code: number): boolean {
  return RETRYABLE_EXCEPTIONS.has(code) || gatewayMayAnswerLate(code);
}
