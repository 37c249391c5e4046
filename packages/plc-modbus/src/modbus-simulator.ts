import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import {
  type Clock,
  type Disposer,
  KilnError,
  type SignalSpec,
  SystemClock,
  type Tag,
  type TagCatalog,
  type TagValue,
} from "@kiln/core";
import { createSignal, type Signal } from "@kiln/core/driver-kit";
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
  /**
   * Answer like a real device for what no tag covers: exception 2 (illegal data address) for any address of a served
   * unit no tag occupies, and for a unit no tag names (nor `unitId`) what `unservedUnits` says. @default false
   */
  readonly strict?: boolean;
  /**
   * With `strict`, how a request to a unit that no tag names (nor `unitId`) is answered: `"gateway"` with exception
   * 0x0B, gateway target device failed to respond (what a TCP-to-serial gateway answers when no device on its line
   * answers that unit; Modbus application protocol v1.1b3, section 7), `"silent"` not at all (a device given a request
   * for another unit id on a line it shares). Without `strict` every unit is served (memory created on first use).
   * @default "gateway"
   */
  readonly unservedUnits?: "gateway" | "silent";
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
  readonly kind: "exception" | "timeout" | "reset" | "delay" | "busy-drop";
  /** The exception code, or the delay in ms. */
  readonly code: number;
}

/** What to do with a request instead of (or before) answering it. */
type FaultAction =
  | { readonly kind: "exception"; readonly code: number }
  | { readonly kind: "timeout" | "reset" }
  | { readonly kind: "delay"; readonly ms: number };

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
/** Longest MBAP length field: unit id plus a 253-byte PDU (Modbus application protocol 4.1). */
const MAX_MBAP_LENGTH = 254;

