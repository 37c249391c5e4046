import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { ServerTCP, type IServiceVector } from "modbus-serial";
import {
  KilnError,
  SystemClock,
  createSignal,
  type TagCatalog,
  type Clock,
  type Disposer,
  type Signal,
  type SignalSpec,
  type Tag,
  type TagValue,
} from "@kiln/core";
import {
  isBitArea,
  modbusTagAddress,
  type ModbusAddress,
  type ModbusArea,
  type ModbusByteOrder,
} from "./modbus-address";
import { decodeRegisters, encodeRegisters, engineeringFromRaw, rawFromEngineering } from "./modbus-codec";

/** Options of {@link ModbusSimulator}. */
export interface ModbusSimulatorOptions {
  /** The tags to serve, at their Modbus addresses. */
  readonly tags: TagCatalog | readonly Tag[];
  /** A signal generator per tag name (the same generators as `SimulatedPlc`); other tags hold their value. */
  readonly signals?: Readonly<Record<string, SignalSpec>>;
  /** Initial values per tag name, for tags without a signal. */
  readonly initialValues?: Readonly<Record<string, TagValue>>;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port. @default 0 */
  readonly port?: number;
  /** Unit id of tags that do not give one. @default 1 */
  readonly unitId?: number;
  /** Byte order of tags that do not give one. @default "ABCD" */
  readonly byteOrder?: ModbusByteOrder;
  /** Answer exception 2 (illegal data address) for any address no tag occupies, like a real device. @default false */
  readonly strict?: boolean;
  /** Time source of the signal generators. @default new SystemClock() */
  readonly clock?: Clock;
}

/** Where a fault applies: one area range, optionally for one unit and one direction. */
export interface ModbusFaultTarget {
  /** The area. */
  readonly area: ModbusArea;
  /** First address. */
  readonly address: number;
  /** Number of addresses. @default 1 */
  readonly length?: number;
  /** Only this unit; every unit when undefined. */
  readonly unitId?: number;
  /** Which requests: reads, writes or both. @default "any" */
  readonly on?: "read" | "write" | "any";
}

/** A request as the simulator received it. */
export interface ModbusSimulatorRequest {
  /** Unit id. */
  readonly unitId: number;
  /** Function code. */
  readonly functionCode: number;
  /** Start address. */
  readonly address: number;
  /** Quantity of registers or bits (1 for single writes). */
  readonly quantity: number;
}

/** Request counters. */
export interface ModbusSimulatorStats {
  /** Every request received. */
  readonly requests: number;
  /** Requests per function code. */
  readonly byFunction: Readonly<Record<number, number>>;
  /** Requests over the protocol's quantity limits (125/2000 read, 123/1968 write): a client bug. */
  readonly protocolViolations: number;
  /** Connections accepted. */
  readonly connections: number;
}

interface Fault {
  /** Undefined: every request (of `unitId` when given). */
  readonly target: ModbusFaultTarget | undefined;
  readonly unitId?: number;
  readonly kind: "exception" | "timeout" | "reset";
  readonly code: number;
}

interface Entry {
  readonly tag: Tag;
  readonly address: ModbusAddress;
  readonly unitId: number;
  readonly order: ModbusByteOrder;
  readonly signal: Signal | undefined;
  pinned: boolean;
}

interface UnitMemory {
  readonly coils: Uint8Array;
  readonly discreteInputs: Uint8Array;
  readonly inputRegisters: Uint16Array;
  readonly holdingRegisters: Uint16Array;
}

const QUANTITY_LIMITS: Readonly<Record<number, number>> = { 1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123 };
const NEVER: Promise<never> = new Promise<never>(() => undefined);

function modbusException(code: number): { modbusErrorCode: number; message: string } {
  return { modbusErrorCode: code, message: `simulated Modbus exception ${code}` };
}

/**
 * A Modbus TCP server (modbus-serial's `ServerTCP`) serving a Kiln tag list at its addresses, with the core's
 * signal generators, for tests, demos and benchmarks. It accepts writes (a written tag keeps its value), and
 * injects faults: exceptions and timeouts on addresses, and dropped connections.
 *
 * @example
 * const simulator = new ModbusSimulator({ tags, signals: { "chamber.pressure": { kind: "sine", amplitude: 1, periodMs: 60_000 } } });
 * const { host, port } = await simulator.start();
 * // ... new ModbusDriver({ transport: { kind: "tcp", host, port } })
 * await simulator.stop();
 */
