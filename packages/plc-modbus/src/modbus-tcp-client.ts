import { EventEmitter } from "node:events";
import net from "node:net";
import type { ModbusClient } from "./modbus-client";
import { checkAnswerPdu, rtuRequest, type RtuRequest } from "./modbus-rtu-frame";
import { ModbusFunctionCodes } from "./modbus-pdu";

/** Options of {@link ModbusTcpClient}. */
export interface ModbusTcpClientOptions {
  /**
   * A request unanswered after this long (ms, real time) has been given up by its caller; its answer, if
   * it comes later, is dropped. The driver passes its `requestTimeoutMs`. @default 1000
   */
  readonly requestTimeoutMs?: number;
}

interface Pending {
  readonly request: RtuRequest;
  readonly sentAt: number;
  resolve(data: Buffer): void;
  reject(error: unknown): void;
}

/** Transaction ids whose requests were given up or answered; a late or repeated answer is dropped without alarm. */
const ABANDONED_MEMORY = 256;

/**
 * A Modbus TCP client (Modbus messaging on TCP/IP v1.0b) that never takes a frame that does not answer
 * its request for data:
 * - every answer is checked against its own request by the same {@link checkAnswerPdu} as RTU
 *   (function code, byte count against the quantity, PDU length, echoed write) and its MBAP header
 *   (protocol id 0, a length of 2-254 that the frame fills, the request's unit id);
 * - answers are matched by transaction id, so several requests may be in flight; with several in flight,
 *   an answer whose id was never used (a device that numbers its answers wrongly) or any mismatch fails
 *   every request in flight with `pipelineDesync: true`: none of them can be trusted. An answer to a
 *   request already answered or given up, or with one request in flight an unknown id, is dropped and
 *   counted ({@link ModbusTcpClient.ignoredAnswers}); the request in flight keeps waiting for its own.
 * - Modbus TCP has no frame delimiter, so a frame is refused when the bytes already after it cannot start
 *   an MBAP header: a frame cut short upstream and completed with the next frame's first bytes is caught
 *   when the next frame arrived with it (any shift of 1-6 bytes into a read's answer); the misaligned
 *   stream is dropped and the requests in flight fail as a mismatch. An unfinished frame left when no
 *   request is in flight is dropped before the next request. This narrows, not closes, the hole a
 *   delimiter-less protocol leaves: a cut frame completed exactly at a TCP segment end, or shifted by 7
 *   or more bytes into data that looks like a header, is not detectable here.
 * A mismatch rejects with an `Error` carrying `mismatch: true`; an exception with `{ modbusCode }`, like
 * modbus-serial; a closed or reset socket fails the requests in flight at once with `PortNotOpenError`.
 */
export class ModbusTcpClient extends ModbusFunctionCodes implements ModbusClient {
  readonly #events = new EventEmitter();
  readonly #pending = new Map<number, Pending>();
  readonly #abandoned: number[] = [];
  #socket: net.Socket | undefined;
  #unitId = 1;
  #transactionId = 0;
  #buffer: Buffer = Buffer.alloc(0);
  #ignored = 0;
  readonly #staleAfterMs: number;

  constructor(options: ModbusTcpClientOptions = {}) {
    super();
    this.#staleAfterMs = options.requestTimeoutMs ?? 1000;
  }

  /**
   * Answers dropped because they belong to no request in flight: late answers to requests given up,
   * repeated answers, and, with one request in flight, an answer with an id never used (a stale frame).
   */
  get ignoredAnswers(): number {
    return this.#ignored;
  }

  get isOpen(): boolean {
    const socket = this.#socket;
    return socket !== undefined && !socket.destroyed && socket.readyState === "open";
  }

