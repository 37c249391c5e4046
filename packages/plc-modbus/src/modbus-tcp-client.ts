import { EventEmitter } from "node:events";
import net from "node:net";
import type { ModbusClient, ModbusStrayAnswer } from "./modbus-client";
import { checkAnswerPdu, rtuRequest, type RtuAnswer, type RtuRequest } from "./modbus-rtu-frame";
import { ModbusFunctionCodes } from "./modbus-pdu";

/** Options of {@link ModbusTcpClient}. */
export interface ModbusTcpClientOptions {
  /**
   * A request unanswered after this long (ms, real time) has been given up by its caller; its answer, if
   * it comes later, is dropped. The driver passes its `requestTimeoutMs`. @default 1000
   */
  readonly requestTimeoutMs?: number;
  /**
   * How a frame that nothing follows yet is proven to end where the next one starts (see
   * {@link ModbusTcpClient}): `"default"` delivers it at once when no other request is in flight,
   * `"strict"` always waits `quietGapMs` first. @default "default"
   */
  readonly frameCheck?: "default" | "strict";
  /**
   * Quiet time (ms, real time) with no byte arriving after a frame that proves the frame was not cut
   * short and completed with the first bytes of a later one. @default 2
   */
  readonly quietGapMs?: number;
}

interface Pending {
  readonly request: RtuRequest;
  readonly sentAt: number;
  /** Sent by {@link ModbusTcpClient.patientNext}: an answer that does not fit it is dropped, not taken. */
  readonly patient: boolean;
  resolve(data: Buffer): void;
  reject(error: unknown): void;
}

/** A complete frame at the start of the buffer, not yet delivered. */
interface Frame {
  readonly transactionId: number;
  readonly unitId: number;
  /** Bytes of the whole frame, header included. */
  readonly end: number;
}

/** Requests answered or given up, by transaction id; a late or repeated answer is dropped without alarm. */
const ANSWERED_MEMORY = 256;

/** Default of {@link ModbusTcpClientOptions.quietGapMs}. */
const QUIET_GAP_MS = 2;

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
 * - Modbus TCP has no frame delimiter: a frame cut short upstream (its MBAP length claims more bytes than
 *   came) is completed by the first bytes of whatever comes next (the next answer, a gateway's resend) and
 *   would pass every check of its own. So a complete frame is delivered only once the stream is proven
 *   aligned at its end: either the bytes after it form a complete next frame whose header is plausible,
 *   whose transaction id belongs to a request in flight or answered or given up lately, whose unit id is
 *   that request's and whose PDU answers it (or which repeats the frame byte for byte); or nothing follows
 *   it and no other request is in flight (delivered at once, so one request at a time is not slowed); or
 *   nothing follows it and no byte arrives for `quietGapMs` (with other requests in flight, and always in
 *   `frameCheck: "strict"`). The next frame's header is judged as its bytes arrive (transaction id, protocol
 *   id, length, unit id), so a misalignment is usually seen at once. A misaligned stream is dropped and every
 *   request in flight fails as a mismatch (with `pipelineDesync: true` when requests were pipelined in the
 *   last request timeout). An unfinished frame left when no request is in flight is dropped before the next
 *   request.
 *
 * What stays undetectable on a delimiter-less stream: in the default mode, a cut frame completed exactly
 * at the end of the bytes received so far while it is the only request in flight (a gateway writing header
 * and PDU separately); in either mode, the rest arriving later than the quiet gap, or a completion followed
 * by bytes that happen to form a right answer to a request in flight or lately answered.
 *
 * A mismatch rejects with an `Error` carrying `mismatch: true`; an exception with `{ modbusCode }`, like
 * modbus-serial; a closed or reset socket fails the requests in flight at once with `PortNotOpenError`.
 * Every answer dropped without being taken by a request is reported to {@link ModbusTcpClient.onStray}, so the
 * driver can tell that its answer stream may be shifted (see `ModbusRequestQueue.unasked`).
 */
