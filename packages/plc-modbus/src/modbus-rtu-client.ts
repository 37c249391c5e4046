import { EventEmitter } from "node:events";
import { loadSerialSupport, type ModbusClient, type ModbusSerialOptions } from "./modbus-client";
import { ModbusAnswerRepeats, doubtAnswer } from "./modbus-answer-repeat";
import { ModbusFunctionCodes } from "./modbus-pdu";
import type { ModbusStrayAnswer } from "./modbus-client";
import {
  checkRtuAnswer,
  expectedAnswerLength,
  rtuFrame,
  rtuRequest,
  splitRtuFrames,
  type RtuRequest,
} from "./modbus-rtu-frame";

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
  /** The request's identity for {@link ModbusAnswerRepeats}. */
  readonly key: string;
  /** Its answer's shape (unit, function code, answer length): answer times are learned per shape. */
  readonly shape: string;
  /** The line was out of step when the request went out: an answer counts only if no more bytes follow it. */
  readonly guarded: boolean;
  /** When it went on the line (`performance.now()`). */
  readonly sentAt: number;
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
 *   bytes follow it within the quiet time (a late answer to an earlier request is followed by the next one);
 * - delivers every answer only after the turnaround (3.5 characters, the gap a master leaves before its next
 *   request anyway, plus 2 ms) passed with no byte after it, and an answer byte-identical to the last frame
 *   seen, within {@link REPEAT_WINDOW_MS}, only after twice the last answer's latency plus the quiet time: bytes in
 *   that window make it a mismatch (a repeated frame taken for the answer, the real answer behind it; ADR 0041,
 *   amendment fix12a);
 * - reports bytes no request was waiting for to {@link ModbusRtuClient.onStray} (each whole frame with its
 *   unit and PDU, the rest as noise), never dropping them unseen.
 * A mismatch rejects with an `Error` naming it; an exception answer with `{ modbusCode }`, like modbus-serial.
 * Quiet times run on real time, as they measure the serial line, not the driver's (injectable) clock.
 */
/**
 * How long (ms) after a frame the same bytes again are suspect as its repeat: a repeater, radio modem or echoing
 * converter sends a frame again within a few frame times; 250 ms covers a store-and-forward hop at 1200 baud.
 */
export const REPEAT_WINDOW_MS = 250;

/**
 * How many of a shape's last answer times the client keeps (the shortest of them is the unit's time for the shape,
 * see {@link ModbusRtuClient}), and how many it needs before it judges an answer's time.
 */
const ANSWER_TIMES_KEPT = 16;
const ANSWER_TIMES_NEEDED = 3;

export class ModbusRtuClient extends ModbusFunctionCodes implements ModbusClient {
  readonly #opener: SerialPortOpener;
  readonly #events = new EventEmitter();
  #port: SerialPortLike | undefined;
  #unitId = 1;
  #buffer: Buffer = Buffer.alloc(0);
  #pending: Pending | undefined;
  #outOfStep = false;
  #quietMs = 50;
  #turnaroundMs = 5;
  /** The driver's request timeout (ms), see {@link ModbusRtuClient.setRequestTimeout}. */
  #timeoutMs = 1000;
  /** Counts `transact` calls: only the newest may write (one request on the line at a time). */
  #turn = 0;
  /** How long the last answer took from its request's send to its last byte (ms). */
  #latencyMs = 0;
  /** The last whole frame seen on the line (an answer taken, refused, or no request waited for) and when. */
  #lastFrame: { readonly frame: Buffer; readonly at: number } | undefined;
  /** Bytes that came while no request waited, reported when the line is quiet (`#reportStray`). */
  #stray: Buffer = Buffer.alloc(0);
  #strayTimer: ReturnType<typeof setTimeout> | undefined;
  #lastByteAt = Number.NEGATIVE_INFINITY;
  #frameTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #answerRepeats = new ModbusAnswerRepeats();
  /** The last answer times (ms, send to last byte read) of data answers taken, per answer shape. */
  readonly #answerTimes = new Map<string, number[]>();

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
    this.#turnaroundMs = Math.ceil((3.5 * bitsPerChar * 1000) / (options.baudRate ?? 9600)) + 2;
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

