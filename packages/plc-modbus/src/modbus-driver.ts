import { z } from "zod";
import {
  GOOD,
  KilnError,
  SystemClock,
  parseOrThrow,
  silentLogger,
  type Clock,
  type DriverStatus,
  type DriverStatusChange,
  type Logger,
  type PlcDriver,
  type PlcDriverCapabilities,
  type Quality,
  type Sample,
  type Tag,
  type TagValue,
} from "@kiln/core";
import { ConnectionLifecycle, abortError, raceAbort, type Disposer } from "@kiln/core/driver-kit";
import {
  MODBUS_AREAS,
  MODBUS_BYTE_ORDERS,
  formatModbusAddress,
  isBitArea,
  isWritableArea,
  type ModbusAddress,
  type ModbusByteOrder,
} from "./modbus-address";
import { createModbusSerialClient, loadSerialSupport, type ModbusClient } from "./modbus-client";
import { compileDecoder, encodeRegisters, rawFromEngineering, type ModbusTagDecoder } from "./modbus-codec";
import {
  isRetryableException,
  kilnErrorFromModbus,
  modbusDisconnectedError,
  modbusFailureOf,
  qualityFromModbus,
  qualityFromModbusError,
} from "./modbus-failure";
import {
  ModbusReadPlanner,
  readModbusRequest,
  type ModbusAddressRange,
  type ModbusLearnedMap,
  type ModbusReadLimits,
  type ModbusReadPlan,
  type ModbusReadRequest,
} from "./modbus-read-planner";
import { ModbusRequestQueue } from "./modbus-request-queue";

/** Modbus TCP: a device or gateway on the network. */
export interface ModbusTcpTransport {
  /** Modbus TCP. */
  readonly kind: "tcp";
  /** Host name or IP address. */
  readonly host: string;
  /** @default 502 */
  readonly port?: number;
}

/** Modbus RTU over a serial port (needs the optional `serialport` package). */
export interface ModbusRtuTransport {
  /** Modbus RTU on a serial line. */
  readonly kind: "rtu";
  /** Serial device path, e.g. `/dev/ttyUSB0` or `COM3`. */
  readonly path: string;
  /** @default 9600 */
  readonly baudRate?: number;
  /** @default 8 */
  readonly dataBits?: 5 | 6 | 7 | 8;
  /** @default 1 */
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
  /** Exception codes after which a coalesced read is split to isolate the bad address. @default [2, 3] */
  readonly splitOnExceptions?: readonly number[];
  /** Learned bad addresses and barriers are retried after this long. @default 600000 */
  readonly relearnAfterMs?: number;
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
  /** @default 2 */
  readonly multiplier?: number;
  /** Each delay is shortened by up to this fraction at random, so many drivers do not retry in step. @default 0.2 */
  readonly jitter?: number;
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
  /** A request with no reply after this long fails with `KILN_TIMEOUT` / quality bad. @default 1000 */
  readonly requestTimeoutMs?: number;
  /** Opening the connection fails after this long. @default 5000 */
  readonly connectTimeoutMs?: number;
  /** Quiet time between requests, for slow devices and gateways. @default 0 */
  readonly interRequestDelayMs?: number;
  /** After this many timeouts in a row the connection is treated as lost and reopened; 0 never. @default 3 for TCP, 0 for RTU */
  readonly maxConsecutiveTimeouts?: number;
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
}

