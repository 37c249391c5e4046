import type { CircuitBreakerSnapshot, Clock, RetryJitter, Sample, Store, Tag, TimerHandle } from "@kiln/core";
import {
  KilnError,
  guardIngest,
  type GuardedIngest,
  type PortBreakerSettings,
  type PortCall,
  type ReconnectBackoff,
  type SampleConflict,
} from "@kiln/core/driver-kit";
import { FifoQueue } from "./fifo-queue";

/** How a {@link SparkplugHost} batches samples into its store. */
export interface SparkplugHostBatching {
  /** Samples per `writeBatch` call, at most. @default 5000 */
  readonly maxBatchSize?: number;
  /**
   * How long a sample may wait for a batch to fill while a write slot is free, in ms. While
   * every slot is busy, samples keep gathering: the write that frees a slot takes everything
   * waiting (up to `maxBatchSize`) as one batch, so batches grow with the store's latency
   * instead of queuing behind it. From 0 to 3,600,000 (1 hour). @default 50
   */
  readonly maxDelayMs?: number;
  /**
   * Samples held in memory (queued and being written), at most. From half of it the host stops
   * reading from the broker (MQTT.js `handleMessage` backpressure: the broker queues, then drops
   * by its own policy); what would go beyond it is dropped and counted. The host's own rows are
   * never dropped for this bound (a stale mark, a value restated after one: history would read
   * the last value good across a loss of trust, ADR 0043, amendment fix19n): at most one or two
   * per tag per loss of trust, they may take the count past it by about the number of live
   * metrics (`limits.maxMetrics` at most) while reading from the broker stays paused. A quarter of
   * it bounds the data the host holds for unverified edge nodes until their NBIRTH (beyond it the
   * oldest is stored uncertain; ADR 0043, amendment fix19z).
   * @default 200000
   */
  readonly maxQueuedSamples?: number;
  /** `writeBatch` calls in flight at once. @default 2 */
  readonly concurrency?: number;
  /**
   * Spacing of the retries of a batch (or tag registration) whose write failed with a retryable
   * error, timed out or met the open store breaker. A fractional `jitter` spreads at least as
   * much as asked: 0 is `"none"`, up to 0.5 `"equal"`, above `"full"`.
   * @default { initialDelayMs: 200, maxDelayMs: 10000 }
   */
  readonly retry?: ReconnectBackoff;
  /**
   * Time one `writeBatch` or `open` attempt may take, in ms: a store call that hangs fails with
   * `KILN_TIMEOUT`, counts towards the store breaker and is retried. From 1 to 3,600,000 (1 hour).
   * @default 10000
   */
  readonly writeTimeoutMs?: number;
  /**
   * The store breaker (`store:samples`, shared by writes and tag registrations): consecutive
   * failed or timed-out attempts that open it, and how long it stays open before one probe call
   * may pass (`recoveryTimeMs` from 1 to 3,600,000, 1 hour). @default { failureThreshold: 5, recoveryTimeMs: 10000 }
   */
  readonly breaker?: PortBreakerSettings;
}

function retryJitter(jitter: ReconnectBackoff["jitter"]): RetryJitter {
  if (typeof jitter === "string") return jitter;
  const fraction = jitter ?? 0.2;
  return fraction === 0 ? "none" : fraction <= 0.5 ? "equal" : "full";
}

/** What the writer tells its owner. */
export interface SampleWriterListener {
  /** A batch was written: `stored` samples durable (identical re-deliveries included), `conflicts` refused. */
  written(stored: number, conflicts: readonly SampleConflict[]): void;
  /** `count` samples were dropped, with why. */
  dropped(count: number, reason: string): void;
  /** A write failed and will be tried again (retryable), or registering tags failed. */
  failed(error: unknown, willRetry: boolean): void;
  /** A tag registration (`store.open(tags)`) went through or failed. */
  registered(count: number): void;
  /**
   * Every sample of the first `through` accepted by {@link HostSampleWriter.push} is settled
   * (written, refused as a conflict, or dropped and reported by `dropped` before this call).
   */
  settled?(through: number): void;
}

