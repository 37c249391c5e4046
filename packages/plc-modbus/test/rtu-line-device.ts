import { loadSerialSupport } from "../src/modbus-client";
import { crc16, rtuFrame } from "../src/modbus-rtu-frame";
import type { SerialPortLike } from "../src/modbus-rtu-client";

/**
 * Turns the normal answer frame into what goes on the line (a fault), or null to stay silent; several frames are
 * sent 10 ms apart.
 */
export type AnswerFault = (answer: Buffer, request: Buffer) => Buffer | readonly Buffer[] | null;

/**
 * A small Modbus RTU device (holding registers and coils per unit) on one end of a serial line, for tests:
 * answers in order, can be paused (requests pile up unanswered, as a stopped process) and can corrupt its
 * next answers.
 */
export class RtuLineDevice {
  readonly registers = new Map<number, Uint16Array>();
  readonly coils = new Map<number, Uint8Array>();
  readonly faults: AnswerFault[] = [];
  /**
   * How late (ms) to answer the request numbered `index` (from 0), or 0 for at once. While a late answer
   * is pending the device is busy and ignores requests, as a slow device does. `request` is the request frame.
   */
  lateBy: (index: number, request: Buffer) => number = () => 0;
  /**
   * With `concurrent`, a late answer does not make the device busy: every request is answered on its own
   * schedule, so a late answer may come while a later request is on the line (a gateway or a multi-drop
   * line of devices answering independently).
   */
  concurrent = false;
  /**
   * With `busyPerUnit`, each unit is its own device on a multi-drop line: a late answer makes only its own unit
   * busy (ignoring the requests to it meanwhile), the other units keep answering.
   */
  busyPerUnit = false;
  /**
   * How long (ms) after an answer to send the same frame again (a repeater or radio modem echoing it), or 0
   * for never. `request` is the request frame.
   */
  repeatAfter: (request: Buffer) => number = () => 0;
  requests = 0;
  /** Every request frame with a valid CRC this device received, with when (`performance.now()`). */
  readonly received: { readonly at: number; readonly frame: Buffer }[] = [];
  /** The last frame this device put on the line (what a repeater would repeat). */
  lastSent: Buffer | undefined;
  #busy = false;
  readonly #busyUnits = new Set<number>();
  #port: SerialPortLike;
  #buffer: Buffer = Buffer.alloc(0);
  #paused = false;
  #held: Buffer[] = [];

  private constructor(port: SerialPortLike, units: readonly number[]) {
    this.#port = port;
    for (const unit of units) {
      this.registers.set(unit, new Uint16Array(256));
      this.coils.set(unit, new Uint8Array(256));
    }
    port.on("data", (data: Buffer) => this.#receive(data));
  }

  static async open(path: string, units: readonly number[]): Promise<RtuLineDevice> {
    const SerialPort = await loadSerialSupport();
    const port = new SerialPort({ path, baudRate: 19200, autoOpen: false }) as SerialPortLike;
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    return new RtuLineDevice(port, units);
  }

  /** Stops answering; requests are held and answered in order on {@link RtuLineDevice.resume}. */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const held = this.#held.splice(0);
    for (const request of held) this.#answer(request);
  }