const areaSchema = z.enum(MODBUS_AREAS);
const optionsSchema = z.object({
  transport: z.discriminatedUnion("kind", [
    z.object({
      kind: z.literal("tcp"),
      host: z.string().min(1),
      port: z.number().int().min(1).max(65535).default(502),
    }),
    z.object({
      kind: z.literal("rtu"),
      path: z.string().min(1),
      baudRate: z.number().int().positive().default(9600),
      dataBits: z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)]).default(8),
      stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
      parity: z.enum(["none", "even", "odd", "mark", "space"]).default("none"),
    }),
  ]),
  name: z.string().min(1).optional(),
  unitId: z.number().int().min(0).max(255).default(1),
  byteOrder: z.enum(MODBUS_BYTE_ORDERS).default("ABCD"),
  requestTimeoutMs: z.number().positive().default(1000),
  connectTimeoutMs: z.number().positive().default(5000),
  interRequestDelayMs: z.number().nonnegative().default(0),
  maxConsecutiveTimeouts: z.number().int().nonnegative().optional(),
  planner: z
    .object({
      maxRegistersPerRead: z.number().int().min(1).max(125).default(125),
      maxBitsPerRead: z.number().int().min(1).max(2000).default(2000),
      maxGap: z.number().int().nonnegative().default(8),
      maxBitGap: z.number().int().nonnegative().default(64),
      forbidden: z
        .array(
          z
            .object({
              area: areaSchema,
              start: z.number().int().min(0).max(65535),
              end: z.number().int().min(0).max(65535),
              unitId: z.number().int().min(0).max(255).optional(),
            })
            .refine((range) => range.start <= range.end, { message: "start must not exceed end", path: ["end"] }),
        )
        .default([]),
      splitOnExceptions: z.array(z.number().int().min(1).max(255)).default([2, 3]),
      relearnAfterMs: z.number().positive().default(600_000),
    })
    .default({
      maxRegistersPerRead: 125,
      maxBitsPerRead: 2000,
      maxGap: 8,
      maxBitGap: 64,
      forbidden: [],
      splitOnExceptions: [2, 3],
      relearnAfterMs: 600_000,
    }),
  write: z
    .object({
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
    .object({
      enabled: z.boolean().default(true),
      initialDelayMs: z.number().nonnegative().default(250),
      maxDelayMs: z.number().nonnegative().default(30_000),
      multiplier: z.number().min(1).default(2),
      jitter: z.number().min(0).max(1).default(0.2),
    })
    .default({ enabled: true, initialDelayMs: 250, maxDelayMs: 30_000, multiplier: 2, jitter: 0.2 }),
  clock: z.custom<Clock>((value) => typeof value === "object" && value !== null).optional(),
  logger: z.custom<Logger>((value) => typeof value === "object" && value !== null).optional(),
  clientFactory: z.custom<() => ModbusClient>((value) => typeof value === "function").optional(),
});

type ResolvedOptions = z.output<typeof optionsSchema>;

/** Splits `values` starting at `address` into chunks of at most `max`. */
export function chunkWrite<TValue>(
  address: number,
  values: readonly TValue[],
  max: number,
): { address: number; values: TValue[] }[] {
  const chunks: { address: number; values: TValue[] }[] = [];
  for (let offset = 0; offset < values.length; offset += max) {
    chunks.push({ address: address + offset, values: values.slice(offset, offset + max) });
  }
  return chunks;
}

const CAPABILITIES: PlcDriverCapabilities = Object.freeze({ subscribe: false, browse: false });

/**
 * A Kiln {@link PlcDriver} for Modbus TCP and RTU, built on modbus-serial.
 *
 * - Tags carry a Modbus address (`"HR100:float32:CDAB"` or `{ area, address, type, order, ... }`; see
 *   `parseModbusAddress`).
 * - `read(tags)` runs the plan of the {@link ModbusReadPlanner}: tags grouped by unit and area, coalesced into
 *   as few requests as the protocol allows, through gaps of up to `maxGap` registers. A request refused with
 *   an exception in `splitOnExceptions` is split and retried so one bad address only poisons itself; it is
 *   remembered and reported with quality bad.
 * - Requests are serialised, each with a timeout and an optional quiet time before the next.
 * - A lost connection is reopened with capped exponential backoff; status changes are reported through
 *   {@link ModbusDriver.onStatusChange}.
 *
 * @example
 * const driver = new ModbusDriver({ transport: { kind: "tcp", host: "10.0.0.5" }, unitId: 1 });
 * await driver.connect();
 * const samples = await driver.read(tags.list());
 * await driver.write(tags.get("pump.setpoint"), 42.5);
 * await driver.close();
 */
export class ModbusDriver implements PlcDriver {
  /** The driver contract version. */
  readonly driverApiVersion = "1" as const;
  /** The connection name. */
  readonly name: string;
  /** Modbus has neither subscriptions nor browsing. */
  readonly capabilities: PlcDriverCapabilities = CAPABILITIES;

  readonly #options: ResolvedOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #clientFactory: () => ModbusClient;
  readonly #planner: ModbusReadPlanner;
  readonly #queue: ModbusRequestQueue;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #maxConsecutiveTimeouts: number;
  readonly #target: string;
  #client: ModbusClient | undefined;
  #consecutiveTimeouts = 0;
  #bitWriteLock: Promise<void> = Promise.resolve();
  readonly #learner: Pick<ModbusReadPlanner, "poison" | "learnBarrier">;
  readonly #compiled = new WeakMap<ModbusReadPlan, readonly ModbusTagDecoder[]>();

