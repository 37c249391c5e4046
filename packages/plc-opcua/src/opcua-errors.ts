import { KilnError, KilnValidationError } from "@kiln/core";
import { StatusCodes } from "node-opcua-client";

/** An OPC UA status code with its symbolic name. */
export interface OpcuaStatus {
  /** The 32-bit StatusCode value. */
  readonly statusCode: number;
  /** The symbolic name, e.g. `BadUserAccessDenied`. */
  readonly statusName: string;
}

/** Symbolic names by status code, the first name wins for a code with aliases. */
const NAMES_BY_CODE: ReadonlyMap<number, string> = (() => {
  const names = new Map<number, string>();
  for (const [name, status] of Object.entries(StatusCodes)) {
    const value = (status as { value?: unknown }).value;
    if (typeof value === "number" && !names.has(value >>> 0)) names.set(value >>> 0, name);
  }
  return names;
})();

/** The symbolic name of a status code (`BadNodeIdUnknown`), or its hex form when unknown. */
export function statusNameOf(statusCode: number): string {
  return NAMES_BY_CODE.get(statusCode >>> 0) ?? `0x${(statusCode >>> 0).toString(16).padStart(8, "0")}`;
}

const STATUS_IN_TEXT = /\b((?:Bad|Uncertain|Good)[A-Za-z0-9]*)\s*\(0x([0-9a-fA-F]{1,8})\)/;

/**
 * Finds the OPC UA status a node-opcua error carries: the ServiceFault's service result when
 * there is one, else the `BadXxx (0x........)` node-opcua prints in its messages.
 */
export function statusOfError(error: unknown): OpcuaStatus | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const response = (error as { response?: { responseHeader?: { serviceResult?: { value?: unknown } } } }).response;
  const serviceResult = response?.responseHeader?.serviceResult?.value;
  if (typeof serviceResult === "number" && serviceResult !== 0) {
    return { statusCode: serviceResult >>> 0, statusName: statusNameOf(serviceResult) };
  }
  const message = (error as { message?: unknown }).message;
  if (typeof message !== "string") return undefined;
  const match = STATUS_IN_TEXT.exec(message);
  if (!match) return undefined;
  return { statusCode: Number.parseInt(match[2]!, 16) >>> 0, statusName: match[1]! };
}

const AUTHENTICATION_FAILURES = new Set([
  "BadUserAccessDenied",
  "BadIdentityTokenInvalid",
  "BadIdentityTokenRejected",
  "BadUserSignatureInvalid",
]);

const CERTIFICATE_FAILURES =
  /^Bad(Certificate\w*|SecurityChecksFailed|SecurityPolicyRejected|SecurityModeRejected|NoValidCertificates)$/;

const CONNECTION_LOSS = new Set([
  "BadTimeout",
  "BadRequestTimeout",
  "BadCommunicationError",
  "BadConnectionClosed",
  "BadConnectionRejected",
  "BadDisconnect",
  "BadNotConnected",
  "BadSecureChannelClosed",
  "BadSecureChannelIdInvalid",
  "BadServerHalted",
  "BadServerNotConnected",
  "BadSessionClosed",
  "BadSessionIdInvalid",
  "BadSessionNotActivated",
  "BadTooManySessions",
  "BadShutdown",
]);

/** True when the status says the user identity was refused. */
export function isAuthenticationFailure(status: OpcuaStatus | undefined): boolean {
  return status !== undefined && AUTHENTICATION_FAILURES.has(status.statusName);
}

/** True when the status says the session or connection is gone (so a new one may help). */
export function isConnectionLoss(status: OpcuaStatus | undefined): boolean {
  return status !== undefined && CONNECTION_LOSS.has(status.statusName);
}

/**
 * Secrets at least this long are masked where they occur; shorter ones withhold the whole text. Masking a
 * 1-3 character password inside other words ("B***d" for "a") shows its letters; a secret of 8 characters or more
 * occurs in a message by chance too rarely for its masking to tell anything (adv13 LOW).
 */
