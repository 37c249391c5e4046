import { FifoQueue } from "./fifo-queue";

/** One message MQTT.js handed over, not taken yet. */
export interface InboxMessage {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly retained: boolean;
}

/** How a {@link HostInbox} takes messages and yields. Internal to the host. */
export interface HostInboxOptions {
  /** Takes one message, synchronously (the host's whole handling of it). */
  readonly take: (message: InboxMessage) => void;
  /** True while the host must take no message (its writer is congested, ADR 0030). */
  readonly congested: () => boolean;
  /** Resolves once {@link congested} may be false again. */
  readonly whenRelieved: () => Promise<void>;
  /** Time spent taking messages in one turn of the event loop before yielding, ms. @default 5 */
  readonly sliceMs?: number;
  /**
   * Bytes of payload waiting at most before MQTT.js is held (reads no further packet).
   * @default 16777216 (16 MiB)
   */
  readonly maxWaitingBytes?: number;
  /** Messages waiting at most before MQTT.js is held. @default 65536 */
  readonly maxWaiting?: number;
  /** A monotonic clock in ms. @default performance.now */
  readonly now?: () => number;
  /** Runs `turn` on a later turn of the event loop. @default setImmediate */
  readonly later?: (turn: () => void) => void;
  /**
   * MQTT.js is held from now on (its callback not run at once): the broker queues what it has for
   * the host, and may drop it past its own bound (ADR 0043, amendment fix19o).
   */
  readonly onHold?: () => void;
  /**
   * MQTT.js reads on after a hold ({@link onHold}) and every message that waited has been taken:
   * the host has caught up with what the broker kept for it (a hold that starts again before
   * that is the same hold).
   */
  readonly onRelease?: () => void;
}

/**
 * The host's messages, taken in the order MQTT.js hands them over, at most `sliceMs` of work per
 * turn of the event loop (ADR 0030, amendment 19i).
 *
 * MQTT.js emits one message per packet, and libuv reads up to 32 × 64 KB of a socket in one
 * callback: a host that took each message as it came held the loop for every message of those
 * reads (a storm of 20,000 small births: 1.2–3.1 s). Here a message is taken at once only while
 * the current slice has time left and nothing waits before it; otherwise it waits, and the rest
 * is taken on the next turns, `setImmediate` apart, so timers and other sockets run between
 * slices. One message is never split: a single large birth still takes as long as it takes.
 *
 * Order is exactly the order received: one FIFO for all edge nodes (`seq` checks depend on it).
 *
 * Bounded: MQTT.js reads the next packet only once its `handleMessage` callback runs. While less
 * than `maxWaitingBytes` and `maxWaiting` wait, the callback runs at once, so the host keeps
 * reading what the broker has for it into this queue (a broker drops QoS 0 messages for a client
 * whose queue it holds is full: mosquitto at `max_queued_messages`, 1,000 by default); past either
 * bound it is held until the queue is taken down to half of both, so no further packet is read
 * (TCP backpressure to the broker, which then queues or drops by its own policy, the same as for a
 * congested store). The queue exceeds a bound by one message at most.
 */
export class HostInbox {
  readonly #take: (message: InboxMessage) => void;
  readonly #congested: () => boolean;
  readonly #whenRelieved: () => Promise<void>;
  readonly #sliceMs: number;
  readonly #maxBytes: number;
  readonly #maxWaiting: number;
  readonly #now: () => number;
  readonly #later: (turn: () => void) => void;
  readonly #onHold: (() => void) | undefined;
  readonly #onRelease: (() => void) | undefined;
  /** MQTT.js's callback was held (reported by `onHold`, until `onRelease`). */
  #holding = false;
  /** While {@link #holding}: MQTT.js reads on again; `onRelease` once nothing waits. */
  #readingOn = false;
  /** Waiting messages, oldest first. */
  readonly #queue = new FifoQueue<InboxMessage>();
  /** Payload bytes waiting. */
  #bytes = 0;
  /** When the current slice began, or undefined between slices. */
  #sliceStart: number | undefined;
  #scheduled = false;
  /** Waiting for the writer to be relieved (a turn follows). */
  #awaitingRelief = false;
  /** MQTT.js's callbacks, held (one with MQTT.js 5: it waits for each before the next packet). */
  readonly #held: (() => void)[] = [];
  /** Messages taken from the queue since start: a flush waits until this reaches its mark. */
  #dequeued = 0;
  /** The furthest mark a {@link flush} asked for (messages dequeued since start). */
  #flushThrough = 0;
  #flushScheduled = false;
  /** Callers of {@link flush}, each resolved once its mark is reached. */
  #flushWaiters: { readonly through: number; readonly resolve: () => void }[] = [];

  constructor(options: HostInboxOptions) {
    this.#take = options.take;
    this.#congested = options.congested;
    this.#whenRelieved = options.whenRelieved;
    this.#sliceMs = options.sliceMs ?? 5;
    this.#maxBytes = options.maxWaitingBytes ?? 16_777_216;
    this.#maxWaiting = options.maxWaiting ?? 65_536;
    this.#now = options.now ?? (() => performance.now());
    this.#later = options.later ?? ((turn) => void setImmediate(turn));
    this.#onHold = options.onHold;
    this.#onRelease = options.onRelease;
  }