  /** @throws KilnValidationError naming each bad option. */
  constructor(options: ModbusDriverOptions) {
    this.#options = parseOrThrow(optionsSchema, options, "Modbus driver options");
    const transport = this.#options.transport;
    this.#target = transport.kind === "tcp" ? `${transport.host}:${transport.port}` : transport.path;
    this.name = this.#options.name ?? `modbus:${this.#target}`;
    this.#clock = this.#options.clock ?? new SystemClock();
    this.#logger = (this.#options.logger ?? silentLogger).child({ driver: this.name });
    this.#lifecycle = new ConnectionLifecycle({
      name: this.name,
      clock: this.#clock,
      onListenerError: (error) => this.#logger.error({ error }, "status listener failed"),
    });
    this.#lifecycle.onStatusChange(({ from, to, reason }) =>
      this.#logger.info({ from, to, reason }, "modbus driver status"),
    );
    this.#clientFactory = this.#options.clientFactory ?? createModbusSerialClient;
    this.#maxConsecutiveTimeouts = this.#options.maxConsecutiveTimeouts ?? (transport.kind === "tcp" ? 3 : 0);
    const planner = this.#options.planner;
    this.#planner = new ModbusReadPlanner({
      limits: planner,
      forbidden: planner.forbidden,
      defaultUnitId: this.#options.unitId,
      relearnAfterMs: planner.relearnAfterMs,
      clock: this.#clock,
    });
    this.#learner = {
      poison: (item, code) => {
        this.#logger.warn(
          { area: item.area, address: item.address, unitId: item.unitId, exception: code },
          "modbus address refused; reporting it bad until relearned",
        );
        this.#planner.poison(item, code);
      },
      learnBarrier: (left, right) => this.#planner.learnBarrier(left, right),
    };
    this.#queue = new ModbusRequestQueue({
      clock: this.#clock,
      timeoutMs: this.#options.requestTimeoutMs,
      interRequestDelayMs: this.#options.interRequestDelayMs,
    });
  }

  /** The current connection state. */
  get status(): DriverStatus {
    return this.#lifecycle.status;
  }

  /** What the planner has learned about the device (poisoned addresses, barriers). */
  get learned(): ModbusLearnedMap {
    return this.#planner.learned;
  }

  /** Calls `listener` on every connection state change; returns a disposer. */
  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    return this.#lifecycle.onStatusChange(listener);
  }

  /**
   * The read plan for `tags` (cached per array), for diagnostics: `plan.requests.length` is the number of
   * requests per scan.
   * @throws KilnValidationError naming every tag whose address is missing or invalid.
   */
  readPlan(tags: readonly Tag[]): ModbusReadPlan {
    return this.#planner.plan(tags);
  }

  /**
   * Opens the connection. Resolves at once when connected; while reconnecting, resolves on the next
   * successful attempt.
   * @throws KilnError `KILN_CONNECTION_FAILED` (retryable) when the device cannot be reached,
   *   `KILN_NOT_SUPPORTED` for RTU without the `serialport` package, `KILN_ABORTED` when `signal` aborts.
   */
  connect(signal?: AbortSignal): Promise<void> {
    if (this.status === "reconnecting") return this.#lifecycle.whenConnected(signal);
    return this.#lifecycle.connect((lifetime) => this.#open(lifetime), signal);
  }

  /** Closes the connection, stops reconnecting and fails every pending request. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      const client = this.#client;
      this.#client = undefined;
      this.#queue.fail(
        new KilnError("KILN_NOT_CONNECTED", "The Modbus driver was closed.", { details: { modbus: "disconnected" } }),
      );
      if (client) await destroyClient(client);
    });
  }

  /**
   * Reads `tags` and returns one sample per tag, in order. A tag the device refuses (exception, timeout)
   * comes back with quality bad; a lost connection rejects the whole call with a retryable
   * `KILN_CONNECTION_FAILED`.
   */
  async read(tags: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    this.#assertOpen();
    if (tags.length === 0) return [];
    const plan = this.#planner.plan(tags);
    const samples = new Array<Sample>(tags.length);
    const now = this.#clock.now();
    for (const [index, code] of plan.poisoned) {
      samples[index] = { tag: tags[index]!.name, value: null, timestamp: now, quality: qualityFromModbus(code) };
    }
    const state: ReadState = { tags, decoders: this.#decoders(plan, tags), samples, signal };
    for (const request of plan.requests) await this.#readRequest(state, request);
    return samples;
  }

  /** One compiled decoder per tag of a plan, built once per plan. */
  #decoders(plan: ModbusReadPlan, tags: readonly Tag[]): readonly ModbusTagDecoder[] {
    let decoders = this.#compiled.get(plan);
    if (!decoders) {
      decoders = plan.addresses.map((address, index) =>
        compileDecoder(address, address.order ?? this.#options.byteOrder, tags[index]!.dataType),
      );
      this.#compiled.set(plan, decoders);
    }
    return decoders;
  }

  /**
   * Writes `value` to `tag`, encoded from the tag's type, byte order and scale, and range-checked first.
   * @throws KilnError `KILN_TAG_NOT_WRITABLE` (read-only tag or area; nothing is sent),
   *   `KILN_OUT_OF_RANGE` (value does not fit; nothing is sent), `KILN_WRITE_REJECTED` (device exception),
   *   `KILN_TIMEOUT`, `KILN_CONNECTION_FAILED`, `KILN_NOT_CONNECTED`.
   */
  async write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    const address = this.#planner.address(tag);
    if (tag.access !== "readwrite" || !isWritableArea(address.area)) {
      throw new KilnError(
        "KILN_TAG_NOT_WRITABLE",
        tag.access !== "readwrite"
          ? `Tag "${tag.name}" is read-only (access "${tag.access}").`
          : `Tag "${tag.name}" is in the ${address.area} area, which Modbus clients cannot write; use a coil or holding register.`,
        { details: { tag: tag.name, address: formatModbusAddress(address) } },
      );
    }
    this.#assertOpen();
    const raw = rawFromEngineering(value, address, { tag: tag.name });
    const unitId = address.unitId ?? this.#options.unitId;
    const what = `write of "${tag.name}" (${formatModbusAddress(address)})`;
    try {
      if (address.area === "coil") {
        await this.#writeCoils(unitId, address.address, [raw === true], what, signal);
      } else if (address.type === "bit") {
        await this.#writeBit(unitId, address, raw === true, what, signal);
      } else {
        const registers = encodeRegisters(raw, address, address.order ?? this.#options.byteOrder);
        await this.#writeRegisters(unitId, address.address, registers, what, signal);
      }
    } catch (error) {
      throw this.#writeError(error, tag, what);
    }
  }

  #writeError(error: unknown, tag: Tag, what: string): unknown {
    const failure = modbusFailureOf(error);
    if (typeof failure !== "number") return error;
    return new KilnError("KILN_WRITE_REJECTED", `The device refused the ${what}: ${(error as Error).message}`, {
      cause: error,
      retryable: isRetryableException(failure),
      details: { tag: tag.name, modbus: failure, exceptionCode: failure },
    });
  }

  async #writeCoils(
    unitId: number,
    address: number,
    states: boolean[],
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const { singleWriteFunctions, maxCoilsPerWrite } = this.#options.write;
    if (states.length === 1 && singleWriteFunctions) {
      await this.#request(unitId, (client) => client.writeCoil(address, states[0]!), what, signal);
      return;
    }
    for (const chunk of chunkWrite(address, states, maxCoilsPerWrite)) {
      await this.#request(unitId, (client) => client.writeCoils(chunk.address, chunk.values), what, signal);
    }
  }

  async #writeRegisters(
    unitId: number,
    address: number,
    registers: number[],
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const { singleWriteFunctions, maxRegistersPerWrite } = this.#options.write;
    if (registers.length === 1 && singleWriteFunctions) {
      await this.#request(unitId, (client) => client.writeRegister(address, registers[0]!), what, signal);
      return;
    }
    for (const chunk of chunkWrite(address, registers, maxRegistersPerWrite)) {
      await this.#request(unitId, (client) => client.writeRegisters(chunk.address, chunk.values), what, signal);
    }
  }

  async #writeBit(
    unitId: number,
    address: ModbusAddress,
    state: boolean,
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const mask = 1 << (address.bit ?? 0);
    if (this.#options.write.bitWriteMode === "mask-write") {
      const andMask = 0xffff & ~mask;
      const orMask = state ? mask : 0;
      await this.#request(unitId, (client) => client.maskWriteRegister(address.address, andMask, orMask), what, signal);
      return;
    }
    // Read-modify-write is not atomic on the device; serialise it here so two bit writes to one register
    // from this driver cannot lose each other's update.
    const previous = this.#bitWriteLock;
    let release!: () => void;
    this.#bitWriteLock = new Promise<void>((resolve) => (release = resolve));
    try {
      await previous;
      const current = await this.#request(
        unitId,
        (client) => client.readHoldingRegisters(address.address, 1),
        what,
        signal,
      );
      const word = current.data[0] ?? 0;
      await this.#writeRegisters(unitId, address.address, [state ? word | mask : word & ~mask & 0xffff], what, signal);
    } finally {
      release();
    }
  }

  #assertOpen(): void {
    const status = this.status;
    if (status === "connected" || status === "reconnecting") return;
    throw new KilnError(
      "KILN_NOT_CONNECTED",
      status === "closed"
        ? `Modbus driver "${this.name}" is closed.`
        : `Modbus driver "${this.name}" is not connected; call connect() first.`,
      { details: { driver: this.name, status } },
    );
  }

  /** Runs one request through the queue with the right unit id; failures become Kiln errors. */
  async #request<T>(
    unitId: number,
    operation: (client: ModbusClient) => Promise<T>,
    what: string,
    signal?: AbortSignal,
  ): Promise<T> {
    let client: ModbusClient | undefined;
    try {
      const result = await this.#queue.run(
        async () => {
          client = this.#client;
          if (!client || this.status !== "connected") {
            throw modbusDisconnectedError(`not connected (${this.status}) when ${what} was due`);
          }
          client.setID(unitId);
          try {
            return await operation(client);
          } catch (error) {
            throw kilnErrorFromModbus(error, what);
          }
        },
        what,
        signal,
      );
      this.#consecutiveTimeouts = 0;
      return result;
    } catch (error) {
      const failure = modbusFailureOf(error);
      if (typeof failure === "number") this.#consecutiveTimeouts = 0;
      if (failure === "timeout" && client && client === this.#client) {
        this.#consecutiveTimeouts++;
        if (client.isOpen === false) this.#connectionLost(client, "the transport closed without notice");
        else if (this.#maxConsecutiveTimeouts > 0 && this.#consecutiveTimeouts >= this.#maxConsecutiveTimeouts) {
          this.#connectionLost(client, `${this.#consecutiveTimeouts} requests in a row timed out`);
        }
      } else if (failure === "disconnected" && client && client === this.#client) {
        this.#connectionLost(client, "the transport is not open");
      }
      throw error;
    }
  }

  /** Reads one request, splitting it on an address exception; a lost connection rejects. */
  async #readRequest(state: ReadState, request: ModbusReadRequest): Promise<void> {
    const split = this.#options.planner.splitOnExceptions;
    const outcomes = await readModbusRequest(
      request,
      (part) => this.#request(part.unitId, (client) => readArea(client, part), describeRead(part), state.signal),
      {
        splitCode: (error) => {
          const failure = modbusFailureOf(error);
          return typeof failure === "number" && split.includes(failure) ? failure : undefined;
        },
        learner: this.#learner,
      },
    );
    for (const outcome of outcomes) {
      if (outcome.ok) {
        this.#decode(state, outcome.request, outcome.data);
        continue;
      }
      const error = outcome.error;
      const failure = modbusFailureOf(error);
      // A tag-level failure (exception, timeout, bad reply) is a quality; anything else fails the read.
      if (typeof failure === "number" || failure === "timeout" || KilnError.is(error, "KILN_DEVICE_ERROR")) {
        this.#markBad(state, outcome.request, qualityFromModbusError(error));
      } else throw error;
    }
  }

  #decode(state: ReadState, request: ModbusReadRequest, data: boolean[] | number[]): void {
    const timestamp = this.#clock.now();
    const { tags, decoders, samples } = state;
    const start = request.address;
    for (const item of request.items) {
      const index = item.index;
      samples[index] = {
        tag: tags[index]!.name,
        value: decoders[index]!(data, item.address - start),
        timestamp,
        quality: GOOD,
      };
    }
  }

  #markBad(state: ReadState, request: ModbusReadRequest, quality: Quality): void {
    const timestamp = this.#clock.now();
    for (const item of request.items) {
      state.samples[item.index] = { tag: state.tags[item.index]!.name, value: null, timestamp, quality };
    }
  }

  /** Opens a client; `signal` (the call's and the lifetime's) aborts the attempt. */
  async #open(signal: AbortSignal): Promise<void> {
    const transport = this.#options.transport;
    if (transport.kind === "rtu") await loadSerialSupport();
    const client = this.#clientFactory();
    client.on("close", () => this.#connectionLost(client, "the device closed the connection"));
    client.on("error", (error) =>
      this.#connectionLost(client, `transport error: ${error instanceof Error ? error.message : String(error)}`),
    );
    const opening =
      transport.kind === "tcp"
        ? client.connectTCP(transport.host, { port: transport.port })
        : client.connectRTUBuffered(transport.path, {
            baudRate: transport.baudRate,
            dataBits: transport.dataBits,
            stopBits: transport.stopBits,
            parity: transport.parity,
          });
    const deadline = new AbortController();
    const timer = this.#clock.setTimeout(
      () => deadline.abort(this.#connectFailed(`no answer within ${this.#options.connectTimeoutMs} ms`)),
      this.#options.connectTimeoutMs,
    );
    try {
      await raceAbort(opening, AbortSignal.any([signal, deadline.signal]), "opening the Modbus connection");
    } catch (error) {
      void destroyClient(client);
      if (KilnError.is(error)) throw error;
      throw this.#connectFailed(error instanceof Error ? error.message : String(error), error);
    } finally {
      this.#clock.clearTimeout(timer);
    }
    if (signal.aborted) {
      void destroyClient(client);
      throw abortError(signal, "opening the Modbus connection");
    }
    this.#client = client;
    this.#consecutiveTimeouts = 0;
  }

  #connectFailed(reason: string, cause?: unknown): KilnError {
    const transport = this.#options.transport;
    return new KilnError(
      "KILN_CONNECTION_FAILED",
      `Could not open Modbus ${transport.kind.toUpperCase()} connection to ${this.#target}: ${reason}. ` +
        "Check the address, port and that the device accepts another client.",
      { retryable: true, cause, details: { driver: this.name, target: this.#target } },
    );
  }

  #connectionLost(client: ModbusClient, reason: string): void {
    if (client !== this.#client || this.status !== "connected") return;
    this.#client = undefined;
    void destroyClient(client);
    this.#queue.fail(modbusDisconnectedError(reason));
    this.#logger.warn({ reason }, "modbus connection lost");
    const { enabled, ...backoff } = this.#options.reconnect;
    if (!enabled || this.#lifecycle.signal.aborted) {
      this.#lifecycle.setStatus("disconnected", reason);
      return;
    }
    void this.#lifecycle.reconnect({
      reason,
      backoff,
      delayFirst: true,
      attempt: (lifetime) => this.#open(lifetime),
      onAttemptFailed: (error, attempt) => {
        if (KilnError.is(error, "KILN_NOT_SUPPORTED")) return "stop";
        this.#logger.debug({ attempt, error }, "modbus reconnect attempt failed");
        return "retry";
      },
      connectedReason: (attempts) => `reconnected after ${attempts} attempt${attempts === 1 ? "" : "s"}`,
    });
  }
}

interface ReadState {
  readonly tags: readonly Tag[];
  readonly decoders: readonly ModbusTagDecoder[];
  readonly samples: Sample[];
  readonly signal: AbortSignal | undefined;
}

function describeRead(request: ModbusReadRequest): string {
  const unit = isBitArea(request.area) ? "bits" : "registers";
  return `read of ${request.count} ${unit} at ${request.area} ${request.address} (unit ${request.unitId})`;
}

async function readArea(client: ModbusClient, request: ModbusReadRequest): Promise<boolean[] | number[]> {
  switch (request.area) {
    case "coil":
      return (await client.readCoils(request.address, request.count)).data;
    case "discrete-input":
      return (await client.readDiscreteInputs(request.address, request.count)).data;
    case "input-register":
      return (await client.readInputRegisters(request.address, request.count)).data;
    case "holding-register":
      return (await client.readHoldingRegisters(request.address, request.count)).data;
  }
}

function destroyClient(client: ModbusClient): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      client.destroy(() => resolve());
    } catch {
      resolve();
    }
  });
}
