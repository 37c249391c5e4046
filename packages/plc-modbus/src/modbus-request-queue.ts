import { type Clock, KilnError } from "@kiln/core";
import { type TimerHandle } from "@kiln/core";
import { onAbort } from "@kiln/core/driver-kit";
import { modbusFailureOf, modbusTimeoutError } from "./modbus-failure";

/** Options of {@link ModbusRequestQueue}. */
export interface ModbusRequestQueueOptions {
  /** Source of time for timeouts and delays. */
  readonly clock: Clock;
  /** A request with no reply after this long rejects with `KILN_TIMEOUT` and frees the line. */
  readonly timeoutMs: number;
  /** Quiet time between the end of one request and the start of the next. @default 0 */
  readonly interRequestDelayMs?: number;
  /**
   * How long (ms) after its request's timeout a late answer may still arrive: the late bound of a request is
   * `timeoutMs + lateAnswerGuardMs` from when it went on the wire (twice the timeout with the driver's guard).
   * Every request that ended without its own trusted answer (timed out, refused an answer that did not fit
   * it, failed in a pipeline desync, a fence among them) enters a ledger of possibly late answers until
   * its send time plus that bound, and no request of the same shape (or without one) goes out before
   * that: a late answer arrives while nothing is asked that it would fit (Modbus RTU has no transaction id to
   * tell it apart; a TCP gateway may stamp it with the newest request's id). A request of another shape goes
   * at once: a late answer cannot pass as its answer, it is refused as a mismatch (and that request enters
   * the ledger in turn: its own answer may still come). What the shape holds is the caller's (the driver
   * leaves the unit out on TCP, where a gateway may stamp a late answer with another request's unit id).
   * @default 0
   */
  readonly lateAnswerGuardMs?: number;
  /** Requests on the wire at once (Modbus TCP matches answers by transaction id). @default 1 */
  readonly maxInFlight?: number;
}

interface Entry {
  readonly operation: () => Promise<unknown>;
  readonly what: string;
  readonly signal: AbortSignal | undefined;
  /** Goes out only when no other request waits (a probe), so it never delays one that does. */
  readonly background: boolean;
  /** A request of another shape to the same unit, sent first when a late answer may be held (see `fence`). */
  readonly fence: (() => Promise<unknown>) | undefined;
  /** This entry is a fence: a short timeout, and its timeout starts no quiet time. */
  readonly isFence?: boolean;
  /** The shape of its answer (unit, function, size); see {@link ModbusRequestOptions.shape}. */
  readonly shape: string | undefined;
  /** The shape of its fence's answer; see {@link ModbusRequestOptions.fenceShape}. */
  readonly fenceShape?: string | undefined;
  /** The shape of an exception answer to it; see {@link ModbusRequestOptions.exceptionShape}. */
  readonly exceptionShape?: string | undefined;
  /** Sent while a late answer of its exception shape could still come (see `#strayExceptions`). */
  strayRisk?: boolean;
  /**
   * A fence sent while a late answer of its own shape could still come: an answer that fits it may be that
   * one, so its own may still come too, and it enters the ledger whatever its outcome.
   */
  fenceAtRisk?: boolean;
  /** Order in which it went on the wire (set by #execute). */
  sent?: number;
  /** When (clock ms) it went on the wire (set by #execute): its answer may come until this plus the late bound. */
  sentAt?: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  settled: boolean;
  /** Stops waiting on the caller's signal (set while the request is queued). */
  stopWaiting?: () => void;
  /** Frees the line while the request is in flight (set by #execute). */
  release?: () => void;
}

