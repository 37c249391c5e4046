/** How far a value can be trusted. */
export type QualitySeverity = "good" | "uncertain" | "bad";

/**
 * The quality of a sample: a severity, a numeric code in the OPC UA StatusCode space
 * (so an OPC UA server's code passes through unchanged), and a human reason where one helps.
 */
export interface Quality {
  /** `good`, `uncertain` or `bad`. */
  readonly severity: QualitySeverity;
  /** An OPC UA StatusCode value (32-bit unsigned). See {@link QualityCodes}. */
  readonly code: number;
  /** Why the quality is not good, in words ("no communication, last usable value"). */
  readonly reason?: string;
}

/** The OPC UA StatusCodes Kiln itself assigns. Any other valid StatusCode may appear too. */
export const QualityCodes = {
  Good: 0x00000000,
  Uncertain: 0x40000000,
  UncertainNoCommunicationLastUsableValue: 0x408f0000,
  UncertainLastUsableValue: 0x40900000,
  Bad: 0x80000000,
  BadInternalError: 0x80020000,
  BadCommunicationError: 0x80050000,
  BadTimeout: 0x800a0000,
  BadUserAccessDenied: 0x801f0000,
  BadNoCommunication: 0x80310000,
  BadWaitingForInitialData: 0x80320000,
  BadNodeIdUnknown: 0x80340000,
  BadNotReadable: 0x803a0000,
  BadNotWritable: 0x803b0000,
  BadOutOfRange: 0x803c0000,
  BadTypeMismatch: 0x80740000,
  BadNoData: 0x809b0000,
  BadConfigurationError: 0x80890000,
  BadNotConnected: 0x808a0000,
  BadDeviceFailure: 0x808b0000,
  BadOutOfService: 0x808d0000,
} as const;

/** The one shared `good` quality. */
export const GOOD: Quality = Object.freeze({ severity: "good", code: QualityCodes.Good });

/**
 * Builds a quality. One rule on every store: a quality's severity is the severity of its code
 * (the code's top two bits, see {@link severityOfStatusCode}), and stores refuse a sample whose
 * two disagree (`checkSample`). `code` defaults to the generic code of the severity; a `code`
 * whose severity bits disagree with `severity` is replaced by that generic code (the stated
 * severity wins, so `quality("bad", "probe broken", 0)` is bad, code `0x80000000`).
 */
export function quality(severity: QualitySeverity, reason?: string, code?: number): Quality {
  const resolved =
    code !== undefined && severityOfStatusCode(code) === severity
      ? code
      : severity === "good"
        ? QualityCodes.Good
        : severity === "uncertain"
          ? QualityCodes.Uncertain
          : QualityCodes.Bad;
  return reason === undefined ? { severity, code: resolved } : { severity, code: resolved, reason };
}

/**
 * Severity of an OPC UA StatusCode: its top two bits (00 good, 01 uncertain, 10/11 bad).
 */
export function severityOfStatusCode(statusCode: number): QualitySeverity {
  const top = (statusCode >>> 30) & 0b11;
  return top === 0 ? "good" : top === 1 ? "uncertain" : "bad";
}

/** Maps an OPC UA StatusCode (and optionally its name) to a Kiln quality, keeping the code. */
export function qualityFromStatusCode(statusCode: number, reason?: string): Quality {
  const code = statusCode >>> 0;
  return quality(severityOfStatusCode(code), reason, code);
}

const RANK: Readonly<Record<QualitySeverity, number>> = { good: 0, uncertain: 1, bad: 2 };

/** Qualities {@link consistentQuality} checked and may hand on as they are (frozen plain data). */
const ADOPTED = new WeakSet<object>();

/**
 * Whether `quality` reads the same forever: frozen, a plain object, and its fields its own data
 * properties (no getter, nothing inherited). Checked once per object (producers share qualities).
 */
function isFrozenPlainData(quality: object): boolean {
  if (!Object.isFrozen(quality)) return false;
  const prototype = Object.getPrototypeOf(quality) as unknown;
  if (prototype !== Object.prototype && prototype !== null) return false;
  for (const field of ["severity", "code", "reason"]) {
    const descriptor = Object.getOwnPropertyDescriptor(quality, field);
    if (descriptor === undefined ? field !== "reason" : !("value" in descriptor)) return false;
  }
  return true;
}

/**
 * @internal `given` when it is a quality every store takes (`checkSample`'s rules: severity good,
 * uncertain or bad; code a 32-bit unsigned integer whose severity bits agree with it; reason a
 * string when present); otherwise the quality it must be shown as, never better than either half:
 * the worse of the stated severity and the code's (an unknown severity or a code that is not a
 * status code counts as bad), the code kept when its bits say that severity (so a device's
 * `BadDeviceFailure` survives a producer that called it good), and a reason naming what was wrong.
 * The one place the current value table makes a producer's quality safe (principle 10: never
 * show a wrong value as good), so what is shown live is also what the store keeps.
 */
export function consistentQuality(given: unknown): Quality {
  if (typeof given === "object" && given !== null && ADOPTED.has(given)) return given as Quality;
  const candidate = (typeof given === "object" && given !== null ? given : {}) as Partial<
    Record<keyof Quality, unknown>
  >;
  // Each field read once: a getter answering differently at each read cannot pass the check with
  // one answer and be shown with another (adversarial review 15x).
  const { severity, code, reason } = candidate;
  const severityKnown = severity === "good" || severity === "uncertain" || severity === "bad";
  const codeValid = typeof code === "number" && Number.isInteger(code) && code >= 0 && code <= 0xffffffff;
  const reasonValid = reason === undefined || typeof reason === "string";
  if (severityKnown && codeValid && reasonValid && severityOfStatusCode(code) === severity) {
    if (isFrozenPlainData(given as object)) {
      ADOPTED.add(given as object);
      return given as Quality;
    }
    // What was checked is what is kept: a frozen copy of the values read.
    return Object.freeze(reason === undefined ? { severity, code } : { severity, code, reason });
  }
  const stated: QualitySeverity = severityKnown ? severity : "bad";
  const fromCode: QualitySeverity = codeValid ? severityOfStatusCode(code) : "bad";
  const resolved = RANK[stated] >= RANK[fromCode] ? stated : fromCode;
  const problem =
    typeof given !== "object" || given === null
      ? "the source gave no quality"
      : !severityKnown
        ? `the source gave severity ${JSON.stringify(String(severity))}`
        : !codeValid
          ? `the source gave code ${typeof code === "number" ? String(code) : typeof code}, not a status code`
          : !reasonValid
            ? `the source gave a reason of type ${typeof reason}`
            : `the source gave severity ${severity} with status code 0x${code.toString(16).padStart(8, "0")} (${fromCode})`;
  const said = typeof reason === "string" && reason !== "" ? `${reason}; ` : "";
  return quality(resolved, `${said}inconsistent quality: ${problem}`, codeValid ? code : undefined);
}
