import { type Clock, KilnError } from "@kiln/core";
import { type TimerHandle } from "@kiln/core/driver-kit";
import { modbusTimeoutError } from "./modbus-failure";

/** Options of {@link ModbusRequestQueue}. */
export interface ModbusRequestQueueOptions {
  /** Source of time for timeouts and delays. */
  readonly clock: Clock;
  /** A request with no reply after this long rejects with `KILN_TIMEOUT` and frees the line. */
  readonly timeoutMs: number;
  /** Quiet time between the end of one request and the start of the next. @default 0 */
  readonly interRequestDelayMs?: number;
  /**
   * After a request times out, the line stays quiet this long (ms) before the next request goes out, so a
   * late answer arrives while nothing else is asked (Modbus RTU has no transaction id to tell it apart).
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
  resolve(value: unknown): void;
  reject(error: unknown): void;
  settled: boolean;
  onAbort?: () => void;
  /** Frees the line while the request is in flight (set by #execute). */
  release?: () => void;
}

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
  #quietUntil = Number.NEGATIVE_INFINITY;

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
   * takes longer than the timeout, `KILN_ABORTED` when `signal` aborts first, or the error given to
   * {@link ModbusRequestQueue.fail}. A `background` request (a probe) waits behind every other request,
   * including those queued after it.
   */
  run<T>(operation: () => Promise<T>, what: string, signal?: AbortSignal, background = false): Promise<T> {
    if (signal?.aborted) return Promise.reject(abortError(what, signal));
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        operation,
        what,
        signal,
        background,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
      };
      if (signal) {
        entry.onAbort = () => {
          const index = this.#queue.indexOf(entry);
          if (index >= 0) this.#queue.splice(index, 1);
          // A request already on the wire keeps the line until it completes or times out.
          this.#settle(entry, false, abortError(what, signal));
        };
        signal.addEventListener("abort", entry.onAbort, { once: true });
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
    if (entry.onAbort) entry.signal?.removeEventListener("abort", entry.onAbort);
    if (ok) entry.resolve(value);
    else entry.reject(value);
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) {
        if (this.#delayMs > 0 || this.#guardMs > 0) {
          const wait = Math.max(this.#lastEnd + this.#delayMs, this.#quietUntil) - this.#clock.now();
          if (wait > 0) await this.#clock.sleep(wait);
        }
        const entry = this.#queue.shift();
        if (!entry) break;
        void this.#execute(entry).then(() => {
          this.#lastEnd = this.#clock.now();
          void this.#pump();
        });
      }
    } finally {
      this.#running = false;
    }
  }

  #execute(entry: Entry): Promise<void> {
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
        if (this.#guardMs > 0) this.#quietUntil = this.#clock.now() + this.#guardMs;
        this.#settle(entry, false, modbusTimeoutError(this.#timeoutMs, entry.what));
        finish();
      }, this.#timeoutMs);
      let promise: Promise<unknown>;
      try {
        promise = entry.operation();
      } catch (error) {
        promise = Promise.reject(error);
      }
      promise.then(
        (value) => {
          this.#settle(entry, true, value);
          finish();
        },
        (error: unknown) => {
          this.#settle(entry, false, error);
          finish();
        },
      );
    });
  }
}