/**
 * Batches samples into `store.samples.writeBatch`: bounded, counted, with backpressure. Samples
 * wait in one queue, in the order pushed; a batch is cut from its head only when a write slot
 * (`concurrency`) is free, when `maxBatchSize` are waiting, `maxDelayMs` passed since the oldest
 * waiting sample came in or a drain asks for it — so a store slower than `maxDelayMs` gets fewer,
 * larger batches (up to `maxBatchSize`) rather than a backlog of small ones. Each batch is a
 * contiguous range of the pushed samples, so the settled mark (acknowledgements) stays exact. Every
 * store call goes through the core's ingest policy (`guardIngest`: timeout per attempt, the store
 * breaker, retries of retryable failures; the sink is idempotent on (tag, timestamp), so a retry
 * stores each sample once). Internal to the host.
 */
export class HostSampleWriter {
  readonly #ingest: GuardedIngest;
  readonly #clock: Clock;
  readonly #listener: SampleWriterListener;
  readonly #maxBatch: number;
  readonly #maxDelayMs: number;
  readonly #maxQueued: number;
  readonly #concurrency: number;
  /** Samples waiting for a write, in push order: chunks, the oldest read from `#waitingHead`. */
  readonly #waiting = new FifoQueue<readonly Sample[]>();
  #waitingHead = 0;
  #waitingCount = 0;
  /** The waiting samples are due: `maxDelayMs` passed since the oldest came in, or a drain asked. */
  #due = false;
  /** Samples accepted by push since start (the ticket of the last one). */
  #accepted = 0;
  /** Samples taken into batches since start: the next batch starts here. */
  #sealed = 0;
  /** Every sample before this index is settled. */
  #settledThrough = 0;
  /** Batches settled out of order: start → end. */
  readonly #settledAhead = new Map<number, number>();
  #held = 0;
  #inFlight = 0;
  #timer: TimerHandle | undefined;
  #tags = new Map<string, Tag>();
  #registering: Promise<void> | undefined;
  #abandon = new AbortController();
  #idleWaiters: (() => void)[] = [];
  /** Waiters of {@link whenSettled}: each resolved once the settled mark reaches its `through`. */
  #settleWaiters: { readonly through: number; readonly resolve: () => void }[] = [];
  #spaceWaiters: (() => void)[] = [];