export class ModbusTcpClient extends ModbusFunctionCodes implements ModbusClient {
  readonly #events = new EventEmitter();
  readonly #pending = new Map<number, Pending>();
  /** Requests answered or given up lately, by transaction id (oldest first), for telling a late answer. */
  readonly #answered = new Map<number, RtuRequest>();
  #socket: net.Socket | undefined;
  #unitId = 1;
  #transactionId = 0;
  #buffer: Buffer = Buffer.alloc(0);
  #ignored = 0;
  #patientNext = false;
  readonly #staleAfterMs: number;
  readonly #strict: boolean;
  readonly #quietGapMs: number;
  #quietTimer: ReturnType<typeof setTimeout> | undefined;
  /** Until when (performance.now()) a mismatch counts as a pipeline desync: a request timeout after the last request sent with another in flight. */
  #pipelinedUntil = Number.NEGATIVE_INFINITY;

  constructor(options: ModbusTcpClientOptions = {}) {
    super();
    this.#staleAfterMs = options.requestTimeoutMs ?? 1000;
    this.#strict = options.frameCheck === "strict";
    this.#quietGapMs = options.quietGapMs ?? QUIET_GAP_MS;
  }

  /**
   * Answers dropped because they belong to no request in flight: late answers to requests given up,
   * repeated answers, and, with one request in flight, an answer with an id never used (a stale frame).
   */
  get ignoredAnswers(): number {
    return this.#ignored;
  }

  /**
   * Makes the next request patient: an answer that comes with its transaction id but does not fit it (an
   * older answer a gateway stamped with the newest id) is dropped and reported as `stray`, and the request
   * keeps waiting for its own (a fence, see `ModbusRequestOptions.fence`).
   */
  patientNext(): void {
    this.#patientNext = true;
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

  onStray(listener: (reason: string, answer?: ModbusStrayAnswer) => void): void {
    this.#events.on("stray", listener);
  }

  on(event: "close" | "error", listener: (...args: never[]) => unknown): unknown {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  protected override transact(pdu: Buffer): Promise<Buffer> {
    const socket = this.#socket;
    const patient = this.#patientNext;
    this.#patientNext = false;
    if (!this.isOpen || !socket) {
      return Promise.reject(Object.assign(new Error("Port Not Open"), { name: "PortNotOpenError" }));
    }
    this.#transactionId = (this.#transactionId + 1) & 0xffff;
    const transactionId = this.#transactionId;
    // A request still waiting with this id (65,536 requests ago) was given up long since.
    const stale = this.#pending.get(transactionId);
    if (stale) this.#abandon(transactionId, stale);
    this.#answered.delete(transactionId);
    this.#pruneStale();
    this.#dropStalePartialFrame();
    const now = performance.now();
    if (this.#pending.size > 0) this.#pipelinedUntil = now + this.#staleAfterMs;
    const request = rtuRequest(this.#unitId, pdu);
    const frame = Buffer.alloc(7 + pdu.length);
    frame.writeUInt16BE(transactionId, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(pdu.length + 1, 4);
    frame[6] = request.unitId;
    frame.set(pdu, 7);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(transactionId, { request, sentAt: now, patient, resolve, reject });
      socket.write(frame);
    });
  }

  /**
   * Holds this connection's writes back until the returned release is called (idempotent), so the frames written
   * meanwhile leave in one TCP segment where they fit (`socket.cork()`): the queue's id proof sends its two reads
   * this way, so a gateway gets both before it can answer the first (ADR 0041 fix12f). A no-op when not connected.
   */
  holdWrites(): () => void {
    const socket = this.#socket;
    if (socket === undefined || socket.destroyed) return () => undefined;
    socket.cork();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (!socket.destroyed) socket.uncork();
    };
  }

  /** Forgets requests their callers have given up on (timed out), so they no longer count as in flight. */
  #pruneStale(): void {
    // The caller's timer may fire a little before this clock says the time is up.
    const before = performance.now() - this.#staleAfterMs + STALE_TOLERANCE_MS;
    for (const [transactionId, pending] of this.#pending) {
      if (pending.sentAt <= before) this.#abandon(transactionId, pending);
    }
  }

  /** Forgets the request with `transactionId`; its answer, if it still comes, is dropped. */
  #abandon(transactionId: number, pending: Pending): void {
    this.#pending.delete(transactionId);
    this.#remember(transactionId, pending.request);
    pending.reject(new Error("no answer in time; the request was given up (an answer that still comes is dropped)"));
  }