const MASKABLE_SECRET_LENGTH = 8;

/**
 * `text` without `secret`, so error messages never carry any part of a password: every occurrence replaced by
 * `***` for a secret of at least 8 characters; for a shorter one that occurs in it, the whole text is withheld
 * (a fixed sentence that says why), since masking it in place would reveal it. Unchanged when it does not occur.
 */
export function redact(text: string, secret: string | undefined): string {
  if (!secret || !text.includes(secret)) return text;
  if (secret.length >= MASKABLE_SECRET_LENGTH) return text.split(secret).join("***");
  return "(the message was withheld: it contains the text of the password, which is too short to mask)";
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message.split("\n")[0]!.trim();
  return String(error);
}

/** What {@link connectError} needs to know to explain a failure. */
export interface ConnectErrorContext {
  readonly endpointUrl: string;
  readonly securityMode: string;
  readonly securityPolicy: string;
  readonly pkiDir: string;
  readonly secret?: string;
  /**
   * The stage that failed, when known: `"channel"` (TCP, HEL/ACK, OpenSecureChannel) or `"session"`
   * (CreateSession, ActivateSession). A security refusal is reported by it. @default unknown: as a channel
   */
  readonly stage?: "channel" | "session";
}

/** True for a Bad status of a transient shortage of the server ({@link TRANSIENT_STATUSES}): a later request may pass. */
export function isTransientStatus(statusName: string): boolean {
  return TRANSIENT_STATUSES.has(statusName);
}

/**
 * Turns a failure to open a connection or session into the Kiln error a user can act on:
 * `KILN_AUTHENTICATION_FAILED` (not retryable) for a refused identity, a non-retryable
 * `KILN_CONNECTION_FAILED` for certificate and endpoint mismatches (repeating cannot help until
 * the configuration changes), and a retryable `KILN_CONNECTION_FAILED` otherwise (`details.reason`
 * `"lost-during-repair"` when node-opcua's repair of the session lost its channel again).
 */
export function connectError(error: unknown, context: ConnectErrorContext): KilnError {
  if (KilnError.is(error)) return error;
  const status = statusOfError(error);
  // Classified by the whole text, reported redacted: a short password withholds the whole message.
  const raw = messageOf(error);
  const message = redact(raw, context.secret);
  const details: Record<string, unknown> = { endpointUrl: context.endpointUrl };
  if (status) Object.assign(details, status);

  if (isAuthenticationFailure(status)) {
    return new KilnError(
      "KILN_AUTHENTICATION_FAILED",
      `The OPC UA server at ${context.endpointUrl} refused the user identity (${status!.statusName}). Check the identity option (user name and password, or user certificate) and the user's rights on the server.`,
      { cause: error, retryable: false, details },
    );
  }
  if (/cannot find \w+ user token policy/i.test(raw)) {
    return new KilnError(
      "KILN_AUTHENTICATION_FAILED",
      `The OPC UA server at ${context.endpointUrl} does not accept this kind of user identity on the ${context.securityMode} endpoint. Use an identity type the server allows (anonymous, username or certificate).`,
      { cause: error, retryable: false, details: { ...details, reason: "identity-type-not-offered" } },
    );
  }
  if (/server Certificate verification failed/i.test(raw)) {
    return serverCertificateUntrusted(context, status?.statusName, error, details);
  }
  if (context.stage !== undefined) details.stage = context.stage;
  if (status && CERTIFICATE_FAILURES.test(status.statusName) && context.stage === "session") {
    // The channel is open: the server refused CreateSession or ActivateSession on its own checks (the client
    // certificate or signature in the request, an application URI that does not match the certificate).
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `The OPC UA server at ${context.endpointUrl} opened the secure channel but refused to create or activate the session (${status.statusName}). The server's checks of the session request failed: see the server's log; check that the client's application URI matches its certificate (${context.pkiDir}/own/certs) and that the server trusts that certificate for sessions.`,
      { cause: error, retryable: false, details: { ...details, reason: "session-security-checks-failed" } },
    );
  }
  if (status && CERTIFICATE_FAILURES.test(status.statusName)) {
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `The OPC UA server at ${context.endpointUrl} refused the secure channel (${status.statusName}). Most servers must be told to trust a new client: trust the client certificate in ${context.pkiDir}/own/certs on the server, then connect again.`,
      { cause: error, retryable: false, details: { ...details, reason: "client-certificate-rejected" } },
    );
  }
  if (/cannot find (an )?endpoint/i.test(raw)) {
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `The OPC UA server at ${context.endpointUrl} offers no endpoint with security mode ${context.securityMode} and policy ${context.securityPolicy}. Pick a mode and policy the server offers.`,
      { cause: error, retryable: false, details: { ...details, reason: "no-matching-endpoint" } },
    );
  }
  if (/client or session is not usable anymore/i.test(raw)) {
    // node-opcua's repair (re-activating or re-creating the session, re-creating its subscriptions)
    // found its secure channel gone: the link broke again mid-repair, the server was reachable.
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `The connection to the OPC UA server at ${context.endpointUrl} was lost again while the session and its subscriptions were being re-created after an earlier loss (node-opcua: ${message}); reconnecting`,
      { cause: error, retryable: true, details: { ...details, reason: "lost-during-repair" } },
    );
  }
  return new KilnError(
    "KILN_CONNECTION_FAILED",
    `Cannot connect to the OPC UA server at ${context.endpointUrl}: ${message}`,
    {
      cause: error,
      retryable: true,
      details,
    },
  );
}