/** How {@link ModbusRequestQueue.run} treats one request. */
export interface ModbusRequestOptions {
  /** Send it only when no other request waits (a probe), so it never delays one that does. @default false */
  readonly background?: boolean;
  /**
   * What its answer looks like (e.g. `"1/3/250"`: unit, function code, byte count). While the device has
   * not proved that it stamps answers with the right transaction id, two requests of the same shape are
   * never on the wire together: an answer given the other one's id would fit it and be taken as its
   * value. Requests without a shape are treated as distinguishable from every other.
   */
  readonly shape?: string;
  /**
   * A harmless request whose answer has another shape than this one's (a read of another size at the same
   * unit). After a request of this shape timed out, with the late-answer guard on, and before any request of
   * another shape has been answered since, it goes out first: a gateway that holds a late answer back until
   * the next request arrives and stamps it with that request's transaction id hands the late answer to the
   * fence, which refuses it (its shape does not fit), instead of to this request. Its outcome is ignored.
   */
  readonly fence?: () => Promise<unknown>;
  /**
   * The shape of the fence's answer (like `shape`). A fence that ends without its own answer enters the
   * ledger of possibly late answers under it, so a read of that shape waits until the fence's answer can no
   * longer come; so does one sent while a late answer of its shape could still come (an answer that fit it may
   * have been that one). A fence never goes out while a request of its shape is on the wire (before the ids are
   * proven). Its outcome is ignored, so it need not wait for the ledger itself. Without it, a failed fence holds back every request for the late bound.
   */
  readonly fenceShape?: string;
  /**
   * What an exception answer to it looks like (e.g. `"1/holding-register"`: unit and function; an exception
   * carries no size). With the late-answer guard on, an exception answer that came while a request of the same
   * exception shape was on the wire with it, or had timed out less than `lateAnswerGuardMs` before, may be that
   * request's late answer: it rejects with `KILN_DEVICE_ERROR` `details.unprovenException` (the code) instead
   * of the exception, so nothing is learned from it (see docs/drivers/modbus.md, "Learned holes").
   */
  readonly exceptionShape?: string;
}

/**
 * Answers to requests of different shapes that came back with their own transaction id while a request
 * sent later was in flight, after which requests of the same shape may be pipelined too.
 */
export const TRANSACTION_ID_PROOFS = 3;

/** How long (ms, at most the request timeout) a fence waits for an answer; see {@link ModbusRequestOptions.fence}. */
const FENCE_TIMEOUT_MS = 100;

function abortError(what: string, signal: AbortSignal): KilnError {
  return new KilnError("KILN_ABORTED", `${what} was aborted.`, { cause: signal.reason });
}

/**
 * Runs Modbus requests on one connection, `maxInFlight` at a time (default one). modbus-serial has no queue
 * and no default timeout, and serial lines and many gateways cannot take a second request before the first
 * is answered, so every request waits its turn, gets `timeoutMs` to complete, and waits for
 * `interRequestDelayMs` of quiet time after the last completed request. {@link ModbusRequestQueue.fail}
 * rejects the requests in flight and every queued one at once (connection lost, driver closed).
 */
export class ModbusRequestQueue {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #delayMs: number;
  #maxInFlight: number;
  readonly #queue: Entry[] = [];
  readonly #inFlight = new Set<Entry>();
  #running = false;
  #lastEnd = Number.NEGATIVE_INFINITY;
  readonly #guardMs: number;
  /**
   * The ledger of possibly late answers: until when (clock ms) an answer to a request of each shape (undefined:
   * a shapeless request, which could fit any) that ended without its own trusted answer may still arrive
   * (its send time plus the late bound, `timeoutMs + lateAnswerGuardMs`). Requests of that shape wait.
   */
  readonly #quiet = new Map<string | undefined, number>();
  /**
   * After a timeout (guard on): its shape and the requests sent by then. Cleared once a request of another
   * shape sent after it completes (any late answer held back was handed to that one) or a fence ran.
   */
  readonly #fences = new Map<string, number>();
  /** Until when (ms) a late exception answer to a request of each exception shape that failed may still come. */
  readonly #strayExceptions = new Map<string, number>();
  /** A fence is on the wire: requests of the fenced shape wait for it. */
  #fencing = false;
  #sent = 0;
  #proofs = 0;
  /** Holders keeping background requests back (reads in progress; see holdBackground). */
  #holds = 0;

  constructor(options: ModbusRequestQueueOptions) {
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.#delayMs = options.interRequestDelayMs ?? 0;
    this.#maxInFlight = options.maxInFlight ?? 1;
    this.#guardMs = options.lateAnswerGuardMs ?? 0;
  }

  /** Requests on the wire at once; lowering it lets those in flight finish. */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  set maxInFlight(value: number) {
    this.#maxInFlight = value;
  }

