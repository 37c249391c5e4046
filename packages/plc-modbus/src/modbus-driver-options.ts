import { z } from "zod";
import type { Clock, Logger } from "@kiln/core";
import { MAX_DRIVER_DURATION_MS, checkBackoff, isLogger } from "@kiln/core/driver-kit";
import { KilnError } from "@kiln/core";
import { MODBUS_AREAS, MODBUS_BYTE_ORDERS, type ModbusByteOrder } from "./modbus-address";
import type { ModbusClient } from "./modbus-client";
import type { ModbusAddressRange, ModbusReadLimits } from "./modbus-read-planner";

/** Modbus TCP: a device or gateway on the network. */
export interface ModbusTcpTransport {
  /** Modbus TCP. */
  readonly kind: "tcp";
  /** Host name or IP address. */
  readonly host: string;
  /** @default 502 */
  readonly port?: number;
  /**
   * How the driver proves that an answer frame ends where the next one starts (Modbus TCP has no frame
   * delimiter, so an answer cut short on the way and completed by the next bytes would look whole). A
   * frame is delivered once a well-formed answer to a known request follows it, or once nothing has
   * arrived after it for `frameQuietGapMs`; in `"default"` a frame that nothing follows is delivered at
   * once when no other request is in flight, `"strict"` waits the quiet gap for it too. Use `"strict"` for
   * gateways known to cut answers short or resend them: it costs the quiet gap (about `frameQuietGapMs`
   * plus up to 1 ms of timer delay) on every request sent one at a time, e.g. 150-200 ms per scan of 62
   * requests at `maxInFlight` 1. What the default leaves open: a cut answer completed exactly at the end of
   * the bytes received so far while it is the only request in flight (see "Framing on Modbus
   * TCP" in docs/drivers/modbus.md). @default "default"
   */
  readonly frameCheck?: "default" | "strict";
  /**
   * The quiet gap (ms, real time, 0.5-1000) with no byte arriving after an answer that proves it was not
   * cut short (see `frameCheck`). The rest of a cut answer arriving later than this is not caught: raise
   * it for a gateway that sends an answer in parts spread wider. @default 2
   */
  readonly frameQuietGapMs?: number;
  /**
   * Treat the connection's answers as one stream that may be shifted: many serial gateways (TCP to RTU,
   * "transparent" mode) stamp whatever RTU answer comes back with the MBAP header of the newest request, so a
   * late, repeated or old-connection answer arrives with another request's transaction id and fits it when it
   * has the same shape. With the guard, after any anomaly (a timeout, an answer that does not fit, an answer
   * nobody waited for, a connection lost with requests on the wire) no read or write goes out before a fence (a
   * read of a size no answer on its way has) got its own answer; the state survives reconnects; and a request
   * that ended without its own answer keeps its shape back until its send time plus twice `requestTimeoutMs`
   * unless a fence proved its answer came (ADR 0041; "Gateways to serial lines" in docs/drivers/modbus.md,
   * with what is and is not guaranteed). Cost: a fence (one request, sent alone) after each anomaly, and the
   * requests that wait for it or for a late bound; on a peer that often answers late or twice that is far more
   * than one request. Measured on a native device with correct transaction ids (review adv12 `fuzz-tcp`, 150 ms
   * request timeout, 1 s reads, 100 scans, 15% duplicate answers): with 3% late answers 76-79% of samples good
   * with the guard, 84-88% without; with 5% late one unit 14% with, 64% without; with 25% late 0.5-4% with,
   * 3-9% without; no wrong value either way. Turn it off only for a device that stamps every answer with its own
   * request's transaction id (a native Modbus TCP device, not a gateway to a serial line). @default true
   */
  readonly lateAnswerGuard?: boolean;
  /**
   * The forget horizon (ms, with `lateAnswerGuard`) of an answer that a device seen answering out of order
   * owes and never sends: from its request's send, requests of the same shape fail unsent (their tags bad,
   * the reason naming the shape and this release time), and exceptions of its function are not trusted (they
   * count against no unit and teach no hole), until the answer comes or this horizon passes. Then the driver
   * sends no further request and resynchronises the link as soon as no request is on the wire (normally the
   * pause between reads; under reads back to back, right after the requests on the wire, and the requests a
   * read in progress still has queued fail retryable, "not connected"): it closes the TCP connection and opens
   * a new one, on which no answer of the old one can come (needs `reconnect.enabled`; without it the shape
   * stays held until the answer comes). Values below the late bound (twice `requestTimeoutMs`) are raised to
   * it. ADR 0041, amendments fix12v, fix12y and fix12u (2026-12-01). @default 30000
   */
  readonly lostAnswerResyncMs?: number;
  /**
   * Never send two requests of one answer shape (function code and byte count; the unit is left out, as for the
   * guard) back to back while the transaction ids are not proven (with `lateAnswerGuard`). For a peer that stamps
   * whatever answer it forwards with the newest request's transaction id (a transparent TCP-to-RTU gateway) or
   * that repeats answers (a repeater, a gateway retrying): one extra answer frame of the right size taken by a
   * request leaves that request's own answer to come next, and without this the next request of the same shape
   * takes it, **good and wrong**, and so on while same-size requests follow each other (measured: 1-3 wrong values
   * a scan of 20 same-size blocks, a whole chain of reads back to back). With it, a read of another size (built
   * from a read that answered) goes alone between two same-shape requests sent less than their late bound (twice
   * `requestTimeoutMs`) apart: the shifted answer lands on it, is refused or dropped and reported (the answer
   * stream is fenced), and at most the extra frame itself is taken (it cannot be told from the answer it stands
   * for: one wrong, good value per extra frame). The second read of a bit write's read-modify-write goes without
   * one (the two reads' agreement is its check).
   *
   * **On by default, and free on a peer that proves its ids** (fix12e): the first time two same-shape requests
   * would follow each other on a connection, the driver sends two reads of other sizes together instead; a native
   * Modbus TCP device answers each with its own transaction id (data or an exception), which proves its ids for
   * that connection: the plan's order stands, and only after 8 requests of one size in a row does a read of another
   * size still go between (a check a shifted stream cannot pass, fix12g; free on a plan whose block sizes vary)
   * (cost: those two reads, once per connection). A peer that stamps the newest request's id fails the proof (one read times out, counted
   * against no unit; the other's answer is refused or dropped; the answer stream is fenced); separation then stays
   * on for the connection and each read's blocks are ordered so sizes alternate (no cost on a plan with two or
   * more block sizes; up to one more request per block on a plan whose blocks all have one size: ADR 0041,
   * amendment fix12d). No proof on a peer seen answering out of order. Ids are also proven by pipelined answers
   * (`maxInFlight` > 1). Every new connection proves them again.
   *
   * Not a proof against a gateway that answers pipelined requests with their own ids but stamps an extra
   * (repeated) frame with the newest one (see docs/drivers/modbus.md, "Gateways to serial lines"). `false` turns
   * the rule and the proof off (the default before fix12e): only for a peer known to stamp each answer with its
   * own request's id. Ignored without `lateAnswerGuard`. @default true
   */
  readonly separateShapes?: boolean;
}