/**
 * What to do about a server certificate the client's PKI refused with `statusName`, in words (OPC UA
 * Part 4 §6.1.3, the certificate validation steps; the PKI folders of Part 12 §F.1 as node-opcua lays
 * them out under `pkiDir`). The certificate a user trusted stays in `trusted/certs` whatever the
 * verdict (the driver never files it in `rejected/`), so the advice names what is missing instead.
 */
function certificateAdvice(context: ConnectErrorContext, statusName: string | undefined): string {
  const pki = context.pkiDir;
  switch (statusName) {
    case "BadCertificateChainIncomplete":
      return `It is signed by a certificate authority the client does not have: put the CA's certificate in ${pki}/issuers/certs and its revocation list (CRL) in ${pki}/issuers/crl (or the CA's certificate in ${pki}/trusted/certs to trust every certificate it signs, its CRL in ${pki}/trusted/crl).`;
    case "BadCertificateRevocationUnknown":
    case "BadCertificateIssuerRevocationUnknown":
      return `The revocation list (CRL) of the certificate authority that signed it is missing: put the CA's CRL in ${pki}/issuers/crl (${pki}/trusted/crl for a CA in trusted/certs).`;
    case "BadCertificateRevoked":
    case "BadCertificateIssuerRevoked":
      return "Its certificate authority's revocation list says it is revoked: the server needs a new certificate.";
    case "BadCertificateTimeInvalid":
    case "BadCertificateIssuerTimeInvalid":
      return "It (or its issuer's) is expired or not valid yet: check the server's certificate and both machines' clocks.";
    case undefined:
    case "BadCertificateUntrusted":
      return `Trust it: add it to pki.trustedServerCertificates, or move it from ${pki}/rejected to ${pki}/trusted/certs.`;
    default:
      return `Check the server's certificate, and trust it: pki.trustedServerCertificates, or ${pki}/trusted/certs.`;
  }
}

/**
 * The error for a server certificate the client's PKI does not accept (`statusName`, e.g.
 * BadCertificateUntrusted, BadCertificateChainIncomplete): a non-retryable `KILN_CONNECTION_FAILED`
 * with `details.reason` `"server-certificate-untrusted"`, saying what to do for that status (where
 * to put the certificate, its CA or the CA's revocation list).
 */