export class ModbusSimulator {
  readonly #host: string;
  readonly #clock: Clock;
  readonly #strict: boolean;
  readonly #entries: Entry[] = [];
  readonly #byName = new Map<string, Entry>();
  readonly #index = new Map<string, Entry[]>();
  readonly #memory = new Map<number, UnitMemory>();
  readonly #faults = new Set<Fault>();
  readonly #listeners = new Set<(request: ModbusSimulatorRequest) => void>();
  readonly #byFunction: Record<number, number> = {};
  #port: number;
  #server: ServerTCP | undefined;
  #requests = 0;
  #violations = 0;
  #connections = 0;

  /** @throws KilnValidationError when a tag has no valid Modbus address. */
  constructor(options: ModbusSimulatorOptions) {
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 0;
    this.#clock = options.clock ?? new SystemClock();
    this.#strict = options.strict ?? false;
    // Duck-typed rather than instanceof, so a catalog from a second copy of @kiln/core works too.
    const tags = isTagList(options.tags) ? options.tags : options.tags.list();
    const defaultUnit = options.unitId ?? 1;
    const defaultOrder = options.byteOrder ?? "ABCD";
    const origin = this.#clock.now();
    for (const tag of tags) {
      const address = modbusTagAddress(tag);
      const spec = options.signals?.[tag.name];
      const entry: Entry = {
        tag,
        address,
        unitId: address.unitId ?? defaultUnit,
        order: address.order ?? defaultOrder,
        signal: spec === undefined ? undefined : createSignal(spec, origin),
        pinned: false,
      };
      this.#entries.push(entry);
      this.#byName.set(tag.name, entry);
      for (let offset = 0; offset < address.count; offset++) {
        const key = this.#key(entry.unitId, address.area, address.address + offset);
        const list = this.#index.get(key);
        if (list) list.push(entry);
        else this.#index.set(key, [entry]);
      }
      const initial = options.initialValues?.[tag.name];
      if (initial !== undefined) this.#store(entry, initial);
      else this.#refresh(entry);
    }
  }

  /** Where the server listens, once started. */
  get address(): { host: string; port: number } | undefined {
    return this.#server ? { host: this.#host, port: this.#port } : undefined;
  }