  /**
   * Calls `listener` for bytes that came while no request waited for an answer (a repeated or late frame,
   * noise), once the line is quiet or before the next request goes: once per whole frame (with its unit id and
   * PDU, `refused: false`), once for the rest without `answer`. See {@link ModbusClient.onStray}.
   */
  onStray(listener: (reason: string, answer?: ModbusStrayAnswer) => void): void {
    this.#events.on("stray", listener);
  }

  /**
   * Sets the driver's request timeout (ms): a request not on the line by then minus the time its answer needs
   * (the quiet time and the turnaround) is never written, and rejects "line busy" with `notSent` instead.
   * Without it, the default of 1000 ms (the driver's default `requestTimeoutMs`) applies.
   */
  setRequestTimeout(timeoutMs: number): void {
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Sends one request and waits for its answer, strictly one request on the line at a time: a request arriving
   * while an earlier one is still on the line abandons that one (its caller gave up: the queue sends the next
   * only after the previous finished or timed out), and one still waiting for the line to go quiet is superseded
   * and never written. After any fault the line must be quiet for the quiet time before anything is written; if
   * it is not quiet in time for an answer to come before the request's timeout, the request rejects at once with
   * a retryable "line busy (noise)" error carrying `notSent: true`, and is never written later (ADR 0041, amendment
   * fix12z: before, such requests waited without bound and went out back to back when the noise stopped).
   */
  protected override async transact(pduBytes: Buffer): Promise<Buffer> {
    const turn = ++this.#turn;
    const calledAt = performance.now();
    const deadline = calledAt + this.#timeoutMs;
    const port = this.#port;
    if (!port?.isOpen) throw Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" });
    // The caller gave up on the previous request (its timeout): its answer may still come.
    if (this.#pending) {
      this.#settle(
        this.#pending,
        new Error("no answer in time; the request was given up before the next one went out"),
      );
      this.#outOfStep = true;
    }
    if (this.#outOfStep) {
      // The answer must still fit before the timeout: a guarded answer is taken after a quiet time.
      const latest = deadline - this.#quietMs - this.#turnaroundMs;
      const outcome = await this.#resync(latest, () => this.#turn !== turn);
      if (outcome !== "quiet") throw this.#notWritten(outcome, performance.now() - calledAt);
    }
    if (this.#turn !== turn) throw this.#notWritten("superseded", performance.now() - calledAt);
    if (!port.isOpen || this.#port !== port) {
      throw Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" });
    }
    this.#reportStray();
    const request = rtuRequest(this.#unitId, pduBytes);
    const key = ModbusAnswerRepeats.keyOf(request.unitId, pduBytes);
    const shape = `${request.unitId}:${request.functionCode}:${request.answerLength}`;
    return new Promise<Buffer>((resolve, reject) => {
      const sentAt = performance.now();
      this.#pending = { request, key, shape, guarded: this.#outOfStep, sentAt, resolve, reject, settled: false };
      port.write(rtuFrame(request.unitId, pduBytes));
    });
  }

  /** The rejection of a request that was never written: `notSent`, retryable, naming why. */
  #notWritten(why: "busy" | "superseded", waitedMs: number): Error {
    const message =
      why === "busy"
        ? `line busy (noise): bytes kept arriving for ${Math.round(waitedMs)} ms and the line was not quiet ` +
          `(${this.#quietMs} ms without a byte) in time for an answer within the request timeout ` +
          `(${this.#timeoutMs} ms); the request was not written`
        : "superseded: a newer request took the line while this one waited for it to go quiet; it was not written";
    return Object.assign(new Error(message), { notSent: true, lineBusy: why === "busy" });
  }

  /**
   * Waits until no byte has arrived for the quiet time, then discards what is buffered: `"quiet"`. Gives up with
   * `"busy"` as soon as the line cannot be quiet by `latest` (`performance.now()` time), and with `"superseded"`
   * when `superseded()` says a newer request took the line; the buffer is left alone then.
   */
  async #resync(latest: number, superseded: () => boolean): Promise<"quiet" | "busy" | "superseded"> {
    let polled = false;
    for (;;) {
      if (superseded()) return "superseded";
      const quietAt = this.#lastByteAt + this.#quietMs;
      const now = performance.now();
      if (quietAt <= now) {
        if (polled) break;
        // A timer that fires late (a busy event loop) runs before the loop reads the bytes waiting on the port:
        // let it read them once before taking the line for quiet.
        polled = true;
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      polled = false;
      if (quietAt > latest) return "busy";
      await new Promise((resolve) => setTimeout(resolve, quietAt - now));
    }
    this.#buffer = Buffer.alloc(0);
    return "quiet";
  }

  #receive(data: Buffer): void {
    this.#lastByteAt = performance.now();
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    const pending = this.#pending;
    if (!pending || pending.settled) {
      // Bytes nobody asked for: a late or repeated answer, or noise. Whatever comes next is suspect until
      // resynchronised; they are reported once the line is quiet.
      this.#outOfStep = true;
      this.#answerRepeats.disorder();
      this.#stray = this.#stray.length === 0 ? this.#buffer : Buffer.concat([this.#stray, this.#buffer]);
      this.#buffer = Buffer.alloc(0);
      if (this.#strayTimer) clearTimeout(this.#strayTimer);
      this.#strayTimer = setTimeout(() => this.#reportStray(), this.#quietMs);
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
    const now = performance.now();
    // Send (before the write) to the last byte as read: a busy event loop reads bytes late, so it only ever
    // makes an answer look later than it came, never earlier.
    const latency = now - pending.sentAt;
    // A data answer much sooner than the unit answers this shape is not this request's: an extra frame (a
    // repeater's retransmission, an answer sent out of order) or the previous request's own answer shifted into
    // this window (ADR 0041, amendment fix12c). An answer taken while the line was out of step (quiet before the
    // request and for the quiet time after the answer) is not judged; it teaches the unit's time anew.
    const times = answer.kind === "data" && !pending.guarded ? this.#answerTimesOf(pending.shape) : undefined;
    if (times && latency < times.shortest / 2 && times.shortest - latency > this.#turnaroundMs) {
      this.#mismatch(
        pending,
        `an answer came ${latency.toFixed(1)} ms after the request, less than half the ${times.shortest.toFixed(1)} ms ` +
          `unit ${pending.request.unitId} took at least for its last answers of this size: an extra or late frame, ` +
          `not this request's answer`,
      );
      return;
    }
    const complete = (): void => {
      this.#remember(this.#buffer);
      // A repeat of the previous answer on the line is delivered uncertain unless proven (ModbusAnswerRepeats).
      const doubt = this.#answerRepeats.judge(pending.key, this.#buffer.subarray(0, this.#buffer.length - 2));
      this.#buffer = Buffer.alloc(0);
      if (answer.kind === "exception") {
        this.#settle(pending, Object.assign(new Error(`Modbus exception ${answer.code}`), { modbusCode: answer.code }));
      } else {
        if (doubt === undefined) this.#learnAnswerTime(pending, latency);
        const data = Buffer.from(answer.data);
        this.#settle(pending, undefined, doubt === undefined ? data : doubtAnswer(data, doubt));
      }
    };
    // Take the answer only if the line stays quiet after it (bytes after it make it a mismatch, above): for the
    // turnaround; for the quiet time when the line was out of step; when the frame repeats a recent answer, until
    // twice the last answer's latency after the request plus the quiet time (the real answer behind a repeat
    // comes in the device's own time); when it came sooner than the unit ever took for its last answers of this
    // size, until its usual (median) time plus the turnaround, at most half the request timeout after the request
    // (the real answer behind an extra frame comes then).
    const held = times !== undefined && latency < times.shortest;
    const wait = this.#repeats(this.#buffer)
      ? Math.max(this.#quietMs, pending.sentAt + 2 * this.#latencyMs + this.#quietMs - now)
      : pending.guarded
        ? this.#quietMs
        : held
          ? Math.max(
              this.#turnaroundMs,
              pending.sentAt + Math.min(times.usual + this.#turnaroundMs, this.#timeoutMs / 2) - now,
            )
          : this.#turnaroundMs;
    this.#frameTimer = setTimeout(() => {
      this.#frameTimer = undefined;
      if (this.#pending !== pending || pending.settled) return;
      // A timer that fires late runs before the loop reads bytes waiting on the port: read them first (bytes
      // after the answer make it a mismatch, in #receive).
      setImmediate(() => {
        if (this.#pending !== pending || pending.settled) return;
        if (pending.guarded) this.#outOfStep = false;
        // Taken though sooner than the unit ever answered by more than a turnaround: if it was an extra frame, the
        // request's own answer is still to come; the next request waits for the quiet time, so it comes while no
        // request waits (a stray, the unit fenced) and cannot be taken by the next request of its size.
        if (held && latency < times.shortest - this.#turnaroundMs) this.#outOfStep = true;
        this.#latencyMs = latency;
        complete();
      });
    }, wait);
  }

  /**
   * The shortest and the median of the shape's last answer times (ms), once {@link ANSWER_TIMES_NEEDED} are known.
   * The shortest is the rule's measure: a busy event loop reads bytes late, so it can lengthen every time but
   * shorten none, and one fast answer among slow ones keeps it low.
   */
  #answerTimesOf(shape: string): { readonly shortest: number; readonly usual: number } | undefined {
    const times = this.#answerTimes.get(shape);
    if (!times || times.length < ANSWER_TIMES_NEEDED) return undefined;
    const sorted = [...times].sort((a, b) => a - b);
    return { shortest: sorted[0]!, usual: sorted[Math.floor(sorted.length / 2)]! };
  }

  /**
   * Records a data answer's time for its shape. An answer taken while the line was out of step that came sooner
   * than half the shortest time starts the shape's record anew: the unit got faster (an early answer was refused
   * for it just before, and the line proved quiet around this one).
   */
  #learnAnswerTime(pending: Pending, latency: number): void {
    const known = this.#answerTimesOf(pending.shape);
    const times = this.#answerTimes.get(pending.shape) ?? [];
    if (pending.guarded && known && latency < known.shortest / 2) times.length = 0;
    times.push(latency);
    if (times.length > ANSWER_TIMES_KEPT) times.shift();
    this.#answerTimes.set(pending.shape, times);
  }

  /** Whether `frame` is byte-identical to the last frame seen, within {@link REPEAT_WINDOW_MS} (a repeat). */
  #repeats(frame: Buffer): boolean {
    const last = this.#lastFrame;
    return last !== undefined && performance.now() - last.at < REPEAT_WINDOW_MS && last.frame.equals(frame);
  }

  #remember(frame: Buffer): void {
    this.#lastFrame = { frame: Buffer.from(frame), at: performance.now() };
  }