  /**
   * Puts random bytes on the line every 20 ms for `durationMs` (line noise, or a device babbling); resolves when
   * it stops, with the longest silence between two bursts (ms). This device runs on the test's event loop, so on
   * a loaded machine a burst can come late: a silence as long as a client's quiet time is a real pause in the
   * noise, and a client may rightly use it.
   */
  async babble(durationMs: number): Promise<{ readonly longestSilenceMs: number }> {
    const end = performance.now() + durationMs;
    let last: number | undefined;
    let longestSilenceMs = 0;
    while (performance.now() < end) {
      if (this.#port.isOpen) {
        this.#port.write(Buffer.from([0x55, 0xaa, 0x13].map((byte) => byte ^ (Math.random() * 256))));
        const now = performance.now();
        if (last !== undefined) longestSilenceMs = Math.max(longestSilenceMs, now - last);
        last = now;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { longestSilenceMs };
  }

  /** Puts `frame` on the line now, unasked (a repeater's or radio modem's own retransmission). */
  write(frame: Buffer): void {
    this.lastSent = frame;
    if (this.#port.isOpen) this.#port.write(frame);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.#port.isOpen ? this.#port.close(() => resolve()) : resolve(undefined)));
  }

  #receive(data: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, data]);
    for (;;) {
      if (this.#buffer.length < 2) return;
      const functionCode = this.#buffer[1]!;
      const length =
        functionCode === 15 || functionCode === 16
          ? this.#buffer.length >= 7
            ? 9 + this.#buffer[6]!
            : Number.POSITIVE_INFINITY
          : functionCode === 22
            ? 10
            : 8;
      if (this.#buffer.length < length) return;
      const request = this.#buffer.subarray(0, length);
      this.#buffer = this.#buffer.subarray(length);
      if (request.readUInt16LE(length - 2) !== crc16(request.subarray(0, length - 2))) continue;
      const index = this.requests++;
      this.received.push({ at: performance.now(), frame: Buffer.from(request) });
      const unitId = request[0]!;
      if (this.#busy || this.#busyUnits.has(unitId)) continue;
      if (this.#paused) this.#held.push(Buffer.from(request));
      else {
        const late = this.lateBy(index, request);
        if (late <= 0) this.#answer(request);
        else {
          const concurrent = this.concurrent;
          const perUnit = this.busyPerUnit;
          if (perUnit) this.#busyUnits.add(unitId);
          else if (!concurrent) this.#busy = true;
          const held = Buffer.from(request);
          setTimeout(() => {
            if (perUnit) this.#busyUnits.delete(unitId);
            else if (!concurrent) this.#busy = false;
            this.#answer(held);
          }, late);
        }
      }
    }
  }

  #answer(request: Buffer): void {
    const unitId = request[0]!;
    const registers = this.registers.get(unitId);
    const coils = this.coils.get(unitId);
    if (!registers || !coils) return; // no such unit on the bus: silence
    const functionCode = request[1]!;
    const address = request.readUInt16BE(2);
    const value = request.readUInt16BE(4);
    let pdu: Buffer;
    if (functionCode === 3 || functionCode === 4) {
      pdu = Buffer.alloc(2 + value * 2);
      pdu[0] = functionCode;
      pdu[1] = value * 2;
      for (let index = 0; index < value; index++) pdu.writeUInt16BE(registers[address + index] ?? 0, 2 + index * 2);
    } else if (functionCode === 1) {
      pdu = Buffer.alloc(2 + Math.ceil(value / 8));
      pdu[0] = 1;
      pdu[1] = pdu.length - 2;
      for (let index = 0; index < value; index++)
        if (coils[address + index]) pdu[2 + (index >> 3)]! |= 1 << (index & 7);
    } else if (functionCode === 6) {
      registers[address] = value;
      pdu = Buffer.from(request.subarray(1, 6));
    } else if (functionCode === 5) {
      coils[address] = value === 0xff00 ? 1 : 0;
      pdu = Buffer.from(request.subarray(1, 6));
    } else if (functionCode === 16) {
      for (let index = 0; index < value; index++) registers[address + index] = request.readUInt16BE(7 + index * 2);
      pdu = Buffer.from(request.subarray(1, 6));
    } else pdu = Buffer.from([functionCode | 0x80, 1]);
    const answer = rtuFrame(unitId, pdu);
    const fault = this.faults.shift();
    const faulted = fault ? fault(answer, request) : answer;
    const frames = faulted === null ? [] : Buffer.isBuffer(faulted) ? [faulted] : faulted;
    frames.forEach((frame, index) => {
      if (index === 0) this.write(frame);
      else setTimeout(() => this.write(frame), 10 * index);
    });
    const sent = frames.at(-1);
    const repeat = this.repeatAfter(request);
    if (sent && repeat > 0) setTimeout(() => this.#port.isOpen && this.#port.write(sent), repeat);
  }
}

/** Recomputes the CRC of a frame whose bytes a fault changed. */
export function withCrc(frame: Buffer): Buffer {
  const copy = Buffer.from(frame);
  copy.writeUInt16LE(crc16(copy.subarray(0, copy.length - 2)), copy.length - 2);
  return copy;
}
