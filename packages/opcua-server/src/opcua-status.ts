import { KilnError, QualityCodes, type Sample } from "@kiln/core";

/** OPC UA StatusCodes (Part 4, 7.39; Part 6, A.2) this package answers with, beyond Kiln's `QualityCodes`. */
export const ServerStatusCodes = {
  ...QualityCodes,
  GoodCompletesAsynchronously: 0x002e0000,
  BadNotFound: 0x803e0000,
  BadNotSupported: 0x803d0000,
  BadInvalidArgument: 0x80ab0000,
  BadInvalidState: 0x80af0000,
  BadResourceUnavailable: 0x80040000,
  BadIndexRangeInvalid: 0x80360000,
  BadWriteNotSupported: 0x80730000,
  BadMethodInvalid: 0x80750000,
  BadTooManySessions: 0x80560000,
} as const;

const SEVERITY_MASK = 0xc0000000;

/** The severity bits of a 32-bit StatusCode: 0 good, 0x40000000 uncertain, 0x80000000 (or 0xc0000000) bad. */
function severityBits(code: number): number {
  return (code & SEVERITY_MASK) >>> 0;
}

/**
 * The StatusCode served for `sample` in a node of the tag's DataType, live or from history, when
 * its value could (`encoded`) or could not be encoded in that DataType (an int16 tag's sample
 * 70000, an int32's 1.5): a value that cannot be encoded is never served converted (70000 as
 * 4464, 1.5 as 1), but as Bad with a Null value — the sample's own code when it was bad already
 * (a device's `BadDeviceFailure` is kept), else `BadTypeMismatch`.
 * @returns a 32-bit unsigned StatusCode.
 */
export function statusCodeOfServed(sample: Sample, encoded: boolean): number {
  const code = statusCodeOfSample(sample);
  return encoded || code >= QualityCodes.Bad ? code : QualityCodes.BadTypeMismatch;
}

/**
 * What a node of the tag's DataType serves for `sample`, live (Read, subscriptions) or from
 * history (Raw, AtTime, bounds): its StatusCode ({@link statusCodeOfServed}) and the encoded value
 * that goes with it, none (a Null Variant) whenever that StatusCode is Bad. OPC UA Part 4, 7.7.1:
 * when the StatusCode indicates an error the value is to be ignored and the Server shall set it
 * to null; a Bad sample's stored value (a device's last reading, 42.5 under `BadDeviceFailure`) is
 * never sent. An Uncertain sample keeps its value. `encode` is asked only for a sample that is not
 * Bad; its `undefined` means the value cannot be encoded in the DataType (`BadTypeMismatch`).
 */
export function servedValueOf<TVariant>(
  sample: Sample,
  encode: (value: Sample["value"]) => TVariant | undefined,
): { readonly code: number; readonly variant: TVariant | undefined } {
  if (statusCodeOfSample(sample) >= QualityCodes.Bad) return { code: statusCodeOfSample(sample), variant: undefined };
  const variant = encode(sample.value);
  return { code: statusCodeOfServed(sample, variant !== undefined), variant };
}

/**
 * The StatusCode a client gets for `sample` (OPC UA Part 4, 7.39): the sample's own code
 * when its severity bits agree with its quality's severity, which keeps the original device code
 * (e.g. `BadSensorFailure` from an upstream OPC UA server, with its info bits); otherwise the
 * generic code of that severity. A value of `null` is never served with a good or uncertain
 * code: it is `BadNoData` unless the sample is bad already. A bad sample is never served good.
 * @returns a 32-bit unsigned StatusCode.
 */
export function statusCodeOfSample(sample: Sample): number {
  const { severity, code } = sample.quality;
  const expected =
    severity === "good" ? QualityCodes.Good : severity === "uncertain" ? QualityCodes.Uncertain : QualityCodes.Bad;
  const bits = severityBits(code);
  const agrees = severity === "bad" ? bits >= QualityCodes.Bad : bits === expected;
  const resolved = Number.isInteger(code) && code >= 0 && code <= 0xffffffff && agrees ? code >>> 0 : expected;
  if (sample.value === null && severity !== "bad") return QualityCodes.BadNoData;
  return resolved;
}