  /**
   * With no request in flight, bytes left in the buffer (an unfinished frame, or frames still waiting for
   * their alignment proof) can only be the rest of answers given up on (a frame cut short, then silence):
   * dropped before the next request, so its answer is never completed with them.
   */
  #dropStalePartialFrame(): void {
    if (this.#pending.size === 0 && this.#buffer.length > 0) {
      const rest = this.#buffer;
      this.#clearQuietTimer();
      this.#buffer = Buffer.alloc(0);
      this.#stray("an unfinished frame with no request waiting", {
        unitId: rest[6] ?? 0,
        pdu: Buffer.from(rest.subarray(7)),
        refused: false,
      });
    }
  }

  #receive(data: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    this.#clearQuietTimer();
    this.#deliverAligned(false);
  }

  /**
   * Delivers every complete frame at the start of the buffer whose end is proven aligned (see the class
   * comment); `quiet` says that no byte arrived for the quiet gap since the buffer last changed.
   */
  #deliverAligned(quiet: boolean): void {
    this.#pruneStale();
    for (;;) {
      const buffer = this.#buffer;
      const header = judgeHeader(buffer, 0, "answer");
      if (header !== undefined) {
        // The stream cannot be split into frames any more: drop what is buffered, fail what is in flight.
        this.#clearQuietTimer();
        this.#buffer = Buffer.alloc(0);
        this.#mismatchAll(header);
        return;
      }
      if (buffer.length < 7) return;
      const end = 6 + buffer.readUInt16BE(4);
      if (buffer.length < end) return;
      const frame: Frame = { transactionId: buffer.readUInt16BE(0), unitId: buffer[6]!, end };
      const hidden = this.#hiddenFrame(buffer, frame);
      if (hidden !== undefined) {
        this.#misaligned(hidden);
        return;
      }
      const own = this.#pending.get(frame.transactionId);
      const check = own && this.#check(own.request, frame.unitId, buffer.subarray(7, end));
      const next = buffer.length === end ? "nothing" : this.#judgeNext(buffer, frame);
      if (next !== "nothing" && next !== "wait" && next !== "aligned") {
        this.#misaligned(check?.kind === "mismatch" ? `${check.reason}; ${next}` : next);
        return;
      }
      if (check?.kind === "mismatch" && own?.patient === true) {
        // An older answer stamped with the patient request's id: dropped, the request waits for its own.
        this.#buffer = buffer.length === end ? Buffer.alloc(0) : buffer.subarray(end);
        this.#stray(`an answer that does not fit the request waiting with its id (${check.reason})`, {
          unitId: frame.unitId,
          pdu: Buffer.from(buffer.subarray(7, end)),
          refused: false,
        });
        quiet = false;
        continue;
      }
      if (check?.kind === "mismatch") {
        // It answers no request for data whatever follows it; what follows cannot be trusted either.
        this.#take(frame, check);
        if (this.#buffer.length > 0) this.#misaligned("the bytes after an answer that did not fit its request");
        return;
      }
      const alone = this.#pending.size === 0 || (this.#pending.size === 1 && own !== undefined);
      if (next === "wait") {
        // With no other request in flight no answer can follow: bytes that stay short of a frame after the
        // quiet gap are trailing bytes (a device appending junk), refused at once rather than timed out.
        if (!alone) return;
        if (quiet) this.#misaligned("the bytes after an answer start no frame and nothing else came (trailing bytes?)");
        else this.#armQuietTimer();
        return;
      }
      if (next === "nothing") {
        if (quiet || (alone && !this.#strict)) this.#take(frame, check);
        else this.#armQuietTimer();
        return;
      }
      this.#take(frame, check);
      quiet = false;
    }
  }

  /**
   * Whether the bytes after `frame` start a frame that proves `frame` ends where it should: `"aligned"`,
   * `"wait"` for more bytes, or why not.
   */
  #judgeNext(buffer: Buffer, frame: Frame): "aligned" | "wait" | string {
    const offset = frame.end;
    const following = buffer.length - offset;
    const header = judgeHeader(buffer, offset, "the bytes after an answer start a frame");
    if (header !== undefined) return header;
    if (following < 2) return "wait";
    const transactionId = buffer.readUInt16BE(offset);
    const request = this.#pending.get(transactionId)?.request ?? this.#answered.get(transactionId);
    const repeat = request === undefined && transactionId === frame.transactionId;
    if (request === undefined && !repeat) {
      return `the bytes after an answer start a frame with transaction id ${transactionId}, which no request has`;
    }
    if (following < 7) return "wait";
    const unitId = buffer[offset + 6]!;
    const expectedUnit = request?.unitId ?? frame.unitId;
    if (unitId !== expectedUnit) {
      return `the bytes after an answer start a frame from unit ${unitId} with the transaction id of a request to unit ${expectedUnit}`;
    }
    const end = offset + 6 + buffer.readUInt16BE(offset + 4);
    if (buffer.length < end) return "wait";
    if (repeat) {
      return buffer.subarray(offset, end).equals(buffer.subarray(0, frame.end))
        ? "aligned"
        : `the bytes after an answer start a frame with transaction id ${transactionId}, which no request has`;
    }
    const answer = this.#check(request!, unitId, buffer.subarray(offset + 7, end));
    return answer.kind === "mismatch"
      ? `the frame after an answer does not fit its request (${answer.reason})`
      : "aligned";
  }

  /**
   * Why `frame` is a cut answer completed by a whole later frame, if it is: its last bytes form,
   * on their own, a complete frame (protocol 0, a length reaching exactly its end, the unit) that
   * rightly answers another request in flight or recently answered. Nothing may follow such a
   * frame, so no other check sees it. Register data that happen to spell such a frame (a known
   * transaction id, a length to the byte, the unit, the function code and byte count) would be
   * refused too: a bad read, never a wrong value.
   */
  #hiddenFrame(buffer: Buffer, frame: Frame): string | undefined {
    // The shortest frame is an exception answer: a 7-byte MBAP header, the function code and the code.
    for (let offset = 7; offset + 9 <= frame.end; offset++) {
      if (buffer[offset + 2] !== 0 || buffer[offset + 3] !== 0 || buffer[offset + 4] !== 0) continue;
      if (offset + 6 + buffer[offset + 5]! !== frame.end) continue;
      const transactionId = buffer.readUInt16BE(offset);
      if (transactionId === frame.transactionId) continue;
      const request = this.#pending.get(transactionId)?.request ?? this.#answered.get(transactionId);
      if (request === undefined || buffer[offset + 6] !== request.unitId) continue;
      if (checkAnswerPdu(request, buffer.subarray(offset + 7, frame.end)).kind === "mismatch") continue;
      return `an answer ends with a whole answer to transaction id ${transactionId}`;
    }
    return undefined;
  }

  #check(request: RtuRequest, unitId: number, pdu: Buffer): RtuAnswer {
    return unitId === request.unitId
      ? checkAnswerPdu(request, pdu)
      : { kind: "mismatch", reason: `answer from unit ${unitId} to a request for unit ${request.unitId}` };
  }

  /** Takes `frame` off the buffer and settles the request it answers. */
  #take(frame: Frame, checked: RtuAnswer | undefined): void {
    const buffer = this.#buffer;
    this.#buffer = buffer.length === frame.end ? Buffer.alloc(0) : buffer.subarray(frame.end);
    this.#answer(frame.transactionId, frame.unitId, buffer.subarray(7, frame.end), checked);
  }

  #armQuietTimer(): void {
    if (this.#quietTimer !== undefined) return;
    this.#quietTimer = setTimeout(() => {
      this.#quietTimer = undefined;
      this.#deliverAligned(true);
    }, this.#quietGapMs);
  }

  #clearQuietTimer(): void {
    if (this.#quietTimer === undefined) return;
    clearTimeout(this.#quietTimer);
    this.#quietTimer = undefined;
  }

  /** The stream cannot be split into frames any more: drop what is buffered, fail what is in flight. */
  #misaligned(reason: string): void {
    this.#clearQuietTimer();
    this.#buffer = Buffer.alloc(0);
    this.#mismatchAll(`answer frames do not line up (${reason}: a frame cut short?)`);
  }

  /** Settles the request `transactionId` answers; `checked` is its check against that request, if done. */
  #answer(transactionId: number, unitId: number, pdu: Buffer, checked?: RtuAnswer): void {
    const pending = this.#pending.get(transactionId);
    if (!pending) {
      // With several requests in flight an unknown id means the device numbers its answers wrongly: none of
      // them can be trusted. With one, it is a stale or repeated frame: dropped, the request still waits.
      const stray = { unitId, pdu: Buffer.from(pdu) };
      if (this.#pending.size > 1 && !this.#answered.has(transactionId)) {
        const reason = `answer with transaction id ${transactionId}, which no request in flight has`;
        this.#stray(reason, { ...stray, refused: true });
        this.#mismatchAll(reason);
      } else
        this.#stray(`an answer with transaction id ${transactionId}, which no request waiting has`, {
          ...stray,
          refused: false,
        });
      return;
    }
    const answer = checked ?? this.#check(pending.request, unitId, pdu);
    if (answer.kind === "mismatch") {
      // Reported before the request fails, so it accounts for an answer owed before that request's own is owed.
      this.#stray(`an answer that does not fit the request waiting with its id (${answer.reason})`, {
        unitId,
        pdu: Buffer.from(pdu),
        refused: !pending.patient,
      });
      if (pending.patient) return;
    }
    if (answer.kind === "mismatch") {
      if (this.#pending.size > 1) this.#mismatchAll(`${answer.reason} (transaction id ${transactionId})`);
      else {
        this.#pending.delete(transactionId);
        this.#remember(transactionId, pending.request);
        pending.reject(mismatchError(answer.reason, this.#pipelining()));
      }
      return;
    }
    this.#pending.delete(transactionId);
    this.#remember(transactionId, pending.request);
    if (answer.kind === "exception") {
      pending.reject(Object.assign(new Error(`Modbus exception ${answer.code}`), { modbusCode: answer.code }));
    } else pending.resolve(Buffer.from(answer.data));
  }

  /** An answer was dropped without being taken by a request, or refused by the request with its id (`answer.refused`). */
  #stray(reason: string, answer?: ModbusStrayAnswer): void {
    if (answer?.refused !== true) this.#ignored++;
    this.#events.emit("stray", reason, answer);
  }

  #remember(transactionId: number, request: RtuRequest): void {
    this.#answered.delete(transactionId);
    this.#answered.set(transactionId, request);
    if (this.#answered.size > ANSWERED_MEMORY) this.#answered.delete(this.#answered.keys().next().value!);
  }

  /** Whether requests were on the wire together lately, so a mismatch now is a pipeline desync. */
  #pipelining(): boolean {
    return this.#pending.size > 1 || performance.now() < this.#pipelinedUntil;
  }

  /** Fails every request in flight: an answer that fits none of them makes all of their answers suspect. */
  #mismatchAll(reason: string): void {
    const desync = this.#pipelining();
    for (const [transactionId, pending] of [...this.#pending]) {
      this.#pending.delete(transactionId);
      this.#remember(transactionId, pending.request);
      pending.reject(mismatchError(reason, desync));
    }
  }

  #failAll(error: Error): void {
    this.#clearQuietTimer();
    this.#buffer = Buffer.alloc(0);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}

/** The caller's request timer may fire this much (ms) before `performance.now()` says its time is up. */
const STALE_TOLERANCE_MS = 2;

/**
 * Why the bytes from `offset` cannot start an MBAP header (`what` names them), judged as far as they go:
 * protocol id 0 (once 4 bytes are there) and a length of 2-254 (once 6 are); undefined while they can.
 */
function judgeHeader(buffer: Buffer, offset: number, what: string): string | undefined {
  const following = buffer.length - offset;
  if (following >= 4) {
    const protocolId = buffer.readUInt16BE(offset + 2);
    if (protocolId !== 0) return `${what} with protocol id ${protocolId} (Modbus is 0)`;
  }
  if (following >= 6) {
    const length = buffer.readUInt16BE(offset + 4);
    if (length < 2 || length > 254) return `${what} with MBAP length ${length} (2-254 allowed)`;
  }
  return undefined;
}

function mismatchError(reason: string, pipelineDesync: boolean): Error {
  return Object.assign(new Error(`answer does not match the request: ${reason}`), { mismatch: true, pipelineDesync });
}

/** Creates the TCP client for a TCP transport. */
export function createModbusTcpClient(options?: ModbusTcpClientOptions): ModbusClient {
  return new ModbusTcpClient(options);
}