/** Modbus RTU over a serial port; every answer is checked against its request (see docs/drivers/modbus.md, "Serial lines"). */
export interface ModbusRtuTransport {
  /** Modbus RTU on a serial line. */
  readonly kind: "rtu";
  /** Serial device path, e.g. `/dev/ttyUSB0` or `COM3`. */
  readonly path: string;
  /** Bits per second, 1 to 12 000 000 (`KILN_VALIDATION` naming `transport.baudRate` above it). @default 9600 */
  readonly baudRate?: number;
  /** Data bits per character (Modbus RTU uses 8). @default 8 */
  readonly dataBits?: 5 | 6 | 7 | 8;
  /** Stop bits per character (Modbus over serial line, §2.5.1: 1 with parity, 2 without). @default 1 */
  readonly stopBits?: 1 | 2;
  /** @default "none" */
  readonly parity?: "none" | "even" | "odd" | "mark" | "space";
}

/** Where the driver connects. */
export type ModbusTransport = ModbusTcpTransport | ModbusRtuTransport;

/** Read planner settings. */
export interface ModbusPlannerOptions extends Partial<ModbusReadLimits> {
  /** Address ranges the planner never reads through (an address inside one is read only by its own tag). */
  readonly forbidden?: readonly ModbusAddressRange[];
  /**
   * Exception codes after which a coalesced read is split to isolate the bad address. The transient codes
   * 4, 5, 6, 10 and 11 are never split on nor learned, even when listed. @default [2, 3]
   */
  readonly splitOnExceptions?: readonly number[];
  /**
   * Longest time a learned hole (an address the device refuses) goes unread: it is probed again first after
   * `min(30 s, relearnAfterMs)`, then twice as long after each new refusal, up to this. Learned barriers are
   * retried after this long. Everything learned is forgotten on reconnect. @default 600000
   */
  readonly relearnAfterMs?: number;
  /**
   * A tag refused while read alone is learned as a hole only after this many reads in a row refused it (a
   * refusal inside a bigger request, confirmed by a split, is learned at once). A read in which a unit refused
   * every address it was asked (more than one, none served) counts for none of them: that unit has a unit-level
   * problem (misconfigured, starting up), logged once as a warning; so does a read in which every address of an
   * area of a unit was refused (more than one, none of that area served): the area is refusing, not each address.
   * @default 3
   */
  readonly learnAfterRefusals?: number;
  /**
   * Least time (ms) from the first to the last of the `learnAfterRefusals` refusals that teach a hole (a split's
   * proof needs none): a device that refuses for a moment while it boots or reloads its map teaches nothing,
   * however fast it is scanned. @default 10000
   */
  readonly learnRefusalSpanMs?: number;
}