  connectTCP(host: string, options: { port: number }): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host, port: options.port });
      socket.setNoDelay(true);
      this.#socket = socket;
      let connected = false;
      socket.once("connect", () => {
        connected = true;
        resolve();
      });
      socket.on("data", (data) => this.#receive(data));
      socket.on("error", (error) => {
        if (!connected) reject(error);
        else this.#events.emit("error", error);
      });
      socket.once("close", () => {
        this.#failAll(Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" }));
        if (connected) this.#events.emit("close");
      });
    });
  }

  connectRTUBuffered(): Promise<void> {
    return Promise.reject(new Error("ModbusTcpClient speaks Modbus TCP only"));
  }

  setID(id: number): void {
    this.#unitId = id;
  }

  destroy(callback: () => void): void {
    const socket = this.#socket;
    this.#failAll(Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" }));
    if (!socket || socket.destroyed) {
      callback();
      return;
    }
    socket.once("close", () => callback());
    socket.destroy();
  }

  on(event: "close" | "error", listener: (...args: never[]) => unknown): unknown {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  protected override transact(pdu: Buffer): Promise<Buffer> {
    const socket = this.#socket;
    if (!this.isOpen || !socket) {
      return Promise.reject(Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" }));
    }
    this.#transactionId = (this.#transactionId + 1) & 0xffff;
    const transactionId = this.#transactionId;
    // A request still waiting with this id (65,536 requests ago) was given up long since.
    const stale = this.#pending.get(transactionId);
    if (stale) this.#abandon(transactionId, stale);
    this.#pruneStale();
    this.#dropStalePartialFrame();
    const request = rtuRequest(this.#unitId, pdu);
    const frame = Buffer.alloc(7 + pdu.length);
    frame.writeUInt16BE(transactionId, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(pdu.length + 1, 4);
    frame[6] = request.unitId;
    frame.set(pdu, 7);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(transactionId, { request, sentAt: performance.now(), resolve, reject });
      socket.write(frame);
    });
  }

  /** Forgets requests their callers have given up on (timed out), so they no longer count as in flight. */
  #pruneStale(): void {
    const before = performance.now() - this.#staleAfterMs;
    for (const [transactionId, pending] of this.#pending) {
      if (pending.sentAt <= before) this.#abandon(transactionId, pending);
    }
  }

  /** Forgets the request with `transactionId`; its answer, if it still comes, is dropped. */
  #abandon(transactionId: number, pending: Pending): void {
    this.#pending.delete(transactionId);
    this.#remember(transactionId);
    pending.reject(new Error("abandoned"));
  }

  /**
   * With no request in flight, bytes of an unfinished frame can only be the rest of an answer given up
   * on (a frame cut short, then silence): dropped before the next request, so its answer is never
   * completed with them.
   */
  #dropStalePartialFrame(): void {
    if (this.#pending.size === 0 && this.#buffer.length > 0) {
      this.#buffer = Buffer.alloc(0);
      this.#ignored++;
    }
  }

  #receive(data: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    while (this.#buffer.length >= 7) {
      const buffer = this.#buffer;
      const protocolId = buffer.readUInt16BE(2);
      const length = buffer.readUInt16BE(4);
      if (protocolId !== 0 || length < 2 || length > 254) {
        // The stream cannot be split into frames any more: drop what is buffered, fail what is in flight.
        this.#buffer = Buffer.alloc(0);
        this.#mismatchAll(
          protocolId !== 0
            ? `answer with protocol id ${protocolId} (Modbus is 0)`
            : `answer with MBAP length ${length} (2-254 allowed)`,
        );
        return;
      }
      const end = 6 + length;
      if (buffer.length < end) return;
      // Modbus TCP has no frame delimiter: a frame cut short on the way would be completed with the
      // first bytes of the next one and pass every check of its own (byte count and length agree).
      // So what already follows a frame must start like an MBAP header (protocol id 0 once 4 bytes
      // follow, a length of 2-254 once 6 do); a shift of 1 to 6 bytes into a read's answer fails it.
      // A frame is not held back waiting for more: a device with trailing bytes is still served.
      if (!plausibleHeaderStart(buffer, end)) {
        this.#buffer = Buffer.alloc(0);
        this.#mismatchAll(
          "answer frames do not line up (the bytes after a frame start no Modbus TCP header: a frame cut short?)",
        );
        return;
      }
      const transactionId = buffer.readUInt16BE(0);
      const unitId = buffer[6]!;
      const pdu = buffer.subarray(7, end);
      this.#buffer = buffer.subarray(end);
      this.#answer(transactionId, unitId, pdu);
    }
  }

  #answer(transactionId: number, unitId: number, pdu: Buffer): void {
    this.#pruneStale();
    const pending = this.#pending.get(transactionId);
    if (!pending) {
      // With several requests in flight an unknown id means the device numbers its answers wrongly: none of
      // them can be trusted. With one, it is a stale or repeated frame: dropped, the request still waits.
      if (this.#pending.size > 1 && !this.#abandoned.includes(transactionId)) {
        this.#mismatchAll(`answer with transaction id ${transactionId}, which no request in flight has`);
      } else this.#ignored++;
      return;
    }
    const several = this.#pending.size > 1;
    const answer =
      unitId === pending.request.unitId
        ? checkAnswerPdu(pending.request, pdu)
        : ({
            kind: "mismatch",
            reason: `answer from unit ${unitId} to a request for unit ${pending.request.unitId}`,
          } as const);
    if (answer.kind === "mismatch") {
      if (several) this.#mismatchAll(`${answer.reason} (transaction id ${transactionId})`);
      else {
        this.#pending.delete(transactionId);
        pending.reject(mismatchError(answer.reason, false));
      }
      return;
    }
    this.#pending.delete(transactionId);
    this.#remember(transactionId);
    if (answer.kind === "exception") {
      pending.reject(Object.assign(new Error(`Modbus exception ${answer.code}`), { modbusCode: answer.code }));
    } else pending.resolve(Buffer.from(answer.data));
  }

  #remember(transactionId: number): void {
    this.#abandoned.push(transactionId);
    if (this.#abandoned.length > ABANDONED_MEMORY) this.#abandoned.shift();
  }

  /** Fails every request in flight: an answer that fits none of them makes all of their answers suspect. */
  #mismatchAll(reason: string): void {
    const several = this.#pending.size > 1;
    for (const [transactionId, pending] of [...this.#pending]) {
      this.#pending.delete(transactionId);
      this.#abandoned.push(transactionId);
      pending.reject(mismatchError(reason, several));
    }
    while (this.#abandoned.length > ABANDONED_MEMORY) this.#abandoned.shift();
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}

/**
 * Whether the bytes from `offset` to the end of `buffer` can be the start of an MBAP header: protocol
 * id 0 (checked once 4 bytes are there) and a length of 2-254 (once 6 are). Fewer bytes cannot be judged.
 */
function plausibleHeaderStart(buffer: Buffer, offset: number): boolean {
  const following = buffer.length - offset;
  if (following >= 4 && buffer.readUInt16BE(offset + 2) !== 0) return false;
  if (following < 6) return true;
  const length = buffer.readUInt16BE(offset + 4);
  return length >= 2 && length <= 254;
}

function mismatchError(reason: string, pipelineDesync: boolean): Error {
  return Object.assign(new Error(`answer does not match the request: ${reason}`), { mismatch: true, pipelineDesync });
}

/** Creates the TCP client for a TCP transport. */
export function createModbusTcpClient(options?: ModbusTcpClientOptions): ModbusClient {
  return new ModbusTcpClient(options);
}