/**
 * A Modbus TCP server serving a Kiln tag list at its addresses, with the core's signal generators, for tests,
 * demos and benchmarks. It answers like a device (Modbus application protocol v1.1b3): function codes 1-6,
 * 15, 16 and 22; exception 01 for any other function code or a frame too short for its function, 03 for an
 * illegal quantity (0, more than 125 registers or 2000 bits read, 123 registers or 1968 coils written, a
 * byte count that does not match, a request longer or shorter than its fields imply), 02 for addresses past 65535
 * (and, when `strict`, any unmapped address; a unit no tag names gets 0x0B or silence, see `unservedUnits`).
 * Requests on one connection are answered independently, by transaction id, so pipelined requests work.
 * It accepts writes (a written tag keeps its value) and injects faults: exceptions, silence (per address or
 * per unit), late replies, connection resets and dropped connections.
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
  readonly #unservedUnits: "gateway" | "silent";
  /** Units a tag names, and the default unit (see {@link ModbusSimulatorOptions.unservedUnits}). */
  readonly #servedUnits = new Set<number>();
  readonly #entries: Entry[] = [];
  readonly #byName = new Map<string, Entry>();
  readonly #index = new Map<string, Entry[]>();
  readonly #memory = new Map<number, UnitMemory>();
  readonly #faults = new Set<Fault>();
  readonly #listeners = new Set<(request: ModbusSimulatorRequest) => void>();
  readonly #byFunction: Record<number, number> = {};
  readonly #sockets = new Set<Socket>();
  #port: number;
  #server: Server | undefined;
  #requests = 0;
  #violations = 0;
  #connections = 0;

  /** @throws KilnValidationError when a tag has no valid Modbus address. */
  constructor(options: ModbusSimulatorOptions) {
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 0;
    this.#clock = options.clock ?? new SystemClock();
    this.#strict = options.strict ?? false;
    this.#unservedUnits = options.unservedUnits ?? "gateway";
    // Duck-typed rather than instanceof, so a catalog from a second copy of @kiln/core works too.
    const tags = isTagList(options.tags) ? options.tags : options.tags.list();
    const defaultUnit = options.unitId ?? 1;
    const defaultOrder = options.byteOrder ?? "ABCD";
    this.#servedUnits.add(defaultUnit);
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
      this.#servedUnits.add(entry.unitId);
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
    try {
      this.#server = await this.#listen(this.#port);
      this.#port = (this.#server.address() as AddressInfo).port;
      return { host: this.#host, port: this.#port };
    } catch (error) {
      throw new KilnError("KILN_CONNECTION_FAILED", `Modbus simulator cannot listen on ${this.#host}:${this.#port}.`, {
        cause: error,
        retryable: true,
      });
    }
  }

  /** Stops listening and drops every connection. Idempotent. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.dropConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Same as {@link ModbusSimulator.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Drops every open connection; the server keeps listening, so clients can reconnect. */
  dropConnections(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
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

  /**
   * Answers requests touching `target` (every request when omitted) `delayMs` late until the returned
   * disposer is called, as a slow device or a congested gateway. Other requests are answered meanwhile.
   */
  injectDelay(delayMs: number, target?: ModbusFaultTarget): Disposer {
    return this.#addFault({ target, kind: "delay", code: delayMs });
  }

  /**
   * Takes one request at a time per connection until the returned disposer is called: a request that arrives
   * while an earlier one on the same connection is still unanswered (see {@link ModbusSimulator.injectDelay})
   * is dropped without an answer, as many gateways and small devices do with pipelined requests.
   */
  injectBusyDrop(): Disposer {
    return this.#addFault({ target: undefined, kind: "busy-drop", code: 0 });
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
    const raw = rawFromEngineering(value, address, { tag: entry.tag.name, clamp, round: true });
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

  /** The fault that applies to a request, if any. */
  #fault(
    unitId: number,
    area: ModbusArea,
    address: number,
    length: number,
    direction: "read" | "write",
  ): FaultAction | undefined {
    for (const fault of this.#faults) {
      if (!faultApplies(fault, unitId, area, address, length, direction)) continue;
      if (fault.kind === "exception") return { kind: "exception", code: fault.code };
      if (fault.kind === "delay") return { kind: "delay", ms: fault.code };
      if (fault.kind === "timeout" || fault.kind === "reset") return { kind: fault.kind };
    }
    if (this.#strict && !this.#mapped(unitId, area, address, length)) return { kind: "exception", code: 2 };
    return undefined;
  }

  #mapped(unitId: number, area: ModbusArea, address: number, length: number): boolean {
    for (let offset = 0; offset < length; offset++) {
      if (!this.#index.has(this.#key(unitId, area, address + offset))) return false;
    }
    return true;
  }

  #listen(port: number): Promise<Server> {
    return new Promise<Server>((resolve, reject) => {
      const server = createServer({ noDelay: true }, (socket) => this.#serve(socket));
      server.once("error", reject);
      server.listen({ port, host: this.#host }, () => {
        server.removeListener("error", reject);
        server.on("error", () => undefined);
        resolve(server);
      });
    });
  }

  #serve(socket: Socket): void {
    this.#connections++;
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer: Buffer = Buffer.alloc(0);
    const busy = { answers: 0 };
    socket.on("data", (data: Buffer) => {
      buffer = buffer.length === 0 ? data : Buffer.concat([buffer, data]);
      while (buffer.length >= 7) {
        const length = buffer.readUInt16BE(4);
        if (length < 1 || length > MAX_MBAP_LENGTH) {
          // Not Modbus TCP framing: a device drops such a connection.
          socket.destroy();
          return;
        }
        if (buffer.length < 6 + length) break;
        const frame = buffer.subarray(0, 6 + length);
        buffer = buffer.subarray(6 + length);
        if (!this.#handle(socket, frame, busy)) return;
      }
    });
  }

  /** Answers one MBAP frame; false when the connection was reset. `busy` counts answers still owed. */
  #handle(socket: Socket, frame: Buffer, busy: { answers: number }): boolean {
    const unitId = frame.readUInt8(6);
    const pdu = frame.subarray(7);
    const functionCode = pdu.length > 0 ? pdu.readUInt8(0) : 0;
    const request: ModbusSimulatorRequest = {
      unitId,
      functionCode,
      address: pdu.length >= 3 ? pdu.readUInt16BE(1) : 0,
      quantity:
        functionCode === 5 || functionCode === 6 || functionCode === 22 ? 1 : pdu.length >= 5 ? pdu.readUInt16BE(3) : 0,
    };
    // Like a real device or gateway: a frame of another protocol than Modbus (protocol id not 0) and a
    // broadcast (unit 0, which no device answers) get no answer.
    if (frame.readUInt16BE(2) !== 0 || unitId === 0) return true;
    this.#record(request);
    if (busy.answers > 0 && [...this.#faults].some((fault) => fault.kind === "busy-drop")) return true;
    const outcome = this.#execute(pdu, unitId);
    if (outcome.kind !== "answer") {
      if (outcome.kind === "timeout") return true;
      socket.resetAndDestroy();
      return false;
    }
    const reply = Buffer.allocUnsafe(7 + outcome.pdu.length);
    frame.copy(reply, 0, 0, 4); // transaction and protocol id
    reply.writeUInt16BE(outcome.pdu.length + 1, 4);
    reply.writeUInt8(unitId, 6);
    outcome.pdu.copy(reply, 7);
    if (outcome.delayMs > 0) {
      busy.answers++;
      setTimeout(() => {
        busy.answers--;
        if (!socket.destroyed) socket.write(reply);
      }, outcome.delayMs);
    } else socket.write(reply);
    return true;
  }

  /** The response PDU to a request PDU, or what to do instead. */
  #execute(
    pdu: Buffer,
    unitId: number,
  ): { kind: "answer"; pdu: Buffer; delayMs: number } | { kind: "timeout" | "reset" } {
    const functionCode = pdu.length > 0 ? pdu.readUInt8(0) : 0;
    const exception = (code: number) => ({
      kind: "answer" as const,
      pdu: Buffer.from([(functionCode | 0x80) & 0xff, code]),
      delayMs: 0,
    });
    if (this.#strict && !this.#servedUnits.has(unitId))
      return this.#unservedUnits === "gateway" ? exception(0x0b) : { kind: "timeout" };
    const shape = PDU_SHAPES[functionCode];
    if (!shape || pdu.length < shape.minLength) return exception(1);
    // A request longer than its function's fields (an FC 6 with a trailing byte, an FC 16 with more data than its
    // byte count) is malformed: its implied length is wrong, exception 3, nothing executed (Modbus application
    // protocol v1.1b3, section 7: "illegal data value ... the implied length is incorrect").
    if (!shape.byteCount && pdu.length !== shape.minLength) return exception(3);
    const address = pdu.readUInt16BE(1);
    const quantity = shape.single ? 1 : pdu.readUInt16BE(3);
    if (quantity < 1 || quantity > shape.maxQuantity) return exception(3);
    if (shape.byteCount) {
      const byteCount = pdu.readUInt8(5);
      const expected = shape.area === "coil" ? Math.ceil(quantity / 8) : quantity * 2;
      if (byteCount !== expected || pdu.length !== 6 + byteCount) return exception(3);
    }
    if (functionCode === 5) {
      const value = pdu.readUInt16BE(3);
      if (value !== 0x0000 && value !== 0xff00) return exception(3);
    }
    if (address + quantity > 65536) return exception(2);
    const fault = this.#fault(unitId, shape.area, address, quantity, functionCode <= 4 ? "read" : "write");
    if (fault?.kind === "exception") return exception(fault.code);
    if (fault?.kind === "timeout" || fault?.kind === "reset") return { kind: fault.kind };
    const delayMs = fault?.kind === "delay" ? fault.ms : 0;
    return { kind: "answer", pdu: this.#apply(functionCode, pdu, address, quantity, unitId, shape.area), delayMs };
  }

  /** Carries out a valid, fault-free request and builds its response PDU. */
  #apply(functionCode: number, pdu: Buffer, address: number, quantity: number, unitId: number, area: ModbusArea) {
    const memory = this.#unit(unitId);
    switch (functionCode) {
      case 1:
      case 2: {
        this.#touch(unitId, area, address, quantity);
        const bits = functionCode === 1 ? memory.coils : memory.discreteInputs;
        const byteCount = Math.ceil(quantity / 8);
        const reply = Buffer.alloc(2 + byteCount);
        reply.writeUInt8(functionCode, 0);
        reply.writeUInt8(byteCount, 1);
        for (let offset = 0; offset < quantity; offset++) {
          if (bits[address + offset] === 1) reply[2 + (offset >> 3)]! |= 1 << (offset & 7);
        }
        return reply;
      }
      case 3:
      case 4: {
        this.#touch(unitId, area, address, quantity);
        const words = functionCode === 3 ? memory.holdingRegisters : memory.inputRegisters;
        const reply = Buffer.allocUnsafe(2 + quantity * 2);
        reply.writeUInt8(functionCode, 0);
        reply.writeUInt8(quantity * 2, 1);
        for (let offset = 0; offset < quantity; offset++) reply.writeUInt16BE(words[address + offset]!, 2 + offset * 2);
        return reply;
      }
      case 5:
        memory.coils[address] = pdu.readUInt16BE(3) === 0xff00 ? 1 : 0;
        this.#pin(unitId, "coil", address, 1);
        return Buffer.from(pdu.subarray(0, 5));
      case 6:
        memory.holdingRegisters[address] = pdu.readUInt16BE(3);
        this.#pin(unitId, "holding-register", address, 1);
        return Buffer.from(pdu.subarray(0, 5));
      case 15:
        for (let offset = 0; offset < quantity; offset++) {
          memory.coils[address + offset] = (pdu[6 + (offset >> 3)]! >> (offset & 7)) & 1;
        }
        this.#pin(unitId, "coil", address, quantity);
        return Buffer.from(pdu.subarray(0, 5));
      case 16:
        for (let offset = 0; offset < quantity; offset++) {
          memory.holdingRegisters[address + offset] = pdu.readUInt16BE(6 + offset * 2);
        }
        this.#pin(unitId, "holding-register", address, quantity);
        return Buffer.from(pdu.subarray(0, 5));
      default: {
        // 22, mask write register: (current AND andMask) OR (orMask AND NOT andMask).
        const andMask = pdu.readUInt16BE(3);
        const orMask = pdu.readUInt16BE(5);
        const current = memory.holdingRegisters[address]!;
        memory.holdingRegisters[address] = ((current & andMask) | (orMask & ~andMask)) & 0xffff;
        this.#pin(unitId, "holding-register", address, 1);
        return Buffer.from(pdu.subarray(0, 7));
      }
    }
  }

  #record(request: ModbusSimulatorRequest): void {
    this.#requests++;
    this.#byFunction[request.functionCode] = (this.#byFunction[request.functionCode] ?? 0) + 1;
    const limit = QUANTITY_LIMITS[request.functionCode];
    if (limit !== undefined && request.quantity > limit) this.#violations++;
    for (const listener of [...this.#listeners]) listener(request);
  }
}

/** What each supported function code's request looks like (Modbus application protocol 6.1-6.16). */
interface PduShape {
  readonly area: ModbusArea;
  /** Bytes up to the quantity or value (and the byte count for 15 and 16). */
  readonly minLength: number;
  readonly maxQuantity: number;
  /** One address, no quantity field (5, 6, 22). */
  readonly single?: boolean;
  /** A byte count and data follow (15, 16). */
  readonly byteCount?: boolean;
}

const PDU_SHAPES: Readonly<Record<number, PduShape>> = {
  1: { area: "coil", minLength: 5, maxQuantity: 2000 },
  2: { area: "discrete-input", minLength: 5, maxQuantity: 2000 },
  3: { area: "holding-register", minLength: 5, maxQuantity: 125 },
  4: { area: "input-register", minLength: 5, maxQuantity: 125 },
  5: { area: "coil", minLength: 5, maxQuantity: 1, single: true },
  6: { area: "holding-register", minLength: 5, maxQuantity: 1, single: true },
  15: { area: "coil", minLength: 6, maxQuantity: 1968, byteCount: true },
  16: { area: "holding-register", minLength: 6, maxQuantity: 123, byteCount: true },
  22: { area: "holding-register", minLength: 7, maxQuantity: 1, single: true },
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