  /** Messages waiting. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Payload bytes waiting. */
  get waitingBytes(): number {
    return this.#bytes;
  }

  /**
   * A message from MQTT.js (its `message` event): taken now if nothing waits before it, the
   * writer takes samples and the slice has time left; else queued.
   */
  receive(message: InboxMessage): void {
    if (this.waiting === 0 && !this.#congested() && this.#inSlice()) {
      this.#take(message);
      return;
    }
    this.#queue.push(message);
    this.#bytes += message.payload.length;
    if (this.#congested()) this.#awaitRelief();
    else this.#schedule();
  }

  /**
   * MQTT.js's `handleMessage` callback: run now while the queue is under its bounds and the
   * writer is not congested, else held until the queue is down to half and the writer relieved.
   */
  ready(callback: () => void): void {
    this.#held.push(callback);
    if (this.#mayRead(this.#maxWaiting, this.#maxBytes)) {
      this.#release();
      return;
    }
    if (!this.#holding) {
      this.#holding = true;
      this.#onHold?.();
    }
    this.#readingOn = false;
    if (this.#congested()) this.#awaitRelief();
  }

  /**
   * Takes everything waiting now, in order, whatever the writer's state (the link is going or
   * the host stops: the writer drops past its bound, counted), and resolves once it is taken.
   * Still `sliceMs` of work per turn of the event loop, `setImmediate` apart (review adv19k: a
   * flush of everything at once held the loop 6.3 s at a link loss). What arrives after the call
   * is taken by the ordinary turns, after it; calls made while a flush runs join it.
   */
  flush(): Promise<void> {
    const through = this.#dequeued + this.waiting;
    if (through > this.#flushThrough) this.#flushThrough = through;
    const done = new Promise<void>((resolve) => this.#flushWaiters.push({ through, resolve }));
    if (!this.#flushScheduled) this.#flushSlice();
    return done;
  }

  /** One slice of a flush: takes what the flush asked for, at most `sliceMs` (at least one message). */
  #flushSlice(): void {
    this.#flushScheduled = false;
    const start = this.#now();
    while (this.#dequeued < this.#flushThrough && this.waiting > 0) {
      this.#take(this.#next());
      if (this.#now() - start >= this.#sliceMs) break;
    }
    if (this.#dequeued < this.#flushThrough && this.waiting > 0) {
      const reached = this.#dequeued;
      this.#resolveFlushes((waiter) => waiter.through <= reached);
      this.#flushScheduled = true;
      this.#later(() => this.#flushSlice());
      return;
    }
    this.#resolveFlushes(() => true);
    if (!this.#congested()) this.#release();
  }

  #resolveFlushes(reached: (waiter: { readonly through: number }) => boolean): void {
    const done = this.#flushWaiters.filter(reached);
    if (done.length === 0) return;
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => !reached(waiter));
    for (const waiter of done) waiter.resolve();
  }

  #mayRead(maxWaiting: number, maxBytes: number): boolean {
    return this.waiting < maxWaiting && this.#bytes < maxBytes && !this.#congested();
  }

  /** True while the current slice has time left; starts a slice (and its end) if none runs. */
  #inSlice(): boolean {
    if (this.#sliceStart === undefined) {
      this.#sliceStart = this.#now();
      this.#schedule();
      return true;
    }
    return this.#now() - this.#sliceStart < this.#sliceMs;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#later(() => this.#turn());
  }

  #awaitRelief(): void {
    if (this.#awaitingRelief) return;
    this.#awaitingRelief = true;
    void this.#whenRelieved().then(() => {
      this.#awaitingRelief = false;
      this.#schedule();
    });
  }

  /**
   * A new turn: the slice ends; what waits is taken for up to `sliceMs` (at least one message)
   * while the writer takes samples; MQTT.js is let read on once the queue is down to half.
   */
  #turn(): void {
    this.#scheduled = false;
    this.#sliceStart = undefined;
    if (this.#congested()) {
      this.#awaitRelief();
      return;
    }
    if (this.waiting > 0) {
      this.#inSlice();
      do this.#take(this.#next());
      while (this.waiting > 0 && !this.#congested() && this.#now() - this.#sliceStart! < this.#sliceMs);
    }
    if (this.#mayRead(this.#maxWaiting / 2 + 1, this.#maxBytes / 2 + 1)) this.#release();
    else this.#caughtUp();
    if (this.#congested()) this.#awaitRelief();
    else if (this.waiting > 0) this.#schedule();
  }

  #next(): InboxMessage {
    const message = this.#queue.shift();
    if (message === undefined) throw new Error("HostInbox: no message waiting (internal error)");
    this.#dequeued++;
    this.#bytes -= message.payload.length;
    return message;
  }

  #release(): void {
    const held = this.#held.splice(0);
    if (this.#holding && held.length > 0) this.#readingOn = true;
    for (const callback of held) callback();
    this.#caughtUp();
  }

  /** Reports the end of a hold (`onRelease`) once MQTT.js reads on and nothing waits. */
  #caughtUp(): void {
    if (!this.#holding || !this.#readingOn || this.waiting > 0) return;
    this.#holding = false;
    this.#readingOn = false;
    this.#onRelease?.();
  }
}