export function serverCertificateUntrusted(
  context: ConnectErrorContext,
  statusName: string | undefined,
  cause: unknown,
  details: Record<string, unknown> = { endpointUrl: context.endpointUrl },
): KilnError {
  return new KilnError(
    "KILN_CONNECTION_FAILED",
    `The certificate of the OPC UA server at ${context.endpointUrl} is not trusted (${statusName ?? "untrusted"}). ${certificateAdvice(context, statusName)}`,
    {
      cause,
      retryable: false,
      details: { ...details, ...(statusName ? { statusName } : {}), reason: "server-certificate-untrusted" },
    },
  );
}

/**
 * node-opcua's own words for a request that got no answer in time ("Transaction has timed out",
 * "request timed out"). Matched as a phrase, not as any text mentioning "timeout": node-opcua's
 * NODE-OPCUA-W09 refusal mentions the session timeout and is a configuration error.
 */
const REQUEST_TIMED_OUT = /\btimed out\b/i;
/**
 * node-opcua's and Node's words for a socket that got no data or no connection in time
 * ("Timeout(A) in waiting for data on socket", "ERROR in waiting for data on socket(timeout was
 * = … ms)", "connect ETIMEDOUT"): a timeout, so retryable.
 */
const SOCKET_TIMED_OUT = /waiting for data on socket|\bETIMEDOUT\b/;
const TIMEOUT_STATUSES = new Set(["BadTimeout", "BadRequestTimeout"]);

/**
 * Service results that say the server is short of a resource right now (OPC UA Part 4 §7.34
 * "Common StatusCodes", Part 6 §7.1.5 for the TCP ones), so the same request may succeed later
 * without any change on the client: the server is busy or out of memory, a limit on
 * subscriptions or publish requests is full (often with a previous instance's orphan
 * subscriptions, which the server deletes when their lifetime ends), the channel's token was
 * renewed under the request. Such a fault is a retryable `KILN_DEVICE_ERROR`, so acquisition
 * retries the group on its backoff. Every other Bad service result (a bad argument, a refused
 * node, too many operations in one request, …) is non-retryable: repeating the same request
 * cannot help.
 */
const TRANSIENT_STATUSES: ReadonlySet<string> = new Set([
  "BadResourceUnavailable",
  "BadOutOfMemory",
  "BadServerTooBusy",
  "BadTcpServerTooBusy",
  "BadTcpNotEnoughResources",
  "BadMaxConnectionsReached",
  "BadTooManySubscriptions",
  "BadTooManyPublishRequests",
  "BadNoSubscription",
  "BadSecureChannelTokenUnknown",
]);

/**
 * Turns the failure of a whole service call (read, write, browse, create monitored items) into
 * a Kiln error: `KILN_TIMEOUT` or `KILN_CONNECTION_FAILED` (both retryable) when the request
 * timed out or the connection or session is gone, a non-retryable `KILN_VALIDATION` naming
 * `subscriptions.keepAliveMs` when node-opcua refuses a subscription for the session timeout
 * (NODE-OPCUA-W09), `KILN_DEVICE_ERROR` for any other service fault, with the status code in
 * `details`: retryable for a transient shortage ({@link TRANSIENT_STATUSES}) and for a fault
 * without a status, non-retryable for any other Bad status.
 */
