import type { Clock, Logger } from "@kiln/core";
import { MAX_DRIVER_DURATION_MS, isLogger } from "@kiln/core/driver-kit";
import { z } from "zod";
import { isEndpointUrlRefusal, parseEndpointUrl } from "./opcua-endpoint-url";

/** A duration option in whole ms, 1 ms to 1 hour (core's driver bound: no timer overflows, review 13j L2). */
const positiveMs = z
  .number()
  .int()
  .positive()
  .max(MAX_DRIVER_DURATION_MS, `must be at most ${MAX_DRIVER_DURATION_MS} (1 hour)`);
const limit = z.number().int().positive().optional();

const isClock = (value: unknown): value is Clock =>
  typeof value === "object" &&
  value !== null &&
  ["now", "setTimeout", "clearTimeout", "sleep"].every(
    (method) => typeof (value as Record<string, unknown>)[method] === "function",
  );

/**
 * zod schema of {@link OpcuaDriverOptions}. Parsing applies every default; the driver's
 * constructor runs it and throws `KilnValidationError` naming each bad field.
 */
export const opcuaDriverOptionsSchema = z
  .object({
    endpointUrl: z.string().superRefine((url, context) => {
      // One rule for endpoint URLs (src/opcua-endpoint-url.ts): host name, IPv4 or bracketed IPv6, port 1..65535.
      const parsed = parseEndpointUrl(url);
      if (isEndpointUrlRefusal(parsed)) context.addIssue({ code: "custom", message: parsed.rule });
    }),
    name: z.string().min(1).optional(),
    security: z
      .object({
        mode: z.enum(["None", "Sign", "SignAndEncrypt"]).default("SignAndEncrypt"),
        policy: z.enum(["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]).default("Basic256Sha256"),
      })
      .strict()
      .prefault({}),
    identity: z
      .discriminatedUnion("type", [
        z.object({ type: z.literal("anonymous") }).strict(),
        z.object({ type: z.literal("username"), userName: z.string().min(1), password: z.string() }).strict(),
        z
          .object({
            type: z.literal("certificate"),
            certificateFile: z.string().min(1),
            privateKeyFile: z.string().min(1),
          })
          .strict(),
      ])
      .default({ type: "anonymous" }),
    pki: z
      .object({
        dir: z.string().min(1).optional(),
        trustedServerCertificates: z.array(z.union([z.string().min(1), z.instanceof(Uint8Array)])).default([]),
        automaticallyAcceptUnknownCertificate: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    timeouts: z
      .object({
        connectMs: positiveMs.default(15_000),
        requestMs: positiveMs.default(10_000),
        sessionMs: positiveMs.default(60_000),
        keepAliveMs: positiveMs.default(5_000),
      })
      .strict()
      .prefault({}),
    connectionStrategy: z
      .object({
        maxRetry: z.number().int().min(0).default(2),
        initialDelayMs: positiveMs.default(1_000),
        maxDelayMs: positiveMs.default(20_000),
        randomisationFactor: z.number().min(0).max(1).default(0.1),
      })
      .strict()
      // node-opcua's backoff (the `backoff` package's strategy) throws when maxDelay is not above
      // initialDelay, inside its connect and its reconnect loop (fix13x).
      .refine((strategy) => strategy.maxDelayMs > strategy.initialDelayMs, {
        message:
          "maxDelayMs must be greater than initialDelayMs (node-opcua's reconnect backoff refuses a maximal delay equal to or below the initial one)",
        path: ["maxDelayMs"],
      })
      .prefault({}),
    subscriptions: z
      .object({
        maxPublishingIntervalMs: positiveMs.default(1_000),
        keepAliveMs: positiveMs.default(5_000),
      })
      .strict()
      .refine((subscriptions) => subscriptions.keepAliveMs >= 3 * subscriptions.maxPublishingIntervalMs, {
        message:
          "keepAliveMs must be at least 3 × maxPublishingIntervalMs (OPC UA clients ask for 3 or more publishing intervals per keep-alive)",
        path: ["keepAliveMs"],
      })
      .prefault({}),
    monitoredItemRetry: z
      .object({ initialDelayMs: positiveMs.default(1_000), maxDelayMs: positiveMs.default(30_000) })
      .strict()
      .prefault({}),
    limits: z
      .object({
        maxNodesPerRead: limit,
        maxNodesPerWrite: limit,
        maxNodesPerBrowse: limit,
        maxMonitoredItemsPerCall: limit,
      })
      .strict()
      .prefault({}),
    applicationName: z.string().min(1).default("Kiln"),
    applicationUri: z.string().min(1).optional(),
    logger: z.custom<Logger>(isLogger, "must be a Logger (debug, info, warn, error, child)").optional(),
    clock: z.custom<Clock>(isClock, "must be a Clock (now, setTimeout, clearTimeout, sleep)").optional(),
    random: z
      .custom<() => number>((value) => typeof value === "function", "must be a function returning a number in [0, 1)")
      .optional(),
  })
  .strict()
  .refine((options) => options.subscriptions.keepAliveMs <= options.timeouts.sessionMs, {
    message:
      "subscriptions.keepAliveMs must not exceed timeouts.sessionMs: a session idle for a keep-alive period would time out (node-opcua's NODE-OPCUA-W09 check)",
    path: ["subscriptions", "keepAliveMs"],
  });

/**
 * Options of {@link OpcuaDriver}, as a user writes them (defaults not yet applied).
 *
 * - `endpointUrl`: `opc.tcp://host:port[/path]`; host a name, an IPv4 address or an IPv6 address in
 *   brackets (`opc.tcp://[fd00::5]:4840`, a zone as `%25`: `opc.tcp://[fe80::1%25eth0]:4840`); port 1 to
 *   65535 (`KILN_VALIDATION` at `endpointUrl` naming the rule otherwise).
 * - `name`: the connection's name in events and breakers. @default `opcua:<host:port>`
 * - `security.mode`: `None`, `Sign` or `SignAndEncrypt`. @default "SignAndEncrypt"
 * - `security.policy`: `Basic256Sha256`, `Aes128_Sha256_RsaOaep` or `Aes256_Sha256_RsaPss`. Ignored with mode `None`. @default "Basic256Sha256"
 * - `identity`: `{ type: "anonymous" }`, `{ type: "username", userName, password }` or
 *   `{ type: "certificate", certificateFile, privateKeyFile }` (PEM or DER files). @default anonymous
 * - `pki.dir`: folder holding the client certificate (`own/`) and trusted/rejected server
 *   certificates (`trusted/`, `rejected/`); created on first connect. @default `~/.kiln/opcua/pki`
 * - `pki.trustedServerCertificates`: server certificates to trust, as file paths (PEM or DER),
 *   PEM text or DER bytes. An unknown server certificate is otherwise rejected.
 * - The files these options name (`pki.trustedServerCertificates[i]` given as a path,
 *   `identity.certificateFile`, `identity.privateKeyFile`) are read at each `connect()`, before
 *   anything is dialled: one that cannot be read fails it `KILN_VALIDATION` (not retryable, so
 *   the control system does not re-dial it) at its field path.
 * - `pki.automaticallyAcceptUnknownCertificate`: trust any server certificate on first sight.
 *   Convenient on a lab bench; never in production. @default false
 * - Every duration option (`timeouts.*`, `connectionStrategy.*DelayMs`, `subscriptions.*Ms`,
 *   `monitoredItemRetry.*DelayMs`) is a whole number of ms from 1 to 3,600,000 (1 hour,
 *   `MAX_DRIVER_DURATION_MS`: Node timers overflow past 2^31 − 1 ms and fire at once).
 * - `timeouts`: `connectMs` (whole `connect()`), `requestMs` (each service call of the
 *   application's `read`, `write`, `browse`, `subscribe`: unanswered after it, the call fails
 *   `KILN_TIMEOUT`; below node-opcua's 5 s minimum the driver ends the Read and Write requests
 *   itself, while `browse` and `subscribe` wait at least 5 s: their answers name server resources,
 *   amendment fix13ae), `sessionMs`
 *   (session timeout requested; the driver adapts to a shorter one the server grants), `keepAliveMs`
 *   (session keep-alive: dead-session and stalled-link detection; `min(keepAliveMs, granted session
 *   timeout / 2)` in effect). A link on which the server answers nothing (no response, no service
 *   fault) for `max(2 × keep-alive + response time, the deadline of the oldest request in flight)`
 *   is taken as lost: status `reconnecting`, subscribed tags `uncertain` with the reason, reads
 *   failing, and a reconnect at once. The response time is a smoothed maximum of measured round
 *   trips (Publish round trips only lower it), capped at `requestMs`; a request's deadline is
 *   `requestMs` after it was sent, and only requests of the application's calls (`read`, `write`,
 *   `browse`, `subscribe`) have one: requests the driver or node-opcua send on their own behalf
 *   (keep-alives, re-creations, retries, deletes) never hold the bound; so with nothing in flight the bound is at most
 *   `2 × keep-alive + requestMs`, and it is never widened. Each stage (TCP, HEL/ACK) of a
 *   reconnect attempt is bounded by `2 × keep-alive + 2 × response time`, doubled per
 *   attempt in a row that timed out at it (a refusal or reset does not grow it), at most `connectMs`
 *   (docs/adr/0022, amendments fix13e, fix13f, fix13g, fix13u, fix13z).
 * - `connectionStrategy`: `maxRetry` (attempts of the first connect; once connected, the driver
 *   reconnects until `close()`), `initialDelayMs`, `maxDelayMs` (greater than `initialDelayMs`:
 *   node-opcua's backoff refuses equal delays; `KILN_VALIDATION` at `connectionStrategy.maxDelayMs`
 *   otherwise), `randomisationFactor`. Always passed to node-opcua complete.
 * - `subscriptions.maxPublishingIntervalMs`: upper bound of each OPC UA subscription's publishing
 *   interval. A scan group publishes at its period or at this bound, whichever is shorter; its
 *   monitored items still sample at the group's period. It bounds how long a subscription Kiln can
 *   no longer reach lingers on the server (see `keepAliveMs`). @default 1000
 * - `subscriptions.keepAliveMs`: keep-alive period of each subscription with no changes to report
 *   (`maxKeepAliveCount` = keepAliveMs / publishing interval, rounded down). The subscription's
 *   lifetime is three keep-alive periods (`lifetimeCount` = 3 × `maxKeepAliveCount`, the minimum
 *   of OPC UA Part 4 5.13.2): a subscription nobody sends Publish requests to (Kiln's own, left
 *   behind after a connection loss) is deleted by the server at most `3 × keepAliveMs` (15 s by
 *   default) after its session is gone. At least 3 × `maxPublishingIntervalMs`, at most
 *   `timeouts.sessionMs`. @default 5000
 * - `monitoredItemRetry`: backoff for monitored items the server refused (BadNodeIdUnknown...).
 * - `limits`: client-side caps on top of the server's operation limits.
 * - `logger`, `clock`: Kiln ports. @default silentLogger, SystemClock
 * - `random`: source of randomness in `[0, 1)` for reconnect and retry jitter, for tests. @default Math.random
 */
export type OpcuaDriverOptions = z.input<typeof opcuaDriverOptionsSchema>;

/** {@link OpcuaDriverOptions} with every default applied. */
export type ResolvedOpcuaDriverOptions = z.output<typeof opcuaDriverOptionsSchema>;