/** Write settings. */
export interface ModbusWriteOptions {
  /** Most registers per write request (function code 16); the protocol allows 123. @default 123 */
  readonly maxRegistersPerWrite?: number;
  /** Most coils per write request (function code 15); the protocol allows 1968. @default 1968 */
  readonly maxCoilsPerWrite?: number;
  /** Use function codes 5 and 6 for one coil or one register; false always uses 15 and 16. @default true */
  readonly singleWriteFunctions?: boolean;
  /** How a `bit` tag is written: read, change the bit, write back (serialised); or function code 22. @default "read-modify-write" */
  readonly bitWriteMode?: "read-modify-write" | "mask-write";
}

/** Reconnection after a connection loss. */
export interface ModbusReconnectOptions {
  /** @default true */
  readonly enabled?: boolean;
  /** Delay before the first attempt. @default 250 */
  readonly initialDelayMs?: number;
  /** The delay doubles (see `multiplier`) up to this cap. @default 30000 */
  readonly maxDelayMs?: number;
  /** Factor each delay grows by after a failed attempt. @default 2 */
  readonly multiplier?: number;
  /** Each delay is shortened by up to this fraction at random, so many drivers do not retry in step. @default 0.2 */
  readonly jitter?: number;
}

/**
 * Health of each unit (slave id) behind one connection, so one dead unit behind a gateway does not take the
 * others down. See "Gateways and unit health" in docs/drivers/modbus.md.
 */
export interface ModbusUnitHealthOptions {
  /** Timeouts in a row (or gateway exceptions 10/11) after which a unit is offline. @default 3 */
  readonly offlineAfter?: number;
  /** While a unit is offline its tags are answered bad without traffic; one request probes it, first after this long. @default 1000 */
  readonly probeInitialDelayMs?: number;
  /** Probe spacing doubles up to this cap. @default 60000 */
  readonly probeMaxDelayMs?: number;
}