  /**
   * Whether the device has proved that it stamps answers with their request's transaction id
   * ({@link TRANSACTION_ID_PROOFS} answers to distinguishable requests in flight together), so requests
   * of the same shape may be pipelined.
   */
  get idsProven(): boolean {
    return this.#proofs >= TRANSACTION_ID_PROOFS;
  }

  /** Forgets that proof (a new connection may reach another device). */
  forgetIdProof(): void {
    this.#proofs = 0;
  }

  /**
   * Keeps background requests (probes) off the wire until the returned release is called (idempotent):
   * a read holds them while it runs, so a probe never slips in between two of its requests (the read
   * queues one after the other, so the queue is empty for a moment after each answer) and holds the line
   * for a whole request timeout in the middle of the read.
   */
  holdBackground(): () => void {
    this.#holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#holds--;
      if (this.#holds === 0) void this.#pump();
    };
  }

  /**
   * Forgets the ledger of possibly late answers (see `lateAnswerGuardMs`): on a new TCP connection no late
   * answer of the old one can arrive.
   */
  endQuiet(): void {
    this.#quiet.clear();
    this.#fences.clear();
    this.#strayExceptions.clear();
  }

  /** Requests on the wire now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests waiting, including those in flight. */
  get size(): number {
    return this.#queue.length + this.#inFlight.size;
  }

