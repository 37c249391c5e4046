/** One unit of work for a {@link SlicedQueue}: `size` items, processed in ranges. */
export interface SlicedJob {
  /** How many items the job has (0 is allowed: only `finish` runs). */
  readonly size: number;
  /** Processes items `[from, to)`; ranges come in order and cover `[0, size)` once. */
  run(from: number, to: number): void;
  /** Runs once, after the last range. */
  finish?(): void;
}

interface Pending {
  readonly job: SlicedJob;
  offset: number;
  done: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Options of {@link SlicedQueue}. */
export interface SlicedQueueOptions {
  /** Most items processed in one turn of the event loop. */
  readonly sliceSize: number;
  /** Resolves on a later turn of the event loop. @default setImmediate */
  readonly yieldToLoop?: () => Promise<void>;
}

/**
 * @internal Runs jobs in order, at most `sliceSize` items per turn of the event loop, so one
 * large scan does not hold every other timer, scan group and socket in the process for its whole
 * length (docs/adr/0019-sliced-scan-processing.md). A job no larger than a slice that finds the
 * queue empty runs at once, synchronously, as before.
 */
export class SlicedQueue {
  readonly #sliceSize: number;
  readonly #yieldToLoop: () => Promise<void>;
  readonly #pending: Pending[] = [];
  #draining = false;

  constructor(options: SlicedQueueOptions) {
    this.#sliceSize = options.sliceSize;
    this.#yieldToLoop = options.yieldToLoop ?? (() => new Promise<void>((resolve) => setImmediate(resolve)));
  }

  /** Items waiting, over every queued job. */
  get backlog(): number {
    return this.#pending.reduce((sum, pending) => sum + pending.job.size - pending.offset, 0);
  }

  /** Queues `job` behind the others; resolves once it has finished (rejects with what it threw). */
  enqueue(job: SlicedJob): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => {
      this.#pending.push({ job, offset: 0, done: false, resolve, reject });
    });
    if (!this.#draining) {
      this.#step();
      if (this.#pending.length > 0) void this.#drain();
    }
    return promise;
  }

  /** Runs everything queued now, synchronously (before the link is marked lost, and at stop). */
  flush(): void {
    while (this.#pending.length > 0) this.#step();
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#pending.length > 0) {
        await this.#yieldToLoop();
        this.#step();
      }
    } finally {
      this.#draining = false;
    }
  }

  #step(): void {
    const pending = this.#pending[0];
    if (!pending) return;
    const { job } = pending;
    const from = pending.offset;
    const to = Math.min(from + this.#sliceSize, job.size);
    // Advanced before running, so a flush from inside `run` goes on from the next range.
    pending.offset = to;
    try {
      if (to > from) job.run(from, to);
      if (to === job.size && !pending.done) {
        this.#settle(pending);
        job.finish?.();
        pending.resolve();
      }
    } catch (error) {
      this.#settle(pending);
      pending.reject(error);
    }
  }

  #settle(pending: Pending): void {
    pending.done = true;
    const index = this.#pending.indexOf(pending);
    if (index >= 0) this.#pending.splice(index, 1);
  }
}