  /** Request counters since construction. */
  get stats(): ModbusSimulatorStats {
    return {
      requests: this.#requests,
      byFunction: { ...this.#byFunction },
      protocolViolations: this.#violations,
      connections: this.#connections,
    };
  }

  /**
   * Starts listening. With port 0 a free port is picked; after {@link ModbusSimulator.stop}, `start()` listens
   * on the same port again, so a driver can reconnect.
   * @throws KilnError `KILN_CONNECTION_FAILED` when the port cannot be bound.
   */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#server) return { host: this.#host, port: this.#port };
    const ephemeral = this.#port === 0;
    for (let attempt = 0; ; attempt++) {
      const port = ephemeral ? await freePort(this.#host) : this.#port;
      try {
        this.#server = await this.#listen(port);
        this.#port = port;
        return { host: this.#host, port };
      } catch (error) {
        // Another process may take the free port between the probe and the bind: try another one.
        if (ephemeral && attempt < 5 && (error as NodeJS.ErrnoException).code === "EADDRINUSE") continue;
        throw new KilnError("KILN_CONNECTION_FAILED", `Modbus simulator cannot listen on ${this.#host}:${port}.`, {
          cause: error,
          retryable: true,
        });
      }
    }
  }

  /** Stops listening and drops every connection. Idempotent. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Same as {@link ModbusSimulator.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Drops every open connection; the server keeps listening, so clients can reconnect. */
  dropConnections(): void {
    for (const socket of this.#server?.socks.keys() ?? []) socket.destroy();
  }

  /** Answers requests touching `target` with Modbus exception `code` until the returned disposer is called. */
  injectException(target: ModbusFaultTarget, code = 2): Disposer {
    return this.#addFault({ target, kind: "exception", code });
  }

  /**
   * Never answers requests touching `target` (every request when omitted) until the returned disposer is
   * called, as a device that has gone quiet.
   */
  injectTimeout(target?: ModbusFaultTarget): Disposer {
    return this.#addFault({ target, kind: "timeout", code: 0 });
  }

  /**
   * Never answers any request to unit `unitId` until the returned disposer is called, as a dead unit
   * behind a gateway that keeps answering for its other units.
   */
  injectSilence(unitId: number): Disposer {
    return this.#addFault({ target: undefined, unitId, kind: "timeout", code: 0 });
  }

  /**
   * Resets the TCP connection (RST) when a request touching `target` arrives (any request when omitted),
   * without answering it, until the returned disposer is called: the request is in flight when the
   * connection goes.
   */
  injectReset(target?: ModbusFaultTarget): Disposer {
    return this.#addFault({ target, kind: "reset", code: 0 });
  }

  /** Removes every injected fault. */
  clearFaults(): void {
    this.#faults.clear();
  }

  /** Calls `listener` for every request received; returns a disposer. */
  onRequest(listener: (request: ModbusSimulatorRequest) => void): Disposer {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** The value the simulator holds for a tag now (signals are not advanced). */
  getValue(name: string): TagValue {
    const entry = this.#entry(name);
    const { address } = entry;
    const memory = this.#unit(entry.unitId);
    if (isBitArea(address.area)) {
      const bits = address.area === "coil" ? memory.coils : memory.discreteInputs;
      return bits[address.address] === 1;
    }
    const words = address.area === "holding-register" ? memory.holdingRegisters : memory.inputRegisters;
    const raw = decodeRegisters(words, address.address, address, entry.order);
    return engineeringFromRaw(raw, address, entry.tag.dataType);
  }

  /**
   * Sets a tag's value as the device would; the tag then holds it (its signal stops).
   * @throws KilnError `KILN_OUT_OF_RANGE` when the value does not fit the tag's Modbus type.
   */
  setValue(name: string, value: TagValue): void {
    const entry = this.#entry(name);
    this.#store(entry, value);
    entry.pinned = true;
  }

  #entry(name: string): Entry {
    const entry = this.#byName.get(name);
    if (!entry) {
      throw new KilnError("KILN_TAG_UNKNOWN", `The Modbus simulator serves no tag named "${name}".`, {
        details: { tag: name },
      });
    }
    return entry;
  }

  #addFault(fault: Fault): Disposer {
    this.#faults.add(fault);
    return () => {
      this.#faults.delete(fault);
    };
  }

  #key(unitId: number, area: ModbusArea, address: number): string {
    return `${unitId}|${area}|${address}`;
  }

  #unit(unitId: number): UnitMemory {
    let memory = this.#memory.get(unitId);
    if (!memory) {
      memory = {
        coils: new Uint8Array(65536),
        discreteInputs: new Uint8Array(65536),
        inputRegisters: new Uint16Array(65536),
        holdingRegisters: new Uint16Array(65536),
      };
      this.#memory.set(unitId, memory);
    }
    return memory;
  }