  /**
   * Queues `operation` and resolves with its result once it has run. Rejects with `KILN_TIMEOUT` when it
   * takes longer than the timeout, `KILN_ABORTED` when `signal` aborts before the request was sent (it is
   * dropped from the queue), or the error given to {@link ModbusRequestQueue.fail}. Once sent, a request
   * is not cut short by `signal`: it settles with its answer or its timeout, so its outcome is never lost
   * (a caller that stops waiting races its own signal). A `background` request (a probe) waits behind
   * every other request, including those queued after it.
   */
  run<T>(
    operation: () => Promise<T>,
    what: string,
    signal?: AbortSignal,
    options: ModbusRequestOptions = {},
  ): Promise<T> {
    const background = options.background ?? false;
    if (signal?.aborted) return Promise.reject(abortError(what, signal));
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        operation,
        what,
        signal,
        background,
        shape: options.shape,
        exceptionShape: options.exceptionShape,
        fence: options.fence,
        fenceShape: options.fenceShape,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
      };
      if (signal) {
        // One listener per signal however many requests share it (core's onAbort fans out).
        entry.stopWaiting = onAbort(signal, () => {
          // Only a request not sent yet is dropped (#execute detaches this once it is sent). One on the
          // wire runs to its answer or timeout and settles with that outcome, which the driver counts in
          // the unit's and the link's health; a caller who stops waiting races its own signal.
          const index = this.#queue.indexOf(entry);
          if (index < 0) return;
          this.#queue.splice(index, 1);
          this.#settle(entry, false, abortError(what, signal));
        });
      }
      const firstBackground = background ? -1 : this.#queue.findIndex((queued) => queued.background);
      if (firstBackground >= 0) this.#queue.splice(firstBackground, 0, entry);
      else this.#queue.push(entry);
      void this.#pump();
    });
  }

  /** Rejects the requests in flight and every queued request with `error`. */
  fail(error: unknown): void {
    const inFlight = [...this.#inFlight];
    const queued = this.#queue.splice(0);
    for (const entry of inFlight) {
      this.#settle(entry, false, error);
      entry.release?.();
    }
    for (const entry of queued) this.#settle(entry, false, error);
  }

  #settle(entry: Entry, ok: boolean, value: unknown): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.stopWaiting?.();
    if (ok) entry.resolve(value);
    else entry.reject(value);
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) {
        if (this.#delayMs > 0 || this.#guardMs > 0) {
          const head = this.#queue[0]!;
          const quiet = this.#quietFor(head.shape);
          const wait = Math.max(this.#lastEnd + this.#delayMs, quiet) - this.#clock.now();
          if (wait > 0) {
            await this.#clock.sleep(wait);
            continue; // the head may have changed meanwhile (a live request goes before a probe)
          }
        }
        const next = this.#queue[0];
        if (!next) break;
        if (next.background && this.#holds > 0) break; // pumped again when the last hold is released
        // Until the device proved its transaction ids, an answer must fit only one request in flight.
        if (this.#sameShapeInFlight(next)) break;
        const fenced = next.shape !== undefined && this.#fences.has(next.shape);
        if (fenced && this.#fencing) break; // pumped again when the fence completes
        if (fenced && next.fence !== undefined) {
          // The fence's answer must fit no other request on the wire with it (before the ids are proven).
          if (
            next.fenceShape === undefined
              ? this.#inFlight.size > 0
              : this.#sameShapeInFlight({ ...next, shape: next.fenceShape })
          )
            break;
          this.#sendFence(next.shape!, next.fence, next.fenceShape, next.what);
          continue;
        }
        const entry = this.#queue.shift()!;
        void this.#execute(entry).then(() => {
          this.#lastEnd = this.#clock.now();
          void this.#pump();
        });
      }
    } finally {
      this.#running = false;
    }
  }

  /** Sends `fence` (see {@link ModbusRequestOptions.fence}) ahead of the request `what`; its outcome is ignored. */
  #sendFence(shape: string, fence: () => Promise<unknown>, fenceShape: string | undefined, what: string): void {
    this.#fences.delete(shape);
    this.#fencing = true;
    const entry: Entry = {
      operation: fence,
      what: `fence before ${what}`,
      signal: undefined,
      background: false,
      fence: undefined,
      isFence: true,
      shape: fenceShape,
      resolve: () => undefined,
      reject: () => undefined,
      settled: false,
    };
    void this.#execute(entry).then(() => {
      this.#fencing = false;
      this.#lastEnd = this.#clock.now();
      void this.#pump();
    });
  }

  #sameShapeInFlight(entry: Entry): boolean {
    if (entry.shape === undefined || this.idsProven) return false;
    for (const other of this.#inFlight) if (other.shape === entry.shape) return true;
    return false;
  }

  /**
   * Counts a proof of right transaction ids: `entry` was answered with its own id while a request of another
   * shape, sent after it, was in flight (a device stamping the newest id would have given it that one's id,
   * which the answer would not fit).
   */
  #proveIds(entry: Entry): void {
    if (entry.shape === undefined || this.idsProven) return;
    for (const other of this.#inFlight) {
      if (other !== entry && (other.sent ?? 0) > (entry.sent ?? 0) && other.shape !== entry.shape) {
        this.#proofs++;
        return;
      }
    }
  }

  /**
   * `entry` completed (answered, refused, or failed other than by its own timeout): when it went out after the
   * last timeout and has another shape, any late answer a gateway held back was handed to it, so requests of
   * the timed-out shape need no fence.
   */
  #answeredSince(entry: Entry): void {
    if (this.#fences.size === 0 || entry.shape === undefined) return;
    for (const [shape, sentBefore] of this.#fences) {
      if (shape !== entry.shape && (entry.sent ?? 0) > sentBefore) this.#fences.delete(shape);
    }
  }

  /**
   * `entry` failed without its own answer (a timeout, an answer that did not fit, a fence's failure too): with
   * the guard on, it enters the ledger of possibly late answers until its answer can no longer come (its send
   * time plus the late bound, however early it failed: after an answer that did not fit, its own may still
   * come stamped with a later request's id), and requests of its shape wait until then, then a fence (see
   * {@link ModbusRequestOptions.fence}).
   */
  #startQuiet(entry: Entry, unproven = false): void {
    if (this.#guardMs <= 0) return;
    const now = this.#clock.now();
    // Its own answer may come until its send time plus the late bound (a timer firing late adds its delay).
    const until = Math.max((entry.sentAt ?? now) + this.#timeoutMs, now) + this.#guardMs;
    this.#ledger(this.#quiet, entry.shape, until);
    if (entry.isFence === true) return; // its outcome is ignored: nothing to fence, no exception learned
    if (entry.shape !== undefined) this.#fences.set(entry.shape, this.#sent);
    // An untrusted exception was an answer: one that was this request's own says nothing later may come
    // (else one refused address read every scan would keep every later refusal untrusted).
    if (entry.exceptionShape !== undefined && !unproven)
      this.#ledger(this.#strayExceptions, entry.exceptionShape, until);
  }

  /** Extends `ledger`'s entry for `shape` to `until` (never shortens it). */
  #ledger<K>(ledger: Map<K, number>, shape: K, until: number): void {
    ledger.set(shape, Math.max(ledger.get(shape) ?? Number.NEGATIVE_INFINITY, until));
  }

  /** Whether a late exception answer to a request of `entry`'s exception shape may still come now. */
  #strayExceptionPossible(entry: Entry): boolean {
    const shape = entry.exceptionShape;
    if (shape === undefined || this.#guardMs <= 0) return false;
    if ((this.#strayExceptions.get(shape) ?? Number.NEGATIVE_INFINITY) > this.#clock.now()) return true;
    if (this.idsProven) return false;
    for (const other of this.#inFlight) if (other !== entry && other.exceptionShape === shape) return true;
    return false;
  }

  /**
   * `error` (exception `code`) answered `entry`, which was on the wire while a late answer of the same
   * exception shape could come (`#strayExceptionPossible`): an exception carries no size, so it may be
   * that late answer. Not trusted: a `KILN_DEVICE_ERROR` without an exception code, `details.unprovenException`.
   */
  #unprovenException(entry: Entry, error: unknown, code: number): KilnError {
    return new KilnError(
      "KILN_DEVICE_ERROR",
      `Exception ${code} answered ${entry.what} while a late answer to an earlier request of the same function could still arrive; not trusted (it may be that request's), read again next scan.`,
      { retryable: true, cause: error, details: { unprovenException: code } },
    );
  }

  /** Until when a request of `shape` waits: its shape's quiet time and a shapeless one's; every one for a shapeless request. */
  #quietFor(shape: string | undefined): number {
    let until = Number.NEGATIVE_INFINITY;
    const now = this.#clock.now();
    for (const [quietShape, end] of this.#quiet) {
      if (end <= now) this.#quiet.delete(quietShape);
      else if (shape === undefined || quietShape === undefined || quietShape === shape) until = Math.max(until, end);
    }
    return until;
  }

  #execute(entry: Entry): Promise<void> {
    entry.sent = ++this.#sent;
    entry.sentAt = this.#clock.now();
    if (entry.isFence === true) entry.fenceAtRisk = this.#quietFor(entry.shape) > entry.sentAt;
    entry.strayRisk = this.#strayExceptionPossible(entry);
    // A fence only has to take an answer a gateway hands out as soon as a request arrives.
    const timeoutMs = entry.isFence === true ? Math.min(this.#timeoutMs, FENCE_TIMEOUT_MS) : this.#timeoutMs;
    // On the wire now: its caller's signal no longer concerns it (see run).
    entry.stopWaiting?.();
    this.#inFlight.add(entry);
    return new Promise<void>((done) => {
      let timer: TimerHandle | undefined;
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        if (timer) this.#clock.clearTimeout(timer);
        this.#inFlight.delete(entry);
        done();
      };
      entry.release = finish;
      timer = this.#clock.setTimeout(() => {
        timer = undefined;
        this.#startQuiet(entry);
        this.#settle(entry, false, modbusTimeoutError(this.#timeoutMs, entry.what));
        finish();
      }, timeoutMs);
      let promise: Promise<unknown>;
      try {
        promise = entry.operation();
      } catch (error) {
        promise = Promise.reject(error);
      }
      promise.then(
        (value) => {
          if (finished) return; // timed out (or failed) already: its outcome was settled then
          if (entry.fenceAtRisk === true) this.#startQuiet(entry);
          if (this.#inFlight.size > 1) this.#proveIds(entry);
          this.#answeredSince(entry);
          this.#settle(entry, true, value);
          finish();
        },
        (rejection: unknown) => {
          if (finished) return;
          let error = rejection;
          let failure = modbusFailureOf(error);
          const unproven =
            typeof failure === "number" && (entry.strayRisk === true || this.#strayExceptionPossible(entry));
          if (unproven) {
            error = this.#unprovenException(entry, error, failure as number);
            failure = undefined;
          }
          // An answer came (an exception, or one that did not fit): it took any answer held back for it.
          if (failure !== "disconnected" && failure !== "timeout") this.#answeredSince(entry);
          // An answer that did not fit (a mismatch, a pipeline desync) may not have been this request's own:
          // its own may still come, stamped with a later request's id, like a late one.
          if (typeof failure !== "number" && failure !== "disconnected") this.#startQuiet(entry, unproven);
          this.#settle(entry, false, error);
          finish();
        },
      );
    });
  }
}