/** Options of {@link ModbusDriver}. */
export interface ModbusDriverOptions {
  /** Where to connect. */
  readonly transport: ModbusTransport;
  /** Connection name used in events and breakers. @default "modbus:<host>:<port>" or "modbus:<path>" */
  readonly name?: string;
  /** Unit id (slave id) of tags that do not give one. @default 1 */
  readonly unitId?: number;
  /** Byte order of tags that do not give one. @default "ABCD" */
  readonly byteOrder?: ModbusByteOrder;
  /**
   * A request with no reply after this long fails with `KILN_TIMEOUT` / quality bad. @default 1000
   *
   * Keep it below the core's `acquisition.timeoutMs` (the read's deadline, default 2000). A read returns
   * before its deadline whatever is on the wire, so with a longer request timeout a silent unit is found
   * out only after the read returned (its tags are bad for that scan; the timeout still counts towards
   * `unitHealth.offlineAfter`). The driver warns once (logger `warn` with both numbers) and does not clamp:
   * a shorter timeout would count a live but slow unit's late answers as failures. A request on the wire is
   * never cut short by its caller's signal; only requests not yet sent are dropped.
   */
  readonly requestTimeoutMs?: number;
  /** Opening the connection fails after this long. @default 5000 */
  readonly connectTimeoutMs?: number;
  /** Quiet time between requests, for slow devices and gateways. @default 0 */
  readonly interRequestDelayMs?: number;
  /**
   * Requests on the wire at once on a Modbus TCP connection (pipelining): Modbus TCP answers carry the
   * request's transaction id, so a read's requests can go out together, each with its own timeout. Many
   * gateways and small devices take one request at a time and drop or mix up the rest: turn this on only for
   * a device known to handle it (see "Pipelining" in docs/drivers/modbus.md). Modbus RTU is always 1.
   * An integer from 1 to 64 (`KILN_VALIDATION` otherwise). A device seen dropping pipelined requests gets 1
   * for 5 minutes; one that answers with wrong transaction ids gets 1 for good (`ModbusDriver.maxInFlight`).
   * Not detectable: a device that, after proving its ids right, swaps the ids of two same-shape answers in
   * flight together (each value lands in the other's tags, good); see "Pipelining" in docs/drivers/modbus.md.
   * @default 1
   */
  readonly maxInFlight?: number;
  /**
   * After this many timeouts in a row with no answer from any unit in between, the connection itself is
   * treated as lost and reopened; 0 never. Timeouts of one unit while others answer never drop the
   * connection (see `unitHealth`). @default 3 for TCP, 0 for RTU
   */
  readonly maxConsecutiveTimeouts?: number;
  /** Per-unit health: when a unit is offline and how often it is probed. */
  readonly unitHealth?: ModbusUnitHealthOptions;
  /** Read planner settings. */
  readonly planner?: ModbusPlannerOptions;
  /** Write settings. */
  readonly write?: ModbusWriteOptions;
  /** Reconnection settings. */
  readonly reconnect?: ModbusReconnectOptions;
  /** Source of time for timeouts, delays and backoff. @default new SystemClock() */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
  /** Creates the modbus-serial client for each connection. @default () => new ModbusRTU() */
  readonly clientFactory?: () => ModbusClient;
  /** Source of randomness in `[0, 1)` for the reconnect jitter, for tests. @default Math.random */
  readonly random?: () => number;
}

const areaSchema = z.enum(MODBUS_AREAS);

/** The longest timeout, delay or probe interval accepted (ms): 1 hour, core's driver bound. Longer is a typo, not a setting. */
const MAX_DURATION_MS = MAX_DRIVER_DURATION_MS;

/** The highest `baudRate` accepted: what fast USB-serial adapters (FTDI FT232H class) reach, 12 Mbaud. */
const MAX_BAUD_RATE = 12_000_000;