  /** Writes an engineering value of a tag into memory. */
  #store(entry: Entry, value: TagValue, clamp = false): void {
    const { address } = entry;
    const memory = this.#unit(entry.unitId);
    const raw = rawFromEngineering(value, address, { tag: entry.tag.name, clamp });
    if (isBitArea(address.area)) {
      (address.area === "coil" ? memory.coils : memory.discreteInputs)[address.address] = raw === true ? 1 : 0;
      return;
    }
    const words = address.area === "holding-register" ? memory.holdingRegisters : memory.inputRegisters;
    if (address.type === "bit") {
      const mask = 1 << (address.bit ?? 0);
      const current = words[address.address] ?? 0;
      words[address.address] = raw === true ? current | mask : current & ~mask;
      return;
    }
    words.set(encodeRegisters(raw, address, entry.order), address.address);
  }

  /** Evaluates the tag's signal (if any and not pinned) into memory. */
  #refresh(entry: Entry): void {
    if (entry.pinned || !entry.signal) return;
    let value = entry.signal(this.#clock.now());
    const dataType = entry.tag.dataType;
    if (dataType === "bool") value = typeof value === "number" ? value !== 0 : Boolean(value);
    else if (dataType === "string") value = String(value);
    else if (typeof value === "boolean") value = value ? 1 : 0;
    else if (typeof value === "string") value = Number(value) || 0;
    this.#store(entry, value, true);
  }

  /** Refreshes the signals of every tag overlapping `[address, address + length)`. */
  #touch(unitId: number, area: ModbusArea, address: number, length: number): void {
    let seen: Set<Entry> | undefined;
    for (let offset = 0; offset < length; offset++) {
      const list = this.#index.get(this.#key(unitId, area, address + offset));
      if (!list) continue;
      for (const entry of list) {
        seen ??= new Set();
        if (seen.has(entry)) continue;
        seen.add(entry);
        this.#refresh(entry);
      }
    }
  }

  #pin(unitId: number, area: ModbusArea, address: number, length: number): void {
    for (let offset = 0; offset < length; offset++) {
      for (const entry of this.#index.get(this.#key(unitId, area, address + offset)) ?? []) entry.pinned = true;
    }
  }

  /** Throws or returns a never-settling promise when a fault applies; undefined otherwise. */
  #fault(
    unitId: number,
    area: ModbusArea,
    address: number,
    length: number,
    direction: "read" | "write",
  ): Promise<never> | undefined {
    for (const fault of this.#faults) {
      if (!faultApplies(fault, unitId, area, address, length, direction)) continue;
      if (fault.kind === "timeout" || fault.kind === "reset") return NEVER;
      throw modbusException(fault.code);
    }
    if (this.#strict && !this.#mapped(unitId, area, address, length)) throw modbusException(2);
    return undefined;
  }

  #mapped(unitId: number, area: ModbusArea, address: number, length: number): boolean {
    for (let offset = 0; offset < length; offset++) {
      if (!this.#index.has(this.#key(unitId, area, address + offset))) return false;
    }
    return true;
  }

  #readWords(area: "input-register" | "holding-register", address: number, length: number, unitId: number) {
    const pending = this.#fault(unitId, area, address, length, "read");
    if (pending) return Array.from({ length }, () => pending) as unknown as number[];
    this.#touch(unitId, area, address, length);
    const memory = this.#unit(unitId);
    const words = area === "holding-register" ? memory.holdingRegisters : memory.inputRegisters;
    return Array.from(words.subarray(address, address + length));
  }

  #readBit(area: "coil" | "discrete-input", address: number, unitId: number): boolean | Promise<boolean> {
    const pending = this.#fault(unitId, area, address, 1, "read");
    if (pending) return pending;
    this.#touch(unitId, area, address, 1);
    const memory = this.#unit(unitId);
    return (area === "coil" ? memory.coils : memory.discreteInputs)[address] === 1;
  }

  #writeWords(address: number, values: readonly number[], unitId: number): Promise<void> | undefined {
    const pending = this.#fault(unitId, "holding-register", address, values.length, "write");
    if (pending) return pending;
    this.#unit(unitId).holdingRegisters.set(values, address);
    this.#pin(unitId, "holding-register", address, values.length);
    return undefined;
  }

  #writeCoil(address: number, value: boolean, unitId: number): Promise<void> | undefined {
    const pending = this.#fault(unitId, "coil", address, 1, "write");
    if (pending) return pending;
    this.#unit(unitId).coils[address] = value ? 1 : 0;
    this.#pin(unitId, "coil", address, 1);
    return undefined;
  }

  #vector(): IServiceVector {
    return {
      getCoil: (address: number, unitId: number) => this.#readBit("coil", address, unitId),
      getDiscreteInput: (address: number, unitId: number) => this.#readBit("discrete-input", address, unitId),
      getHoldingRegister: (address: number, unitId: number) => {
        const [value] = this.#readWords("holding-register", address, 1, unitId);
        return value as number;
      },
      getInputRegister: (address: number, unitId: number) => {
        const [value] = this.#readWords("input-register", address, 1, unitId);
        return value as number;
      },
      getMultipleHoldingRegisters: (address: number, length: number, unitId: number) => {
        if (length > 125) throw modbusException(3);
        return this.#readWords("holding-register", address, length, unitId);
      },
      getMultipleInputRegisters: (address: number, length: number, unitId: number) => {
        if (length > 125) throw modbusException(3);
        return this.#readWords("input-register", address, length, unitId);
      },
      setCoil: (address: number, value: boolean, unitId: number) => this.#writeCoil(address, value, unitId),
      setRegister: (address: number, value: number, unitId: number) => this.#writeWords(address, [value], unitId),
      setRegisterArray: (address: number, values: number[], unitId: number) =>
        this.#writeWords(address, values, unitId),
    } as IServiceVector;
  }

  #listen(port: number): Promise<ServerTCP> {
    return new Promise<ServerTCP>((resolve, reject) => {
      const server = new ServerTCP(this.#vector(), { host: this.#host, port, unitID: 255 });
      const onError = (error: Error | null): void => {
        server.close(() => reject(error ?? new Error("Modbus simulator failed to listen")));
      };
      server.once("serverError", onError);
      server.once("initialized", () => {
        server.removeListener("serverError", onError);
        server.on("serverError", () => undefined);
        resolve(server);
      });
      server.on("socketError", () => undefined);
      server.on("error", () => undefined);
      // modbus-serial gives no per-request hook: watch the raw frames on the listening socket to count them.
      const inner = (server as unknown as { _server?: Server })._server;
      inner?.on("connection", (socket: Socket) => this.#watch(socket));
    });
  }

  #watch(socket: Socket): void {
    this.#connections++;
    let buffer: Buffer = Buffer.alloc(0);
    socket.on("data", (data: Buffer) => {
      buffer = buffer.length === 0 ? data : Buffer.concat([buffer, data]);
      while (buffer.length >= 12) {
        const length = buffer.readUInt16BE(4);
        if (buffer.length < 6 + length) break;
        const request: ModbusSimulatorRequest = {
          unitId: buffer.readUInt8(6),
          functionCode: buffer.readUInt8(7),
          address: buffer.readUInt16BE(8),
          quantity: [5, 6].includes(buffer.readUInt8(7)) ? 1 : buffer.readUInt16BE(10),
        };
        buffer = buffer.subarray(6 + length);
        this.#record(request);
        if (this.#resets(request)) {
          socket.resetAndDestroy();
          return;
        }
      }
    });
  }

  #resets(request: ModbusSimulatorRequest): boolean {
    const area = AREA_OF_FUNCTION[request.functionCode];
    if (area === undefined) return false;
    const direction = request.functionCode <= 4 ? "read" : "write";
    for (const fault of this.#faults) {
      if (fault.kind !== "reset") continue;
      if (faultApplies(fault, request.unitId, area, request.address, request.quantity, direction)) return true;
    }
    return false;
  }

  #record(request: ModbusSimulatorRequest): void {
    this.#requests++;
    this.#byFunction[request.functionCode] = (this.#byFunction[request.functionCode] ?? 0) + 1;
    const limit = QUANTITY_LIMITS[request.functionCode];
    if (limit !== undefined && request.quantity > limit) this.#violations++;
    for (const listener of [...this.#listeners]) listener(request);
  }
}

const AREA_OF_FUNCTION: Readonly<Record<number, ModbusArea>> = {
  1: "coil",
  2: "discrete-input",
  3: "holding-register",
  4: "input-register",
  5: "coil",
  6: "holding-register",
  15: "coil",
  16: "holding-register",
  22: "holding-register",
};

function faultApplies(
  fault: Fault,
  unitId: number,
  area: ModbusArea,
  address: number,
  length: number,
  direction: "read" | "write",
): boolean {
  if (fault.unitId !== undefined && fault.unitId !== unitId) return false;
  const target = fault.target;
  if (!target) return true;
  const on = target.on ?? "any";
  if (on !== "any" && on !== direction) return false;
  if (target.unitId !== undefined && target.unitId !== unitId) return false;
  if (target.area !== area) return false;
  const end = target.address + (target.length ?? 1) - 1;
  return target.address <= address + length - 1 && end >= address;
}

function isTagList(tags: TagCatalog | readonly Tag[]): tags is readonly Tag[] {
  return Array.isArray(tags);
}

/** Asks the OS for a free TCP port on `host` (modbus-serial's ServerTCP cannot listen on port 0). */
function freePort(host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen({ port: 0, host }, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