/**
 * The StatusCode a refused Write or Call answers with, from the `KilnError` code of Kiln's
 * checked command path:
 *
 * | Kiln code                                     | StatusCode            |
 * |-----------------------------------------------|-----------------------|
 * | `KILN_FORBIDDEN`                              | `BadUserAccessDenied` |
 * | `KILN_OUT_OF_RANGE`                           | `BadOutOfRange`       |
 * | `KILN_TAG_NOT_WRITABLE`                       | `BadNotWritable`      |
 * | `KILN_INVALID_TRANSITION`, `KILN_LIFECYCLE`   | `BadInvalidState`     |
 * | `KILN_VALIDATION`                             | `BadInvalidArgument`  |
 * | `KILN_TAG_UNKNOWN`                            | `BadNodeIdUnknown`    |
 * | `KILN_NOT_FOUND` (no process, no recipe)      | `BadNotFound`         |
 * | `KILN_TIMEOUT`                                | `BadTimeout`          |
 * | `KILN_NOT_CONNECTED`, `KILN_CIRCUIT_OPEN`, `KILN_CONNECTION_FAILED` | `BadNotConnected` / `BadCommunicationError` |
 * | `KILN_WRITE_REJECTED`, `KILN_DEVICE_ERROR`    | the device's StatusCode in `details.statusCode` when it is bad, else `BadDeviceFailure` |
 * | `KILN_AUDIT_UNAVAILABLE`, `KILN_BUFFER_FULL`  | `BadResourceUnavailable` |
 * | anything else                                 | `BadInternalError`    |
 *
 * A Variant of the wrong type (a Write of a String to a Double tag, a Null) is refused
 * `BadTypeMismatch` by the server before the command path is asked.
 */
export function statusCodeOfError(error: unknown): number {
  if (!KilnError.is(error)) return ServerStatusCodes.BadInternalError;
  switch (error.code) {
    case "KILN_FORBIDDEN":
    case "KILN_AUTHENTICATION_FAILED":
      return ServerStatusCodes.BadUserAccessDenied;
    case "KILN_OUT_OF_RANGE":
      return ServerStatusCodes.BadOutOfRange;
    case "KILN_TAG_NOT_WRITABLE":
      return ServerStatusCodes.BadNotWritable;
    case "KILN_INVALID_TRANSITION":
    case "KILN_LIFECYCLE":
    case "KILN_ABORTED":
      return ServerStatusCodes.BadInvalidState;
    case "KILN_VALIDATION":
      // A value of the right type that breaks a rule (a recipe version 0, a name with NUL, a
      // reason too long): OPC UA Part 4, 7.39 `BadInvalidArgument`. A value of the wrong type
      // never reaches Kiln's command path: the server refuses it `BadTypeMismatch` itself.
      return ServerStatusCodes.BadInvalidArgument;
    case "KILN_TAG_UNKNOWN":
      return ServerStatusCodes.BadNodeIdUnknown;
    case "KILN_NOT_FOUND":
      return ServerStatusCodes.BadNotFound;
    case "KILN_TIMEOUT":
      return ServerStatusCodes.BadTimeout;
    case "KILN_NOT_CONNECTED":
    case "KILN_CIRCUIT_OPEN":
      return ServerStatusCodes.BadNotConnected;
    case "KILN_CONNECTION_FAILED":
      return ServerStatusCodes.BadCommunicationError;
    case "KILN_WRITE_REJECTED":
    case "KILN_DEVICE_ERROR": {
      const device = error.details.statusCode;
      return typeof device === "number" && severityBits(device) >= QualityCodes.Bad
        ? device >>> 0
        : ServerStatusCodes.BadDeviceFailure;
    }
    case "KILN_AUDIT_UNAVAILABLE":
    case "KILN_BUFFER_FULL":
      return ServerStatusCodes.BadResourceUnavailable;
    default:
      return ServerStatusCodes.BadInternalError;
  }
}