  constructor(
    store: Store,
    clock: Clock,
    listener: SampleWriterListener,
    batching: SparkplugHostBatching = {},
    random?: () => number,
  ) {
    const retry = batching.retry ?? { initialDelayMs: 200, maxDelayMs: 10_000 };
    this.#ingest = guardIngest(
      store,
      {
        timeoutMs: batching.writeTimeoutMs ?? 10_000,
        breaker: batching.breaker ?? { failureThreshold: 5, recoveryTimeMs: 10_000 },
        retry: {
          maxAttempts: Number.MAX_SAFE_INTEGER,
          initialDelayMs: retry.initialDelayMs,
          maxDelayMs: retry.maxDelayMs,
          jitter: retryJitter(retry.jitter),
          ...(retry.multiplier === undefined ? {} : { multiplier: retry.multiplier }),
          ...(random === undefined ? {} : { random }),
        },
      },
      clock,
    );
    this.#clock = clock;
    this.#listener = listener;
    this.#maxBatch = batching.maxBatchSize ?? 5_000;
    this.#maxDelayMs = batching.maxDelayMs ?? 50;
    this.#maxQueued = batching.maxQueuedSamples ?? 200_000;
    this.#concurrency = batching.concurrency ?? 2;
  }

  /** The store breaker (`store:samples`) now: open while the store keeps failing or hanging. */
  get breaker(): CircuitBreakerSnapshot {
    return this.#ingest.breaker;
  }

  /** Closes the store breaker and clears its timer (the host stopped). */
  reset(reason: string): void {
    this.#ingest.reset(reason);
  }

  /** Samples held: queued and being written. */
  get held(): number {
    return this.#held;
  }

  /** Samples accepted by {@link push} since start: once `settled(through)` reaches it, all of them are settled. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Samples the writer may still take before it is {@link congested} (0 when it is). */
  get room(): number {
    return Math.max(0, Math.ceil(this.#maxQueued / 2) - this.#held);
  }

  /** True while the host should stop reading from the broker (half the bound or more is held). */
  get congested(): boolean {
    return this.#held >= this.#maxQueued / 2;
  }

  /** Resolves once fewer than a quarter of the bound are held. */
  whenRelieved(): Promise<void> {
    if (this.#held < this.#maxQueued / 4) return Promise.resolve();
    return new Promise((resolve) => this.#spaceWaiters.push(resolve));
  }

  /**
   * Queues `samples`; what goes beyond the bound is dropped and counted, except the samples
   * `mustStore` says the host must store (its own stale marks and restated values): those are
   * always queued, past the bound if need be, so nothing the host believes stored is dropped here.
   */
  push(samples: readonly Sample[], mustStore?: (sample: Sample) => boolean): void {
    if (samples.length === 0) return;
    const room = Math.max(0, this.#maxQueued - this.#held);
    // A copy: the caller may reuse its array.
    const kept =
      samples.length <= room
        ? samples.slice()
        : samples.filter((sample, index) => index < room || mustStore?.(sample) === true);
    if (kept.length < samples.length)
      this.#listener.dropped(
        samples.length - kept.length,
        `the host already held ${this.#held} samples not yet written (batching.maxQueuedSamples: ${this.#maxQueued}); the store is behind`,
      );
    if (kept.length === 0) return;
    this.#waiting.push(kept);
    this.#waitingCount += kept.length;
    this.#held += kept.length;
    this.#accepted += kept.length;
    this.#pump();
    this.#arm();
  }

  /**
   * Opens the store (`store.open([])`) under the store policy: each attempt timed out, through the
   * breaker, retried while retryable, until `signal` aborts.
   */
  openStore(signal: AbortSignal): Promise<void> {
    return this.#ingest.open([], { signal, onRetry: ({ error }) => this.#listener.failed(error, true) });
  }

  /** Registers tag metadata (`store.open(tags)`) before the next batch is written. */
  register(tags: readonly Tag[]): void {
    for (const tag of tags) this.#tags.set(tag.name, tag);
    this.#pump();
  }

  /**
   * Resolves `true` once every sample of the first `through` accepted is settled (written, refused
   * as a conflict, or dropped and reported), `false` after `timeoutMs` without that. Writes what
   * is filling at once (no `maxDelayMs` wait); drops nothing.
   */
  async whenSettled(through: number, timeoutMs: number): Promise<boolean> {
    if (this.#settledThrough >= through) return true;
    this.#flushNow();
    if (this.#settledThrough >= through) return true;
    let timer: TimerHandle | undefined;
    let waiter: { readonly through: number; readonly resolve: () => void } | undefined;
    const settled = new Promise<true>((resolve) => {
      waiter = { through, resolve: () => resolve(true) };
      this.#settleWaiters.push(waiter);
    });
    const timeout = new Promise<false>((resolve) => {
      timer = this.#clock.setTimeout(() => resolve(false), timeoutMs);
    });
    const outcome = await Promise.race([settled, timeout]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    this.#settleWaiters = this.#settleWaiters.filter((each) => each !== waiter);
    return outcome;
  }

  /**
   * Writes everything held, then resolves. After `timeoutMs` (a store that stays down) what is
   * still held is dropped and counted, and it resolves.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#flushNow();
    if (this.#held === 0 && this.#inFlight === 0) return;
    const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    let timer: TimerHandle | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = this.#clock.setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([idle, timeout]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    if (outcome === "timeout") {
      // Ends the writes in flight and their retries at once; what they held is dropped, counted.
      this.#abandon.abort(
        new KilnError("KILN_ABORTED", `not written within the stop drain timeout of ${timeoutMs} ms`),
      );
      this.#disarm();
      const start = this.#sealed;
      const left = this.#take(this.#waitingCount).length;
      this.#due = false;
      this.#held -= left;
      if (left > 0) {
        this.#listener.dropped(left, `not written within the stop drain timeout of ${timeoutMs} ms`);
        this.#settleRange(start, start + left);
      }
      this.#settle();
      await idle;
      this.#abandon = new AbortController();
    }
  }

  /** The per-call options of every store call: abandoned at a drain timeout; each retry reported. */
  #call(): PortCall {
    return { signal: this.#abandon.signal, onRetry: ({ error }) => this.#listener.failed(error, true) };
  }

  /** Everything waiting is due now (drain, final acks): written as soon as slots free. */
  #flushNow(): void {
    this.#disarm();
    if (this.#waitingCount > 0) this.#due = true;
    this.#pump();
  }

  /** Starts the `maxDelayMs` timer for what waits, unless it runs or what waits is already due. */
  #arm(): void {
    if (this.#waitingCount === 0 || this.#due || this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#waitingCount > 0) this.#due = true;
      this.#pump();
    }, this.#maxDelayMs);
  }

  #disarm(): void {
    if (this.#timer === undefined) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Takes the first `count` waiting samples (in push order) and advances the batch start. */
  #take(count: number): Sample[] {
    const batch: Sample[] = [];
    while (batch.length < count) {
      const chunk = this.#waiting.peek();
      if (chunk === undefined)
        throw new Error(
          `HostSampleWriter: ${count} samples asked, ${batch.length} waiting (internal error: the waiting count is wrong)`,
        );
      const end = Math.min(chunk.length, this.#waitingHead + count - batch.length);
      for (let index = this.#waitingHead; index < end; index++) batch.push(chunk[index]!);
      if (end === chunk.length) {
        this.#waiting.shift();
        this.#waitingHead = 0;
      } else this.#waitingHead = end;
    }
    this.#waitingCount -= count;
    this.#sealed += count;
    return batch;
  }

  /** Samples `[start, end)` are settled: moves the settled mark over every contiguous range. */
  #settleRange(start: number, end: number): void {
    if (start !== this.#settledThrough) {
      this.#settledAhead.set(start, end);
      return;
    }
    this.#settledThrough = end;
    for (let next = this.#settledAhead.get(end); next !== undefined; next = this.#settledAhead.get(end)) {
      this.#settledAhead.delete(end);
      this.#settledThrough = end = next;
    }
    this.#listener.settled?.(this.#settledThrough);
    if (this.#settleWaiters.length > 0) {
      const through = this.#settledThrough;
      for (const waiter of this.#settleWaiters.filter((each) => each.through <= through)) waiter.resolve();
      this.#settleWaiters = this.#settleWaiters.filter((each) => each.through > through);
    }
  }

  #pump(): void {
    if (this.#tags.size > 0 && this.#registering === undefined) {
      const tags = [...this.#tags.values()];
      this.#tags = new Map();
      this.#registering = this.#ingest
        .open(tags, this.#call())
        .then(
          () => this.#listener.registered(tags.length),
          (error: unknown) => this.#listener.failed(error, false),
        )
        .finally(() => {
          this.#registering = undefined;
          this.#pump();
        });
    }
    if (this.#registering !== undefined) return;
    // A batch is cut only when a slot is free: what gathered meanwhile goes out as one batch.
    while (
      this.#inFlight < this.#concurrency &&
      this.#waitingCount > 0 &&
      (this.#due || this.#waitingCount >= this.#maxBatch)
    ) {
      const start = this.#sealed;
      const batch = this.#take(Math.min(this.#waitingCount, this.#maxBatch));
      if (this.#waitingCount === 0) {
        this.#due = false;
        this.#disarm();
      }
      this.#inFlight++;
      void this.#write(batch).finally(() => {
        this.#inFlight--;
        this.#held -= batch.length;
        this.#settleRange(start, start + batch.length);
        this.#settle();
        this.#pump();
        this.#arm();
      });
    }
  }

  #settle(): void {
    if (this.#held < this.#maxQueued / 4) for (const resolve of this.#spaceWaiters.splice(0)) resolve();
    if (this.#held === 0 && this.#inFlight === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  async #write(batch: Sample[]): Promise<void> {
    const call = this.#call();
    try {
      const result = await this.#ingest.writeBatch(batch, call);
      const conflicts = result?.conflicts ?? [];
      this.#listener.written(batch.length - conflicts.length, conflicts);
    } catch (error) {
      this.#listener.failed(error, false);
      const reason = call.signal?.aborted
        ? (call.signal.reason as Error).message
        : `the store refused a batch: ${(error as Error).message}`;
      this.#listener.dropped(batch.length, reason);
    }
  }
}