  /** Reports the bytes that came while no request waited (`#stray`): each whole frame, then the rest as noise. */
  #reportStray(): void {
    if (this.#strayTimer) clearTimeout(this.#strayTimer);
    this.#strayTimer = undefined;
    const bytes = this.#stray;
    this.#stray = Buffer.alloc(0);
    if (bytes.length === 0) return;
    const { frames, rest } = splitRtuFrames(bytes);
    for (const frame of frames) {
      const answer = { unitId: frame[0]!, pdu: Buffer.from(frame.subarray(1, frame.length - 2)), refused: false };
      const repeat = this.#repeats(frame) ? ", a repeat of a recent answer" : "";
      this.#remember(frame);
      this.#answerRepeats.disorder(frame.subarray(0, frame.length - 2));
      this.#events.emit("stray", `a frame of unit ${answer.unitId} no request was waiting for${repeat}`, answer);
    }
    if (rest > 0) this.#events.emit("stray", `${rest} bytes no request was waiting for (noise or a cut frame)`);
  }

  #mismatch(pending: Pending, reason: string): void {
    this.#outOfStep = true;
    // Whole frames in it may come again (a repeat of one is suspect like a repeat of an answer taken).
    for (const frame of splitRtuFrames(this.#buffer).frames) this.#remember(frame);
    this.#answerRepeats.disorder(
      this.#buffer.length > 2 ? this.#buffer.subarray(0, this.#buffer.length - 2) : undefined,
    );
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
    this.#reportStray();
    if (this.#pending) this.#settle(this.#pending, error);
  }
}

/**
 * Creates the RTU client for a serial transport.
 * @param options.requestTimeoutMs The driver's request timeout (ms), see {@link ModbusRtuClient.setRequestTimeout}.
 */
export function createModbusRtuClient(options: { readonly requestTimeoutMs?: number } = {}): ModbusClient {
  const client = new ModbusRtuClient();
  if (options.requestTimeoutMs !== undefined) client.setRequestTimeout(options.requestTimeoutMs);
  return client;
}