const UNIT_0 = "must be 1-255: unit 0 is the broadcast address, which no device answers";
/** Checks {@link ModbusDriverOptions} and applies the defaults. */
export const modbusDriverOptionsSchema = z
  .strictObject({
    transport: z.discriminatedUnion("kind", [
      z.strictObject({
        kind: z.literal("tcp"),
        host: z.string().min(1),
        port: z.number().int().min(1).max(65535).default(502),
        frameCheck: z.enum(["default", "strict"]).default("default"),
        frameQuietGapMs: z.number().min(0.5).max(1000).default(2),
        lateAnswerGuard: z.boolean().default(true),
        lostAnswerResyncMs: z
          .number()
          .positive()
          .max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)")
          .default(30_000),
        separateShapes: z.boolean().default(true),
      }),
      z.strictObject({
        kind: z.literal("rtu"),
        path: z.string().min(1),
        baudRate: z
          .number()
          .int()
          .positive()
          .max(MAX_BAUD_RATE, `must be at most ${MAX_BAUD_RATE} baud (the fastest serial adapters)`)
          .default(9600),
        dataBits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).default(8),
        stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
        parity: z.enum(["none", "even", "odd", "mark", "space"]).default("none"),
      }),
    ]),
    name: z.string().min(1).optional(),
    unitId: z.number().int().min(1, UNIT_0).max(255).default(1),
    byteOrder: z.enum(MODBUS_BYTE_ORDERS).default("ABCD"),
    requestTimeoutMs: z.number().positive().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(1000),
    connectTimeoutMs: z.number().positive().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(5000),
    interRequestDelayMs: z.number().nonnegative().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(0),
    maxInFlight: z.number().int().min(1).max(64).default(1),
    maxConsecutiveTimeouts: z.number().int().nonnegative().optional(),
    unitHealth: z
      .strictObject({
        offlineAfter: z.number().int().min(1).default(3),
        probeInitialDelayMs: z
          .number()
          .positive()
          .max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)")
          .default(1_000),
        probeMaxDelayMs: z.number().positive().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(60_000),
      })
      .refine((value) => value.probeInitialDelayMs <= value.probeMaxDelayMs, {
        message: "probeInitialDelayMs must not exceed probeMaxDelayMs",
        path: ["probeMaxDelayMs"],
      })
      .default({ offlineAfter: 3, probeInitialDelayMs: 1_000, probeMaxDelayMs: 60_000 }),
    planner: z
      .strictObject({
        maxRegistersPerRead: z.number().int().min(1).max(125).default(125),
        maxBitsPerRead: z.number().int().min(1).max(2000).default(2000),
        maxGap: z.number().int().nonnegative().default(8),
        maxBitGap: z.number().int().nonnegative().default(64),
        forbidden: z
          .array(
            z
              .strictObject({
                area: areaSchema,
                start: z.number().int().min(0).max(65535),
                end: z.number().int().min(0).max(65535),
                unitId: z.number().int().min(1, UNIT_0).max(255).optional(),
              })
              .refine((range) => range.start <= range.end, { message: "start must not exceed end", path: ["end"] }),
          )
          .default([]),
        splitOnExceptions: z.array(z.number().int().min(1).max(255)).default([2, 3]),
        relearnAfterMs: z.number().positive().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(600_000),
        learnAfterRefusals: z.number().int().min(1).default(3),
        learnRefusalSpanMs: z.number().min(0).max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(10_000),
      })
      .default({
        maxRegistersPerRead: 125,
        maxBitsPerRead: 2000,
        maxGap: 8,
        maxBitGap: 64,
        forbidden: [],
        splitOnExceptions: [2, 3],
        relearnAfterMs: 600_000,
        learnAfterRefusals: 3,
        learnRefusalSpanMs: 10_000,
      }),
    write: z
      .strictObject({
        maxRegistersPerWrite: z.number().int().min(1).max(123).default(123),
        maxCoilsPerWrite: z.number().int().min(1).max(1968).default(1968),
        singleWriteFunctions: z.boolean().default(true),
        bitWriteMode: z.enum(["read-modify-write", "mask-write"]).default("read-modify-write"),
      })
      .default({
        maxRegistersPerWrite: 123,
        maxCoilsPerWrite: 1968,
        singleWriteFunctions: true,
        bitWriteMode: "read-modify-write",
      }),
    reconnect: z
      .strictObject({
        enabled: z.boolean().default(true),
        initialDelayMs: z.number().nonnegative().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(250),
        maxDelayMs: z.number().nonnegative().max(MAX_DURATION_MS, "must be at most 3600000 (1 hour)").default(30_000),
        multiplier: z.number().min(1).default(2),
        jitter: z.number().min(0).max(1).default(0.2),
      })
      // The driver kit's one rule for a backoff (initialDelayMs > 0, maxDelayMs ≥ initialDelayMs...), checked here:
      // broken, it threw at the first connection loss, inside the socket's close handler (adv13f F4).
      .superRefine((reconnect, context) => {
        if (!reconnect.enabled) return;
        try {
          checkBackoff(reconnect, "");
        } catch (error) {
          if (!KilnError.is(error, "KILN_VALIDATION")) throw error;
          const issues = (error.details?.["issues"] ?? []) as readonly { path: string; message: string }[];
          for (const issue of issues) context.addIssue({ code: "custom", path: [issue.path], message: issue.message });
        }
      })
      .default({ enabled: true, initialDelayMs: 250, maxDelayMs: 30_000, multiplier: 2, jitter: 0.2 }),
    clock: z.custom<Clock>((value) => typeof value === "object" && value !== null).optional(),
    logger: z.custom<Logger>(isLogger, "must be a Logger (debug, info, warn, error and child functions)").optional(),
    clientFactory: z.custom<() => ModbusClient>((value) => typeof value === "function").optional(),
    random: z.custom<() => number>((value) => typeof value === "function").optional(),
  })
  .refine((options) => options.transport.kind === "tcp" || options.maxInFlight === 1, {
    message: "must be 1 for Modbus RTU: a serial line carries one request at a time",
    path: ["maxInFlight"],
  });

/** {@link ModbusDriverOptions} with every default applied. */
export type ResolvedModbusDriverOptions = z.output<typeof modbusDriverOptionsSchema>;