export function requestError(error: unknown, operation: string, secret?: string): KilnError {
  if (KilnError.is(error)) return error;
  const status = statusOfError(error);
  // Classified by the whole text, reported redacted: a short password withholds the whole message.
  const raw = messageOf(error);
  const message = redact(raw, secret);
  const details: Record<string, unknown> = { operation };
  if (status) Object.assign(details, status);
  if (/NODE-OPCUA-W09/.test(raw)) {
    // node-opcua's client refused a subscription whose keep-alive period exceeds the session
    // timeout: the configuration, not the network. Repeating cannot help.
    return new KilnValidationError(
      "OPC UA subscription timing",
      [
        {
          path: "subscriptions.keepAliveMs",
          message: `node-opcua refused the subscription: its keep-alive period exceeds the session timeout (${message}); lower subscriptions.keepAliveMs or subscriptions.maxPublishingIntervalMs, or raise timeouts.sessionMs`,
        },
      ],
      { cause: error, retryable: false, details },
    );
  }
  if (
    REQUEST_TIMED_OUT.test(raw) ||
    SOCKET_TIMED_OUT.test(raw) ||
    (status !== undefined && TIMEOUT_STATUSES.has(status.statusName))
  ) {
    return new KilnError("KILN_TIMEOUT", `OPC UA ${operation} timed out: ${message}`, {
      cause: error,
      retryable: true,
      details,
    });
  }
  if (
    isConnectionLoss(status) ||
    /disconnected|ECONNRESET|EPIPE|ECONNREFUSED|not usable|closed|canceled|aborted|connection break/i.test(raw)
  ) {
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `OPC UA ${operation} failed: the connection was lost (${message}).`,
      {
        cause: error,
        retryable: true,
        details,
      },
    );
  }
  return new KilnError("KILN_DEVICE_ERROR", `OPC UA ${operation} failed: ${message}`, {
    cause: error,
    retryable: status === undefined || TRANSIENT_STATUSES.has(status.statusName),
    details,
  });
}

/**
 * node-opcua's own failures of a request it never put on the wire: the session or channel was
 * already unusable when the request was made (`Invalid Channel`, a closed session, no secure
 * channel or transport), or the request waited for a repair that then failed or was disposed.
 */
const FAILED_BEFORE_THE_WIRE =
  /Invalid Channel|should not be used to perform a transaction|waiting for reconnection|No SecureChannel|Invalid client state|Socket is closed ! while processing|Transport disconnected or channel not opened|^Client not connected/;

/**
 * Service results with which a server refuses a whole request before executing any of it: only
 * these prove a write was not applied (docs/adr/0022, amendment fix13d). Every other fault,
 * BadInternalError, BadUnexpectedError, BadOutOfMemory, BadShutdown, BadTimeout..., may come after
 * the server acted (node-opcua's own server answers BadInternalError when a variable's setter
 * throws after storing the value). Sources, OPC UA Part 4 §7.34 "Common StatusCodes" and §5.6.2
 * (the request header's session is checked first), Part 6 §6.7 / §7.1.5:
 * - BadSessionIdInvalid, BadSessionClosed, BadSessionNotActivated: the session of the request
 *   header is unknown, closed or not yet activated (Part 4 §5.6.2, §7.34);
 * - BadSecureChannelIdInvalid, BadSecureChannelClosed, BadSecureChannelTokenUnknown: the message
 *   was refused by the channel layer, below any service (Part 6 §6.7);
 * - BadIdentityTokenInvalid, BadIdentityTokenRejected, BadSecurityChecksFailed,
 *   BadUserAccessDenied: the server refused the caller (as a service result, for the whole
 *   request; Part 4 §7.34);
 * - BadNothingToDo ("nothing to do"), BadTooManyOperations ("could not be processed because it
 *   specified too many operations"), BadServiceUnsupported: the request is not processed
 *   (Part 4 §7.34);
 * - BadServerTooBusy, BadTcpServerTooBusy ("cannot process the request because it is too busy"),
 *   BadRequestTooLarge ("the request message size exceeds limits set by the server"),
 *   BadDecodingError (the server could not decode the request; a client-side decoding failure has
 *   no response to carry a service result): the request was never handed to a service (Part 4
 *   §7.34, Part 6 §7.1.5).
 * BadEncodingLimitsExceeded is left out on purpose: its text ("encoding/decoding limits")
 * covers encoding the response too, which comes after the write was executed.
 */
