import { EventEmitter } from "node:events";
import { loadSerialSupport, type ModbusClient, type ModbusSerialOptions } from "./modbus-client";
import { ModbusFunctionCodes } from "./modbus-pdu";
import { checkRtuAnswer, expectedAnswerLength, rtuFrame, rtuRequest, type RtuRequest } from "./modbus-rtu-frame";

/** The part of serialport's `SerialPort` the RTU client uses. */
export interface SerialPortLike {
  readonly isOpen: boolean;
  open(callback: (error: Error | null) => void): void;
  write(data: Buffer): unknown;
  close(callback?: (error: Error | null) => void): void;
  on(event: "data", listener: (data: Buffer) => void): unknown;
  on(event: "close", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** Opens serialport's `SerialPort` (loaded on first use). */
export type SerialPortOpener = (path: string, options: ModbusSerialOptions) => Promise<SerialPortLike>;

const openSerialPort: SerialPortOpener = async (path, options) => {
  const SerialPort = await loadSerialSupport();
  return new SerialPort({ path, autoOpen: false, ...options }) as SerialPortLike;
};

interface Pending {
  readonly request: RtuRequest;
  /** The line was out of step when the request went out: an answer counts only if no more bytes follow it. */
  readonly guarded: boolean;
  resolve(data: Buffer): void;
  reject(error: unknown): void;
  settled: boolean;
}

/**
 * A Modbus RTU master on a serial line that never takes a frame that does not answer its request for data.
 * An RTU answer carries no transaction id, so after a late or malformed answer every later one could be
 * shifted by one. This client therefore:
 * - checks every answer against its request (CRC, unit, function code, byte count, echoed write) and
 *   treats bytes before or after it as a fault, never skipping over them to a frame further on;
 * - after any fault (an abandoned request, a bad frame, unsolicited bytes) waits for the line to be quiet
 *   and discards what arrived before sending again, and accepts the next answer only when no further
 *   bytes follow it within the quiet time (a late answer to an earlier request is followed by the next one).
 * A mismatch rejects with an `Error` naming it; an exception answer with `{ modbusCode }`, like modbus-serial.
 * Quiet times run on real time, as they measure the serial line, not the driver's (injectable) clock.
 */
export class ModbusRtuClient extends ModbusFunctionCodes implements ModbusClient {
  readonly #opener: SerialPortOpener;
  readonly #events = new EventEmitter();
  #port: SerialPortLike | undefined;
  #unitId = 1;
  #buffer: Buffer = Buffer.alloc(0);
  #pending: Pending | undefined;
  #outOfStep = false;
  #quietMs = 50;
  #lastByteAt = Number.NEGATIVE_INFINITY;
  #frameTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(opener: SerialPortOpener = openSerialPort) {
    super();
    this.#opener = opener;
  }

  get isOpen(): boolean {
    return this.#port?.isOpen ?? false;
  }

  connectTCP(): Promise<void> {
    return Promise.reject(new Error("ModbusRtuClient speaks Modbus RTU only"));
  }

  async connectRTUBuffered(path: string, options: ModbusSerialOptions): Promise<void> {
    const port = await this.#opener(path, options);
    // Quiet time: the longer of 50 ms (USB adapters deliver in chunks up to 16-32 ms apart) and 20 characters.
    const bitsPerChar =
      1 + (options.dataBits ?? 8) + (options.parity && options.parity !== "none" ? 1 : 0) + (options.stopBits ?? 1);
    this.#quietMs = Math.max(50, Math.ceil((20 * bitsPerChar * 1000) / (options.baudRate ?? 9600)));
    port.on("data", (data) => this.#receive(data));
    port.on("close", () => {
      this.#fail(new Error("the serial port closed"));
      this.#events.emit("close");
    });
    port.on("error", (error) => this.#events.emit("error", error));
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    this.#port = port;
  }

  setID(id: number): void {
    this.#unitId = id;
  }

  destroy(callback: () => void): void {
    const port = this.#port;
    this.#port = undefined;
    this.#fail(new Error("the client was closed"));
    if (!port?.isOpen) {
      callback();
      return;
    }
    port.close(() => callback());
  }

  on(event: "close" | "error", listener: (...args: never[]) => unknown): unknown {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  protected override async transact(pduBytes: Buffer): Promise<Buffer> {
    const port = this.#port;
    if (!port?.isOpen) throw Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" });
    // The caller gave up on the previous request (its timeout): its answer may still come.
    if (this.#pending) {
      this.#settle(this.#pending, new Error("abandoned"));
      this.#outOfStep = true;
    }
    if (this.#outOfStep) await this.#resync();
    const request = rtuRequest(this.#unitId, pduBytes);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending = { request, guarded: this.#outOfStep, resolve, reject, settled: false };
      port.write(rtuFrame(request.unitId, pduBytes));
    });
  }

  /** Waits until no byte has arrived for the quiet time, then discards what is buffered. */
  async #resync(): Promise<void> {
    for (;;) {
      const wait = this.#lastByteAt + this.#quietMs - performance.now();
      if (wait <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    this.#buffer = Buffer.alloc(0);
  }

  #receive(data: Buffer): void {
    this.#lastByteAt = performance.now();
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    const pending = this.#pending;
    if (!pending || pending.settled) {
      // Bytes nobody asked for: a late answer or noise. Whatever comes next is suspect until resynchronised.
      this.#outOfStep = true;
      this.#buffer = Buffer.alloc(0);
      return;
    }
    if (this.#frameTimer) clearTimeout(this.#frameTimer);
    this.#frameTimer = undefined;
    const expected = expectedAnswerLength(pending.request, this.#buffer);
    if (expected !== undefined && this.#buffer.length > expected) {
      this.#mismatch(
        pending,
        `${this.#buffer.length} bytes where the answer has ${expected} (noise or another frame before or after it)`,
      );
      return;
    }
    if (expected === undefined || this.#buffer.length < expected) {
      // A frame ends with silence: one that stops short is not waited for until the request times out.
      this.#frameTimer = setTimeout(() => {
        this.#frameTimer = undefined;
        if (this.#pending === pending && !pending.settled) {
          this.#mismatch(pending, `short frame of ${this.#buffer.length} bytes where ${expected ?? "more"} were due`);
        }
      }, this.#quietMs);
      return;
    }
    const answer = checkRtuAnswer(pending.request, this.#buffer);
    if (answer.kind === "mismatch") {
      this.#mismatch(pending, answer.reason);
      return;
    }
    const complete = (): void => {
      this.#buffer = Buffer.alloc(0);
      if (answer.kind === "exception") {
        this.#settle(pending, Object.assign(new Error(`Modbus exception ${answer.code}`), { modbusCode: answer.code }));
      } else this.#settle(pending, undefined, Buffer.from(answer.data));
    };
    if (!pending.guarded) {
      complete();
      return;
    }
    // Out of step before: take the answer only if the line stays quiet after it.
    this.#frameTimer = setTimeout(() => {
      this.#frameTimer = undefined;
      if (this.#pending !== pending || pending.settled) return;
      this.#outOfStep = false;
      complete();
    }, this.#quietMs);
  }

  #mismatch(pending: Pending, reason: string): void {
    this.#outOfStep = true;
    this.#buffer = Buffer.alloc(0);
    this.#settle(pending, new Error(`${reason}; the line is resynchronised before the next request`));
  }

  #settle(pending: Pending, error: unknown, data?: Buffer): void {
    if (pending.settled) return;
    pending.settled = true;
    if (this.#pending === pending) this.#pending = undefined;
    if (this.#frameTimer) clearTimeout(this.#frameTimer);
    this.#frameTimer = undefined;
    if (error === undefined) pending.resolve(data!);
    else pending.reject(error);
  }

  #fail(error: unknown): void {
    if (this.#pending) this.#settle(this.#pending, error);
  }
}

/** Creates the RTU client for a serial transport. */
export function createModbusRtuClient(): ModbusClient {
  return new ModbusRtuClient();
}
