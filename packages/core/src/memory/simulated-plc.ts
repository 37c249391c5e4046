import { KilnError } from "../domain/errors";
// The fault switches are test tooling: their home is "@kiln/core/testing" (ADR 0027).
import type { SimulatedPlcFaults } from "@kiln/core/testing";
import { GOOD, quality, QualityCodes, type Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { sameTagValue, TagCatalog, type Tag, type TagScalarValue, type TagValue } from "../domain/tags";
import type { Disposer } from "../domain/disposer";
import { abortError, untilAbort } from "../driver-kit/abort";
import { ConnectionLifecycle } from "../driver-kit/connection-lifecycle";
import { afterEventLoopTurn } from "../driver-kit/event-loop-turn";
import type { Clock } from "../ports/clock";
import { SystemClock } from "../runtime/system-clock";
import type { DriverStatus, PlcDriver } from "../ports/plc-driver";
import type {
  BrowsedVariable,
  DriverStatusChange,
  PlcDriverCapabilities,
  SubscriptionOptions,
} from "@kiln/core/driver-kit";
import { createSignal, type Signal, type SignalSpec } from "./signals";

/** A value source for a simulated tag: a signal spec, or a function of time and the PLC's state. */
export type SimulatedSource = SignalSpec | ((now: number, plc: SimulatedPlc) => TagValue);

/** Options of {@link SimulatedPlc}. */
export interface SimulatedPlcOptions {
  /** Connection name used in events. @default "simulated" */
  readonly name?: string;
  /** The tags it serves. */
  readonly tags: TagCatalog | readonly Tag[];
  /** Value sources per tag; tags without one hold the last value written (initially 0, false or ""). */
  readonly sources?: Readonly<Record<string, SimulatedSource>>;
  /** Clock for timestamps, latency and subscriptions. @default SystemClock */
  readonly clock?: Clock;
  /** Declares and implements `subscribe`. @default true */
  readonly subscribe?: boolean;
}

/** One write the simulated PLC accepted. */
export interface SimulatedWrite {
  /** The written tag's name. */
  readonly tag: string;
  /** The value written. */
  readonly value: TagValue;
  /** When the PLC accepted it, ms since epoch on the PLC's clock. */
  readonly at: number;
}

const DEFAULT_VALUE: Record<Tag["dataType"], TagValue> = {
  bool: false,
  int16: 0,
  uint16: 0,
  int32: 0,
  uint32: 0,
  int64: 0n,
  uint64: 0n,
  float32: 0,
  float64: 0,
  string: "",
};

/**
 * A PLC in memory. Tags follow signal generators or hold written values; faults (disconnect,
 * hangs, latency, bad quality) can be injected while running; every accepted write is kept in
 * {@link SimulatedPlc.writes}. It is the driver a system gets when the host gives none.
 *
 * @example
 * const plc = new SimulatedPlc({ tags, sources: { "chamber.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 10_000 } } });
 * await plc.connect();
 * const [pressure] = await plc.read([tags.get("chamber.pressure")]);
 */
export class SimulatedPlc implements PlcDriver {
  /** The driver contract version this driver implements ({@link PlcDriver.driverApiVersion}). */
  readonly driverApiVersion = "1" as const;
  /** The name given in the options, `"simulated"` by default. */
  readonly name: string;
  /** Browsing always; `subscribe` unless the options turned it off ({@link PlcDriver.capabilities}). */
  readonly capabilities: PlcDriverCapabilities;
  /** Switchable faults. */
  readonly faults: SimulatedPlcFaults = {
    unreachable: false,
    hang: false,
    latencyMs: 0,
    subscribeLatencyMs: 0,
    badQuality: new Set(),
  };
  /** Every accepted write, in order. */
  readonly writes: SimulatedWrite[] = [];
  /** Number of `read` calls that reached the PLC. */
  readCalls = 0;

  readonly #clock: Clock;
  readonly #tags: ReadonlyMap<string, Tag>;
  readonly #signals = new Map<string, Signal | ((now: number, plc: SimulatedPlc) => TagValue)>();
  readonly #held = new Map<string, TagValue>();
  readonly #subscriptions = new Set<() => void>();
  readonly #lifecycle: ConnectionLifecycle;

  constructor(options: SimulatedPlcOptions) {
    const list = options.tags instanceof TagCatalog ? options.tags.list() : options.tags;
    this.name = options.name ?? "simulated";
    this.#clock = options.clock ?? new SystemClock();
    this.#lifecycle = new ConnectionLifecycle({ name: this.name, clock: this.#clock });
    this.#tags = new Map(list.map((tag) => [tag.name, tag]));
    this.capabilities = { subscribe: options.subscribe ?? true, browse: true };
    for (const [tag, source] of Object.entries(options.sources ?? {})) {
      if (!this.#tags.has(tag))
        throw new KilnError("KILN_TAG_UNKNOWN", `Simulated source for unknown tag "${tag}".`, { details: { tag } });
      this.#signals.set(tag, typeof source === "function" ? source : createSignal(source, this.#clock.now()));
    }
    for (const tag of list) this.#held.set(tag.name, DEFAULT_VALUE[tag.dataType]);
    if (!this.capabilities.subscribe) (this as { subscribe?: unknown }).subscribe = undefined;
  }

  /** The connection status ({@link PlcDriver.status}). */
  get status(): DriverStatus {
    return this.#lifecycle.status;
  }

  /** Calls `listener` on every status change; returns the disposer that stops it. */
  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    return this.#lifecycle.onStatusChange(listener);
  }

  /** Connects ({@link PlcDriver.connect}); fails `KILN_CONNECTION_FAILED` (retryable) while `faults.unreachable` is set. */
  connect(signal?: AbortSignal): Promise<void> {
    return this.#lifecycle.connect(async (lifetime) => {
      await this.#latency(lifetime);
      if (this.faults.unreachable) {
        throw new KilnError("KILN_CONNECTION_FAILED", `Simulated PLC "${this.name}" is unreachable.`, {
          retryable: true,
        });
      }
    }, signal);
  }

  /** Closes; idempotent ({@link PlcDriver.close}). */
  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      for (const stop of this.#subscriptions) stop();
      this.#subscriptions.clear();
    });
  }

  /** Simulates the peer dropping the connection (status `disconnected`; the next connect may succeed). */
  dropConnection(reason = "connection reset by peer"): void {
    if (this.status === "connected") this.#lifecycle.setStatus("disconnected", reason);
  }

  /** Reads the simulated value of each tag, one sample per tag in order ({@link PlcDriver.read}). */
  read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    // A refusal (not connected) lets the event loop turn, as the driver contract asks, so a caller's
    // tight retry loop cannot starve timers. A read while connected answers in microtasks, with no
    // latency set: this simulator's tests step a SimulatedClock that lets one turn pass per timer.
    const reading = this.#read(requested, signal);
    return this.status === "connected" ? reading : afterEventLoopTurn(reading);
  }

  async #read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    this.#assertConnected();
    // The tags as asked: the caller may change its array while the read awaits.
    const tags = requested.slice();
    await this.#latency(signal);
    this.#assertConnected();
    this.readCalls++;
    const now = this.#clock.now();
    const samples: Sample[] = new Array(tags.length);
    for (let i = 0; i < tags.length; i++) {
      // A large read is made in pieces, as a device's answer arrives over the network, so the
      // simulator does not hold the event loop for a whole 100,000-tag scan.
      if (i > 0 && i % READ_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      samples[i] = this.#sample(tags[i]!, now);
    }
    return samples;
  }

  /** Writes a value, recorded in {@link SimulatedPlc.writes} ({@link PlcDriver.write}). */
  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    // As read(): a refusal lets the event loop turn.
    const writing = this.#write(tag, value, signal);
    return this.status === "connected" ? writing : afterEventLoopTurn(writing);
  }

  async #write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    if (tag.access !== "readwrite") {
      throw new KilnError("KILN_TAG_NOT_WRITABLE", `Tag "${tag.name}" is read-only.`, { details: { tag: tag.name } });
    }
    this.#assertConnected();
    const alreadyAborted = signal?.aborted === true;
    try {
      await this.#latency(signal);
    } catch (error) {
      // Ended while "on the wire" (a hang, latency): it may have landed, as the driver contract
      // says with `details.sent: true` (PlcDriver.write; the conformance suite checks it).
      if (alreadyAborted || !KilnError.is(error)) throw error;
      throw new KilnError(error.code, error.message, {
        cause: error.cause ?? error,
        retryable: error.retryable,
        details: { ...error.details, sent: true },
      });
    }
    this.#assertConnected();
    if (!this.#tags.has(tag.name)) {
      throw new KilnError("KILN_WRITE_REJECTED", `Simulated PLC has no tag "${tag.name}".`, {
        details: { tag: tag.name },
      });
    }
    this.#held.set(tag.name, value);
    this.writes.push({ tag: tag.name, value, at: this.#clock.now() });
  }

  /** Pushes each tag's value at the subscription's period ({@link PlcDriver.subscribe}). */
  subscribe(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer> {
    const latency = this.faults.subscribeLatencyMs;
    if (latency > 0) return this.#clock.sleep(latency).then(() => this.#subscribe(tags, options, onSamples));
    // As read(): a refusal lets the event loop turn.
    const subscribing = this.#subscribe(tags, options, onSamples);
    return this.status === "connected" ? subscribing : afterEventLoopTurn(subscribing);
  }

  /** Subscriptions made and not yet disposed (`close` ends them all). */
  get activeSubscriptions(): number {
    return this.#subscriptions.size;
  }

  async #subscribe(
    tags: readonly Tag[],
    options: SubscriptionOptions,
    onSamples: (samples: Sample[]) => void,
  ): Promise<Disposer> {
    this.#assertConnected();
    const last = new Map<string, Sample>();
    let active = true;
    const tick = (): void => {
      if (!active) return;
      if (this.status === "connected" && !this.faults.hang) {
        const now = this.#clock.now();
        const changed: Sample[] = [];
        for (const tag of tags) {
          const sample = this.#sample(tag, now);
          const previous = last.get(tag.name);
          if (
            !previous ||
            !sameTagValue(previous.value, sample.value) ||
            previous.quality.code !== sample.quality.code
          ) {
            last.set(tag.name, sample);
            changed.push(sample);
          }
        }
        if (changed.length > 0) onSamples(changed);
      }
      handle = this.#clock.setTimeout(tick, options.samplingIntervalMs);
    };
    let handle = this.#clock.setTimeout(tick, 0);
    const stop = (): void => {
      active = false;
      this.#clock.clearTimeout(handle);
    };
    this.#subscriptions.add(stop);
    return () => {
      stop();
      this.#subscriptions.delete(stop);
    };
  }

  /** Lists the simulated tags as browsed variables ({@link PlcDriver.browse}). */
  browse(): Promise<BrowsedVariable[]> {
    // As read(): a refusal lets the event loop turn.
    const browsing = this.#browse();
    return this.status === "connected" ? browsing : afterEventLoopTurn(browsing);
  }

  async #browse(): Promise<BrowsedVariable[]> {
    this.#assertConnected();
    return [...this.#tags.values()].map((tag) => ({
      name: tag.name,
      address: tag.name,
      dataType: tag.dataType,
      nativeType: tag.dataType,
      access: tag.access,
    }));
  }

  /** Sets a tag's held value from the simulation side (as the process would). */
  set(tag: string, value: TagValue): void {
    if (!this.#tags.has(tag))
      throw new KilnError("KILN_TAG_UNKNOWN", `No simulated tag "${tag}".`, { details: { tag } });
    this.#signals.delete(tag);
    this.#held.set(tag, value);
  }

  /** The value a read would return now, without counting as a read. */
  peek(tag: string): TagValue {
    const known = this.#tags.get(tag);
    if (!known) throw new KilnError("KILN_TAG_UNKNOWN", `No simulated tag "${tag}".`, { details: { tag } });
    return this.#valueOf(known, this.#clock.now());
  }

  #valueOf(tag: Tag, now: number): TagValue {
    const source = this.#signals.get(tag.name);
    if (source) return source(now, this);
    const held = this.#held.get(tag.name);
    if (held !== undefined) return held;
    // An array tag (arrayLength) holds arrayLength default elements until set or written.
    const scalar = DEFAULT_VALUE[tag.dataType];
    if (tag.arrayLength === undefined) return scalar;
    const array = Object.freeze(Array.from({ length: tag.arrayLength }, () => scalar as TagScalarValue));
    this.#held.set(tag.name, array);
    return array;
  }

  #sample(tag: Tag, now: number): Sample {
    if (!this.#tags.has(tag.name)) {
      return { tag: tag.name, value: null, timestamp: now, quality: BAD_UNKNOWN };
    }
    const value = this.#valueOf(tag, now);
    const sampleQuality: Quality = this.faults.badQuality.has(tag.name) ? BAD_INJECTED : GOOD;
    // Frozen, as a driver can hand it over: the current value table keeps it rather than a copy.
    return Object.freeze({ tag: tag.name, value, timestamp: now, quality: sampleQuality });
  }

  async #latency(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw abortError(signal);
    if (this.faults.hang) await untilAbort(signal);
    if (this.faults.latencyMs > 0) await this.#clock.sleep(this.faults.latencyMs, signal);
  }

  #assertConnected(): void {
    if (this.faults.unreachable && this.status === "connected") {
      this.#lifecycle.setStatus("disconnected", "unreachable");
    }
    if (this.status !== "connected") {
      throw this.#lifecycle.notConnected(`Simulated PLC "${this.name}" is ${this.status}.`);
    }
  }
}

/** Tags a simulated read answers per turn of the event loop. */
const READ_SLICE = 2_000;

const BAD_UNKNOWN = quality("bad", "unknown tag", QualityCodes.BadNodeIdUnknown);
const BAD_INJECTED = quality("bad", "injected fault", QualityCodes.BadDeviceFailure);