const REFUSED_BEFORE_EXECUTION: ReadonlySet<string> = new Set([
  "BadSessionIdInvalid",
  "BadSessionClosed",
  "BadSessionNotActivated",
  "BadSecureChannelIdInvalid",
  "BadSecureChannelClosed",
  "BadSecureChannelTokenUnknown",
  "BadIdentityTokenInvalid",
  "BadIdentityTokenRejected",
  "BadSecurityChecksFailed",
  "BadUserAccessDenied",
  "BadNothingToDo",
  "BadTooManyOperations",
  "BadServiceUnsupported",
  "BadServerTooBusy",
  "BadTcpServerTooBusy",
  "BadRequestTooLarge",
  "BadDecodingError",
]);

/**
 * Whether a service result (its name, as {@link statusNameOf} gives it) means the server refused
 * the whole request before executing any of it ({@link REFUSED_BEFORE_EXECUTION}): the one rule
 * for "a write answered with this fault was not applied", used by {@link writeNotApplied} and by
 * the wire-fate tracker (`opcua-wire-fate.ts`).
 */
export function refusedBeforeExecution(statusName: string): boolean {
  return REFUSED_BEFORE_EXECUTION.has(statusName);
}

/**
 * Whether a WriteRequest handed to node-opcua's `session.write` is known not to have been
 * applied by the server (docs/adr/0022, amendments fix13y, fix13d): node-opcua failed it before it
 * went out ({@link FAILED_BEFORE_THE_WIRE}), or the server answered the whole request with a
 * service fault that refuses it before execution ({@link refusedBeforeExecution}). Any other
 * service fault (BadInternalError, BadTimeout...: the server may have acted before it faulted), a
 * timeout, a connection lost or broken by the link watchdog while the request was out, an abort,
 * an unknown error may have reached the server and been applied: `false`. `fate`, what the wire
 * says about this WriteRequest (`opcua-wire-fate.ts`), decides first for an error node-opcua gave
 * (not Kiln's own abort or deadline, after which node-opcua may still send a request it holds):
 * never put on a channel (held during a repair and failed from there), or last answered with a
 * refusal before execution, is not applied, whatever the error node-opcua relays for it then (the
 * repair's own failure, "Cannot recreate session"...; docs/adr/0022, amendment fix13z).
 */
export function writeNotApplied(error: unknown, fate?: "unsent" | "sent" | "refused"): boolean {
  if (typeof error !== "object" || error === null || KilnError.is(error)) return false;
  if (fate === "unsent" || fate === "refused") return true;
  const response = (error as { response?: { responseHeader?: { serviceResult?: { value?: unknown } } } }).response;
  const serviceResult = response?.responseHeader?.serviceResult?.value;
  if (typeof serviceResult === "number" && serviceResult !== 0) {
    return refusedBeforeExecution(statusNameOf(serviceResult));
  }
  const message = (error as { message?: unknown }).message;
  return typeof message === "string" && FAILED_BEFORE_THE_WIRE.test(message.trim());
}

/**
 * `error` with `details.sent` (the driver contract, `PlcDriver.write`): `false` when the write
 * request never reached the server or the server refused it before executing it, and its message
 * ends "(not applied)"; `true` when it may have been applied (it was sent and its answer is
 * unknown, or the server faulted it after it may have acted), then not `retryable` (repeating a
 * write that may have landed can apply it twice) and its message says the server may have
 * applied it. Errors other than
 * `KilnError` are returned as they are.
 */
export function withWriteSent(error: unknown, sent: boolean): unknown {
  if (!KilnError.is(error)) return error;
  if (error.details.sent === sent && (!sent || !error.retryable)) return error;
  const message = sent
    ? `${error.message} The write was sent: the server may have applied it.`
    : error.message.includes("(not applied)")
      ? error.message
      : `${error.message} (not applied)`;
  return new KilnError(error.code, message, {
    cause: error.cause ?? error,
    retryable: sent ? false : error.retryable,
    details: { ...error.details, sent },
  });
}
