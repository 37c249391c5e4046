import { KilnError, type KilnErrorCode } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { Tag } from "../domain/tags";
import { NO_COMMUNICATION, type CurrentValueTable } from "../cvt/current-value-table";
import { quality, QualityCodes } from "../domain/quality";
import type { KilnEvents } from "../events/catalogue";
import type { Disposer, EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import type { Counter, Histogram, Metrics } from "@kiln/core/driver-kit";
import type { PlcDriver } from "../ports/plc-driver";
import type { EndpointHealthSnapshot } from "@kiln/core/driver-kit";
import type { CircuitBreaker, CircuitBreakerSnapshot } from "../resilience/circuit-breaker";
import type { GuardedDriver } from "../resilience/guarded-ports";
import { backoffDelay, createRetryPolicy, type RetryPolicy } from "../resilience/retry";
import { AskedTags, checkReplyPart, missingFromRead, ReadCoverage } from "./driver-samples";
import { SlicedQueue } from "./sliced-queue";
import { FixedRateScheduler } from "./fixed-rate-scheduler";
import { RollingStats, type StatsSummary } from "../stats/rolling-stats";
import { monotonicNow } from "../runtime/system-clock";
import { WallClockWatch } from "../runtime/wall-clock-watch";

/** How long (ms of monotonic time) health lists a wall-clock step as a problem. */
export const WALL_CLOCK_STEP_REPORT_MS = 600_000;

/** How one scan group is acquired. */
export interface ScanGroupSettings {
  /** Scan period (poll) or sampling interval (subscribe), in ms. */
  readonly periodMs: number;
  /** `poll`: one bulk read per period. `subscribe`: the device pushes changes (falls back to poll when the driver cannot). */
  readonly mode: "poll" | "subscribe";
  /** A polled tag not updated for this many periods turns uncertain (0 disables). */
  readonly staleAfterPeriods: number;
  /** Subscription queue size per item. */
  readonly queueSize?: number;
  /** Device-side absolute deadband for subscriptions. */
  readonly deadband?: number;
}

/**
 * Reconnection handling of an {@link Acquisition}. The call timeout and the device breaker are
 * the guarded driver's (composition applies them once, see `guardDriver`).
 */
export interface AcquisitionPolicy {
  /** Reconnection backoff: capped exponential with jitter. */
  readonly reconnect: {
    readonly initialDelayMs: number;
    readonly maxDelayMs: number;
    readonly multiplier?: number;
    readonly random?: () => number;
  };
}

/** Options of {@link Acquisition}. */
export interface AcquisitionOptions {
  /**
   * The driver to acquire from, already wrapped in its timeout and breaker by composition:
   * `start` connects it, {@link Acquisition.close} closes it. Consecutive failed reads open its
   * breaker, which takes the link offline.
   */
  readonly driver: GuardedDriver;
  /** The tags this driver serves; each belongs to `groups[tag.scanGroup]`. */
  readonly tags: readonly Tag[];
  /** Settings of each scan group, by group name. */
  readonly groups: Readonly<Record<string, ScanGroupSettings>>;
  /** The current value table the samples go into. */
  readonly cvt: CurrentValueTable;
  /** Time source for scans, timeouts and reconnection backoff. */
  readonly clock: Clock;
  /** Where connection, breaker and scan-overrun events are published. */
  readonly bus: EventBus<KilnEvents>;
  /** Reconnection backoff. */
  readonly policy: AcquisitionPolicy;
  /** Where scan lateness, overruns and failed reads are counted; nothing is reported when omitted. */
  readonly metrics?: Metrics;
  /** Where link changes and failures are logged. @default silentLogger */
  readonly logger?: Logger;
  /**
   * Asked before each poll for room for its samples (one per tag of the group whose logging mode is
   * not `none`; a group with none is not asked): lets the logging
   * pipeline apply back-pressure (`block` policy). The poll waits for `ready`, then reads, and
   * calls `release()` once its samples are in the current value table, or when it gives up.
   */
  readonly reserveRoom?: (samples: number) => { readonly ready: Promise<void> | undefined; release(): void };
  /**
   * The device-call order shared with the writer: taken when a poll read is issued and carried
   * on the table's changes it makes (`CvtChange.readIssued`), so what a read answers is known to
   * have been sampled no earlier than that (ADR 0042, amendment fix15z). None when omitted.
   */
  readonly readOrder?: () => number;
  /**
   * Most samples of a driver reply put into the current value table in one turn of the event
   * loop; a larger reply is processed in slices, in order, yielding in between
   * (docs/adr/0019-sliced-scan-processing.md). @default 1_000
   */
  readonly sliceSize?: number;
}

/** Health of an acquisition: link, breaker and groups. */
export interface AcquisitionHealth {
  /** The driver's name. */
  readonly driver: string;
  /** `online`: values flow. `offline`: reconnecting, tags uncertain. */
  readonly link: "stopped" | "online" | "offline";
  /** The driver's own connection state. */
  readonly driverStatus: PlcDriver["status"];
  /** State and counters of the driver's circuit breaker. */
  readonly breaker: CircuitBreakerSnapshot;
  /** Reconnection attempts made since the acquisition was created. */
  readonly reconnectAttempts: number;
  /**
   * Samples the driver returned for tags it was not asked for, dropped (a driver bug; logged
   * once). Wrong-typed and missing values are not counted here: they show as `bad` samples.
   */
  readonly unrequestedSamples: number;
  /**
   * The last step of the host's wall clock (`at`: wall time after it; `stepMs`: negative when it
   * went back), absent until one happens; `recent` for 10 minutes after it, while `health()`
   * lists it as a problem. Also published as `clock-step`.
   */
  readonly lastWallClockStep?: { readonly at: number; readonly stepMs: number; readonly recent: boolean };
  /**
   * The driver failure behind the current trouble (`CODE: message` for a `KilnError`): the
   * driver's reason for reconnecting, a failed reconnect attempt, or a failed scan read. Absent
   * while nothing is wrong: cleared when the link is back online after a loss, and when the scan
   * group whose read failed reads again (the history is in the `plc-connection-*` events and the
   * log).
   */
  readonly lastError?: string;
  /** Health of each scan group that has tags. */
  readonly groups: readonly {
    /** The scan group's name. */
    readonly name: string;
    /** The mode in effect: `subscribe` falls back to `poll` when the driver cannot subscribe. */
    readonly mode: "poll" | "subscribe";
    /** Scan period (poll) or sampling interval (subscribe), in ms. */
    readonly periodMs: number;
    /** Number of tags in the group. */
    readonly tags: number;
    /** Poll cycles run since the last start (0 for a subscribed group). */
    readonly cycles: number;
    /** Poll cycles skipped because a cycle overran, since the last start. */
    readonly skippedCycles: number;
    /** Poll reads that failed, or that finished after the link was lost (discarded), since the acquisition was created. */
    readonly failedReads: number;
    /** Start lateness of cycles (period error), ms. */
    readonly periodError: StatsSummary;
    /** Read duration, ms. */
    readonly readDuration: StatsSummary;
  }[];
  /**
   * Health of each endpoint behind the driver's connection (a Modbus unit: `"unit 2"`), when the
   * driver reports them (`PlcDriver.endpoints`); absent otherwise.
   */
  readonly endpoints?: readonly EndpointHealthSnapshot[];
}

interface Group {
  readonly name: string;
  readonly settings: ScanGroupSettings;
  readonly tags: readonly Tag[];
  /** How many of its tags the logging pipeline may take a sample of (logging mode other than `none`). */
  readonly logged: number;
  /** The group's tags, by position and name: what a driver reply for this group may contain. */
  readonly asked: AskedTags;
  readonly names: readonly string[];
  readonly mode: "poll" | "subscribe";
  /** When the group's tags were last swept for staleness (clock time). */
  sweptAt: number;
  scheduler?: FixedRateScheduler;
  unsubscribe?: Disposer;
  failedReads: number;
  /** Tags the device answered for (any quality) since the last start, until the first scan is done. */
  readonly answered: Set<string>;
  /** True from a start until the group's first scan is done (see {@link Acquisition.firstScan}). */
  firstScanPending: boolean;
  readonly periodError: RollingStats;
  readonly readDuration: RollingStats;
}

/**
 * Acquires one driver's tags into the current value table: fixed-rate polls per scan group (one
 * bulk read each), or subscriptions where the driver and group allow. The driver comes guarded
 * (every call has a timeout; reads and writes share the device's circuit breaker). When the breaker opens or the driver
 * reports a dropped connection, every tag turns `uncertain` ("no communication, last usable
 * value"), `plc-connection-lose` is published, and reconnection runs with capped exponential
 * backoff and jitter; on success `plc-connection-restore` is published, subscriptions (the
 * desired state) are re-created and fresh values flow. A driver that reports `failed` (it
 * refused the identity) is not reconnected: `plc-connection-fail` is published and `health()`
 * shows the driver status and the error.
 */
export class Acquisition {
  readonly #options: AcquisitionOptions;
  readonly #groups: Group[];
  readonly #retry: RetryPolicy;
  readonly #logger: Logger;
  readonly #disposers: Disposer[] = [];
  #link: "stopped" | "online" | "offline" = "stopped";
  #lostAt = 0;
  #reconnectAttempts = 0;
  #reconnecting: Promise<void> | undefined;
  #wake: AbortController | undefined;
  #stopping: AbortController | undefined;
  #lastError: string | undefined;
  /** The scan group whose failed read set {@link #lastError}; undefined when something else set it. */
  #lastErrorGroup: string | undefined;
  #unrequested = 0;
  #gaveUp = false;
  readonly #wallWatch: WallClockWatch;
  #wallStep: { readonly at: number; readonly stepMs: number; readonly seenAt: number } | undefined;
  /** Resolves when no group's first scan is pending (see {@link firstScan}). */
  #firstScan: Promise<void> = Promise.resolve();
  #firstScanDone: () => void = () => undefined;
  /**
   * Counts the driver's drops and our stops, so a subscribe that completes after one is disposed
   * and a subscription made before one delivers nothing after it.
   */
  #epoch = 0;
  /** Counts stops, so a start that a stop overtook (its connect or subscribe was in flight) ends there. */
  #stops = 0;
  /** The driver's endpoints (`driver.endpoints()`) last seen offline (see `#checkEndpoints`). */
  readonly #offlineEndpoints = new Set<string>();
  /** Driver replies on their way into the current value table, in arrival order. */
  readonly #replies: SlicedQueue;
  readonly #instruments:
    | {
        readonly periodError: Histogram;
        readonly duration: Histogram;
        readonly overruns: Counter;
        readonly failures: Counter;
      }
    | undefined;

  constructor(options: AcquisitionOptions) {
    this.#options = options;
    this.#logger = (options.logger ?? silentLogger).child({ driver: options.driver.name });
    this.#wallWatch = new WallClockWatch(options.clock);
    this.#replies = new SlicedQueue({ sliceSize: options.sliceSize ?? 1_000 });
    const byGroup = new Map<string, Tag[]>();
    for (const tag of options.tags) {
      if (!options.groups[tag.scanGroup]) {
        throw new KilnError(
          "KILN_VALIDATION",
          `Tag "${tag.name}" names scan group "${tag.scanGroup}", which is not defined.`,
          {
            details: { tag: tag.name, scanGroup: tag.scanGroup },
          },
        );
      }
      let list = byGroup.get(tag.scanGroup);
      if (!list) byGroup.set(tag.scanGroup, (list = []));
      list.push(tag);
    }
    const canSubscribe = options.driver.capabilities.subscribe && typeof options.driver.subscribe === "function";
    this.#groups = [...byGroup].map(([name, tags]) => {
      const settings = options.groups[name]!;
      return {
        name,
        settings,
        tags,
        logged: tags.filter((tag) => tag.logging.mode !== "none").length,
        asked: new AskedTags(tags),
        names: tags.map((tag) => tag.name),
        sweptAt: 0,
        mode: settings.mode === "subscribe" && canSubscribe ? "subscribe" : "poll",
        failedReads: 0,
        answered: new Set<string>(),
        firstScanPending: false,
        periodError: new RollingStats(),
        readDuration: new RollingStats(),
      };
    });
    const metrics = options.metrics;
    this.#instruments = metrics && {
      periodError: metrics.histogram("kiln_scan_period_error_seconds", "Scan start lateness (s)"),
      duration: metrics.histogram("kiln_scan_duration_seconds", "Scan read duration (s)"),
      overruns: metrics.counter("kiln_scan_overruns_total", "Skipped scan cycles"),
      failures: metrics.counter("kiln_scan_failures_total", "Failed scan reads"),
    };
    this.#retry = createRetryPolicy({
      maxAttempts: Number.MAX_SAFE_INTEGER,
      jitter: "full",
      ...options.policy.reconnect,
    });
  }

  /** The driver's breaker (for health). */
  get breaker(): CircuitBreaker {
    return this.#options.driver.breaker;
  }

  /** `online`, `offline` (reconnecting) or `stopped`. */
  get link(): "stopped" | "online" | "offline" {
    return this.#link;
  }

  /**
   * Connects and starts the scan groups. A device that cannot be reached now does not fail
   * start: its tags turn `bad` (`BadNoCommunication`, no value; a value from an earlier run is
   * kept as `uncertain`) and reconnection runs in the background. A failure
   * that retrying cannot fix (bad credentials, configuration) rejects.
   */
  async start(): Promise<void> {
    if (this.#link !== "stopped") return;
    const { driver, clock, cvt } = this.#options;
    const stops = this.#stops;
    this.#stopping = new AbortController();
    this.#gaveUp = false;
    this.#firstScan = new Promise((resolve) => (this.#firstScanDone = resolve));
    for (const group of this.#groups) {
      group.answered.clear();
      group.firstScanPending = true;
      const staleAfter = group.mode === "poll" ? group.settings.staleAfterPeriods * group.settings.periodMs : 0;
      for (const tag of group.tags) cvt.setStaleAfter(tag.name, staleAfter);
      group.sweptAt = clock.now();
    }
    this.#disposers.push(
      driver.onStatusChange((change) => {
        if (change.from === "connected" || change.to === "closed") this.#epoch++;
        // The driver's own reconnect loop reports each failed attempt's reason: health() shows the latest.
        if (change.to === "reconnecting" && change.reason) {
          this.#setLastError(change.code ? `${change.code}: ${change.reason}` : change.reason);
        }
        if (change.to === "failed") {
          this.#giveUp(change.code ?? "KILN_AUTHENTICATION_FAILED", change.reason ?? "the device refused the identity");
        } else if (this.#link === "online" && (change.to === "disconnected" || change.to === "reconnecting")) {
          this.#goOffline(change.reason ?? `driver ${change.to}`);
        } else if (this.#link === "offline" && change.to === "connected") {
          this.#wake?.abort();
        }
      }),
      driver.breaker.onStateChange((change) => {
        if (change.to === "open" && this.#link === "online") this.#goOffline(change.reason);
      }),
    );
    this.#link = "offline";
    this.#lostAt = clock.now();
    try {
      await driver.connect();
      await this.#goOnline();
    } catch (error) {
      // Stopped while connecting or subscribing: the stop has undone everything; nothing may resume.
      if (stops !== this.#stops) return;
      if (KilnError.is(error) && !error.retryable) {
        this.#link = "stopped";
        this.#disposeListeners();
        throw error;
      }
      const reason = describe(error);
      this.#setLastError(reason);
      this.#logger.warn({ error: reason }, "PLC not reachable at start; reconnecting in the background");
      this.#link = "online"; // so that goOffline runs its full transition
      this.#goOffline(reason);
    }
    if (stops !== this.#stops) return;
    this.#checkFirstScan();
    for (const group of this.#groups) {
      if (group.mode !== "poll") continue;
      group.scheduler = new FixedRateScheduler({
        clock,
        periodMs: group.settings.periodMs,
        task: async () => {
          await this.#poll(group);
          if (group.firstScanPending) this.#endFirstScan(group, this.#lastError ?? "no answer from the device");
        },
        onLateness: (ms) => {
          group.periodError.observe(ms);
          this.#instruments?.periodError.observe(ms / 1000, { group: group.name });
        },
        onOverrun: (info) => {
          this.#instruments?.overruns.inc(info.missedCycles, { group: group.name });
          void this.#options.bus.publish("scan-overrun", { at: clock.now(), group: group.name, ...info });
        },
        onError: (error) => this.#logger.error({ error: describe(error), group: group.name }, "scan cycle failed"),
      });
      group.scheduler.start();
    }
  }

  /**
   * Stops polling and subscriptions and ends reconnection. The driver stays open (the owner
   * closes it once the logging pipeline has drained; see {@link Acquisition.close}).
   */
  async stop(): Promise<void> {
    if (this.#link === "stopped") return;
    this.#link = "stopped";
    this.#epoch++;
    this.#stops++;
    this.#stopping?.abort();
    this.#wake?.abort();
    for (const group of this.#groups) group.firstScanPending = false;
    this.#firstScanDone();
    await Promise.all(this.#groups.map((group) => group.scheduler?.stop() ?? Promise.resolve()));
    await this.#reconnecting;
    this.#unsubscribeAll();
    this.#replies.flush();
    this.#disposeListeners();
  }

  /** Sets {@link #lastError} (undefined: clears it), remembering the scan group whose read failed. */
  #setLastError(error: string | undefined, group?: string): void {
    this.#lastError = error;
    this.#lastErrorGroup = error === undefined ? undefined : group;
  }

  /** Closes the driver. Call after {@link stop}. */
  async close(): Promise<void> {
    await this.#options.driver.close();
  }

  /** Link, breaker and per-group statistics. */
  health(): AcquisitionHealth {
    return {
      driver: this.#options.driver.name,
      link: this.#link,
      driverStatus: this.#options.driver.status,
      breaker: this.#options.driver.breaker.snapshot,
      reconnectAttempts: this.#reconnectAttempts,
      unrequestedSamples: this.#unrequested,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      ...(this.#wallStep === undefined
        ? {}
        : {
            lastWallClockStep: {
              at: this.#wallStep.at,
              stepMs: this.#wallStep.stepMs,
              recent: monotonicNow(this.#options.clock) - this.#wallStep.seenAt < WALL_CLOCK_STEP_REPORT_MS,
            },
          }),
      ...(this.#options.driver.endpoints ? { endpoints: this.#options.driver.endpoints() } : {}),
      groups: this.#groups.map((group) => ({
        name: group.name,
        mode: group.mode,
        periodMs: group.settings.periodMs,
        tags: group.tags.length,
        cycles: group.scheduler?.cyclesRun ?? 0,
        skippedCycles: group.scheduler?.cyclesSkipped ?? 0,
        failedReads: group.failedReads,
        periodError: group.periodError.summary(),
        readDuration: group.readDuration.summary(),
      })),
    };
  }

  async #poll(group: Group): Promise<void> {
    if (this.#link !== "online") return;
    // A group none of whose tags is logged adds nothing to the pipeline: it never waits for room
    // (a fast unlogged group behind a large logged one's waiting scan would lose its period).
    const room = group.logged > 0 ? this.#options.reserveRoom?.(group.logged) : undefined;
    try {
      if (room?.ready) await this.#waitForRoom(room.ready, group);
      await this.#read(group);
    } finally {
      room?.release();
    }
  }

  async #read(group: Group): Promise<void> {
    if (this.#link !== "online") return;
    const { driver, clock } = this.#options;
    const started = monotonicNow(clock);
    const epoch = this.#epoch;
    // Taken before the call: the device samples no earlier than this (ADR 0042, fix15z).
    const issued = this.#options.readOrder?.();
    try {
      const samples = await driver.read(group.tags, this.#stopping!.signal);
      const readMs = monotonicNow(clock) - started;
      group.readDuration.observe(readMs);
      this.#instruments?.duration.observe(readMs / 1000, { group: group.name });
      if (epoch !== this.#epoch || this.#link !== "online") {
        // The link was lost while this read was out (a driver may report the loss, then return what it
        // had read): every tag already carries the loss marker, which an older value must not overwrite,
        // or a value read before the loss would show good for the whole outage. Discarded, counted.
        group.failedReads++;
        this.#logger.warn({ group: group.name }, "a read that finished after the link was lost was discarded");
        return;
      }
      await this.#accept(group, samples, true, clock.now(), issued);
      if (this.#lastErrorGroup === group.name) this.#setLastError(undefined);
    } catch (error) {
      if (this.#stopping!.signal.aborted) return;
      group.failedReads++;
      this.#setLastError(describe(error), group.name);
      this.#instruments?.failures.inc(1, { group: group.name });
      this.#logger.warn({ error: this.#lastError, group: group.name }, "scan read failed");
    } finally {
      this.#sweepStale(group);
      this.#checkEndpoints();
    }
  }

  /**
   * Publishes `plc-endpoint-change` for each endpoint of the driver (`driver.endpoints()`, optional) that went
   * offline or came back since the last read: a unit behind a gateway going offline is otherwise seen only in
   * `health()`, not as an event like the connection's own changes. An endpoint first seen offline is reported; one
   * that leaves the list while offline (a condition that ended) is reported online.
   */
  #checkEndpoints(): void {
    const { driver, bus, clock } = this.#options;
    if (!driver.endpoints) return;
    let endpoints;
    try {
      endpoints = driver.endpoints();
    } catch (error) {
      this.#logger.warn({ error: describe(error) }, "driver.endpoints() failed");
      return;
    }
    const seen = new Set<string>();
    for (const endpoint of endpoints) {
      seen.add(endpoint.endpoint);
      const wasOffline = this.#offlineEndpoints.has(endpoint.endpoint);
      if ((endpoint.state === "offline") === wasOffline) continue;
      if (endpoint.state === "offline") this.#offlineEndpoints.add(endpoint.endpoint);
      else this.#offlineEndpoints.delete(endpoint.endpoint);
      void bus.publish("plc-endpoint-change", {
        at: clock.now(),
        driver: driver.name,
        endpoint: endpoint.endpoint,
        from: wasOffline ? "offline" : "online",
        to: endpoint.state,
        ...(endpoint.state === "offline" && endpoint.lastError !== undefined ? { reason: endpoint.lastError } : {}),
        ...(endpoint.state === "offline" && endpoint.nextProbeAt !== undefined
          ? { nextProbeAt: endpoint.nextProbeAt }
          : {}),
      });
    }
    for (const endpoint of [...this.#offlineEndpoints]) {
      if (seen.has(endpoint)) continue;
      this.#offlineEndpoints.delete(endpoint);
      void bus.publish("plc-endpoint-change", {
        at: clock.now(),
        driver: driver.name,
        endpoint,
        from: "offline",
        to: "online",
      });
    }
  }

  /**
   * Puts a driver reply into the current value table through the one check of driver samples
   * (wrong type → bad, unrequested → dropped and counted, missing from a read → bad), behind the
   * replies before it and a slice at a time; resolves once all of it is in the table.
   */
  #accept(group: Group, reply: readonly Sample[], complete: boolean, now: number, issued?: number): Promise<void> {
    this.#watchWallClock();
    const { cvt } = this.#options;
    const seen = complete ? new ReadCoverage(group.asked) : undefined;
    return this.#replies.enqueue({
      size: reply.length,
      run: (from, to) => {
        const { samples, unrequested } = checkReplyPart(reply, from, to, group.asked, now, seen);
        if (unrequested > 0) this.#countUnrequested(group, unrequested);
        cvt.update(samples, now, issued);
        this.#noteAnswered(group, samples);
      },
      ...(seen === undefined
        ? {}
        : {
            finish: () => {
              const missing = missingFromRead(seen, now);
              cvt.update(missing, now, issued);
              this.#noteAnswered(group, missing);
            },
          }),
    });
  }

  #countUnrequested(group: Group, unrequested: number): void {
    if (this.#unrequested === 0) {
      this.#logger.warn(
        { driver: this.#options.driver.name, group: group.name, count: unrequested },
        "driver returned samples for tags it was not asked for; dropped (counted in health().acquisition.unrequestedSamples)",
      );
    }
    this.#unrequested += unrequested;
  }

  /** Counts the tags of `group` that had a sample, until its first scan is complete. */
  #noteAnswered(group: Group, samples: readonly Sample[]): void {
    if (!group.firstScanPending) return;
    for (const sample of samples) group.answered.add(sample.tag);
    if (group.answered.size === group.tags.length) this.#endFirstScan(group);
  }

  /**
   * Resolves when the first scan since the last {@link start} is complete for every scan group:
   * each tag has a sample from this run in the current value table — the device's (good,
   * uncertain or bad, as read), or, when the device did not answer (unreachable at start, the
   * first read failed or timed out, the link dropped), `bad` `BadNoCommunication` with a `null`
   * value and the reason (a tag holding a value from an earlier run keeps it, `uncertain`
   * "no communication, last usable value"). A poll group's first scan is its first cycle, so it
   * is bounded by the driver's call timeout; a subscribed group's ends when every tag has had a
   * notification. Waits at most `timeoutMs` (on the clock): tags still without an answer then
   * are marked as above, with the reason "no answer within `timeoutMs` ms of start". Also
   * resolves when the acquisition stops. Resolves at once when the first scan is already done.
   */
  async firstScan(timeoutMs: number): Promise<void> {
    if (!this.#groups.some((group) => group.firstScanPending)) return;
    const bound = new AbortController();
    const timedOut = this.#options.clock.sleep(timeoutMs, bound.signal).then(
      () => true,
      () => false,
    );
    const done = this.#firstScan.then(() => false);
    const expired = await Promise.race([done, timedOut]);
    bound.abort();
    if (expired && this.#link !== "stopped") {
      for (const group of this.#groups) {
        if (group.firstScanPending) this.#endFirstScan(group, `no answer within ${timeoutMs} ms of start`);
      }
    }
  }

  /**
   * Ends a group's first scan; with `reason` (the device did not answer), each tag without an
   * answer since the start gets a bad sample, or keeps its earlier value as uncertain.
   */
  #endFirstScan(group: Group, reason?: string): void {
    if (!group.firstScanPending) return;
    group.firstScanPending = false;
    if (reason !== undefined) {
      const { cvt, clock } = this.#options;
      const now = clock.now();
      const unanswered = group.tags.filter((tag) => !group.answered.has(tag.name)).map((tag) => tag.name);
      const earlier = unanswered.filter((tag) => cvt.get(tag) !== undefined);
      const noValue = quality("bad", `no communication since start: ${reason}`, QualityCodes.BadNoCommunication);
      cvt.update(
        unanswered
          .filter((tag) => cvt.get(tag) === undefined)
          .map((tag) => ({ tag, value: null, timestamp: now, quality: noValue })),
        now,
      );
      cvt.degrade(earlier, NO_COMMUNICATION, now);
    }
    group.answered.clear();
    this.#checkFirstScan();
  }

  /** Ends the first scan of every group while the link is offline (the device did not answer). */
  #checkFirstScan(reason?: string): void {
    if (this.#link === "offline") {
      for (const group of this.#groups) {
        if (group.firstScanPending) this.#endFirstScan(group, reason ?? this.#lastError ?? "PLC offline");
      }
    }
    if (!this.#groups.some((group) => group.firstScanPending)) this.#firstScanDone();
  }

  /** Reports a step of the wall clock once: a warning, `clock-step`, and a health problem for a while. */
  #watchWallClock(): void {
    const stepMs = this.#wallWatch.check();
    if (stepMs === undefined) return;
    const { clock, bus } = this.#options;
    const at = clock.now();
    this.#wallStep = { at, stepMs, seenAt: monotonicNow(clock) };
    this.#logger.warn({ stepMs }, "host wall clock stepped; scans and staleness go on, on monotonic time");
    void bus.publish("clock-step", { at, stepMs });
  }

  /**
   * Waits for the logging pipeline to have room (the `block` policy), sweeping staleness every
   * period meanwhile: a value that is old because acquisition is held back turns uncertain too.
   */
  async #waitForRoom(waiting: Promise<void>, group: Group): Promise<void> {
    const { clock } = this.#options;
    const stopping = this.#stopping!.signal;
    let room = false;
    const roomMade = waiting.then(() => {
      room = true;
    });
    while (!room && !stopping.aborted) {
      const tick = new AbortController();
      const period = clock
        .sleep(group.settings.periodMs, AbortSignal.any([tick.signal, stopping]))
        .catch(() => undefined);
      await untilAborted(Promise.race([roomMade, period]), stopping);
      tick.abort();
      this.#sweepStale(group);
    }
  }

  /**
   * Sweeps staleness of `group`'s tags, and of every other polled group not swept for a period
   * (its own polls stopped coming: a read hanging up to its timeout). Sweeping every tag after
   * every poll cost a 10 ms group beside 100,000 tags a few ms of CPU each period.
   */
  #sweepStale(group: Group): void {
    const { clock, cvt } = this.#options;
    const now = clock.now();
    for (const other of this.#groups) {
      if (other.mode !== "poll" || other.settings.staleAfterPeriods === 0) continue;
      if (other !== group && now - other.sweptAt < other.settings.periodMs) continue;
      other.sweptAt = now;
      cvt.sweepStale(now, other.names);
    }
  }

  #goOffline(reason: string): void {
    if (this.#link !== "online") return;
    const { clock, cvt, bus, driver, options } = { ...this.#options, options: this.#options };
    this.#link = "offline";
    this.#lostAt = clock.now();
    this.#unsubscribeAll();
    // Values read before the loss go in first, so the loss marker is the newest entry of each tag.
    this.#replies.flush();
    cvt.degrade(
      options.tags.map((tag) => tag.name),
      NO_COMMUNICATION,
      this.#lostAt,
    );
    this.#logger.warn({ reason }, "PLC connection lost");
    void bus.publish("plc-connection-lose", { at: this.#lostAt, driver: driver.name, reason });
    this.#checkFirstScan(reason);
    this.#reconnecting ??= this.#reconnectLoop().finally(() => (this.#reconnecting = undefined));
  }

  async #goOnline(): Promise<void> {
    const { clock, driver, bus } = this.#options;
    const epoch = this.#epoch;
    // The link dropped or we stopped since this call began: whatever it subscribed has no caller.
    const overtaken = (): boolean => epoch !== this.#epoch || this.#link === "stopped" || driver.status !== "connected";
    // What this call subscribed, so that its failure disposes those and never a later call's.
    const made: { readonly group: Group; readonly unsubscribe: Disposer }[] = [];
    const dropped = (group: Group): KilnError => {
      for (const subscription of made) {
        this.#unsubscribe(subscription.group, subscription.unsubscribe);
        if (subscription.group.unsubscribe === subscription.unsubscribe) subscription.group.unsubscribe = undefined;
      }
      return new KilnError("KILN_CONNECTION_FAILED", "The connection dropped while subscribing; retrying.", {
        retryable: true,
        details: { driver: driver.name, group: group.name },
      });
    };
    for (const group of this.#groups) {
      if (group.mode !== "subscribe") continue;
      let subscribed: Disposer;
      try {
        subscribed = await driver.subscribe!(
          group.tags,
          {
            samplingIntervalMs: group.settings.periodMs,
            ...(group.settings.queueSize === undefined ? {} : { queueSize: group.settings.queueSize }),
            ...(group.settings.deadband === undefined ? {} : { deadband: group.settings.deadband }),
          },
          (samples) => {
            // A subscription of an earlier epoch (the link dropped, or we stopped, since it was
            // asked for) delivers nothing: not while it is being made, not after its disposal.
            if (epoch !== this.#epoch) return;
            this.#accept(group, samples, false, clock.now()).catch((error: unknown) => {
              this.#logger.error({ error: describe(error), group: group.name }, "subscription delivery failed");
            });
          },
        );
      } catch (error) {
        dropped(group);
        throw error;
      }
      const unsubscribe = once(subscribed);
      made.push({ group, unsubscribe });
      if (overtaken()) throw dropped(group);
      // Reachable by stop() and a link loss from now on (they dispose it; so may `dropped`).
      group.unsubscribe = unsubscribe;
    }
    // A poll-only system: the stop may have come while connecting.
    if (this.#link === "stopped" || epoch !== this.#epoch) throw dropped(this.#groups[0]!);
    const wasOffline = this.#link === "offline";
    this.#link = "online";
    driver.breaker.reset();
    // Recovered: the failure that took the link down is no longer current.
    if (wasOffline) this.#setLastError(undefined);
    if (wasOffline && this.#reconnectAttempts > 0) {
      const now = clock.now();
      this.#logger.info({ downtimeMs: now - this.#lostAt }, "PLC connection restored");
      void bus.publish("plc-connection-restore", { at: now, driver: driver.name, downtimeMs: now - this.#lostAt });
    }
  }

  async #reconnectLoop(): Promise<void> {
    const { clock, driver } = this.#options;
    let attempt = 0;
    while (this.#link === "offline") {
      attempt++;
      this.#wake = new AbortController();
      const wait = backoffDelay(Math.min(attempt, 64), this.#retry, this.#retry.random());
      try {
        await clock.sleep(wait, AbortSignal.any([this.#wake.signal, this.#stopping!.signal]));
      } catch {
        // Woken early: the driver reported a connection, or we are stopping.
      }
      if (this.#link !== "offline" || driver.status === "failed") return;
      this.#reconnectAttempts++;
      try {
        if (driver.status === "disconnected" || driver.status === "closed") {
          await driver.connect();
        }
        const probe = this.#groups.find((group) => group.mode === "poll") ?? this.#groups[0];
        if (probe) {
          // The probe's values take room like a poll's (ADR 0046, fix16o): let in below the bound, else
          // the probe only tells that the link is back, and the next poll (which waits for room) brings
          // them. Taking them past the bound added one scan per reconnect, and with it one link-loss mark
          // per tag at the next drop: a link flapping while the store is down grew the buffer per flap.
          const room = probe.mode === "poll" ? this.#probeRoom(probe) : undefined;
          try {
            const samples = await driver.probe(probe.tags);
            if (this.#link !== "offline") return;
            // A subscription group's values come with its subscription's first notification; the
            // probe's copy of them (same value, timestamp and quality) would reach observers twice.
            if (room !== undefined) await this.#accept(probe, samples, true, clock.now());
          } finally {
            room?.release();
          }
        }
        await this.#goOnline();
        return;
      } catch (error) {
        // An attempt in flight when the driver refused the identity fails after it: the refusal stays the last error.
        if (this.#gaveUp) {
          this.#unsubscribeAll();
          return;
        }
        this.#setLastError(describe(error));
        this.#logger.debug({ error: this.#lastError, attempt }, "reconnect attempt failed");
        this.#unsubscribeAll();
        if (KilnError.is(error, "KILN_AUTHENTICATION_FAILED")) {
          this.#giveUp(error.code, error.message);
          return;
        }
      }
    }
  }

  /**
   * Room for the reconnect probe's values, granted only at once (a reconnect does not wait for the
   * logging pipeline): undefined when the pipeline is at its bound, and the probe's values are then
   * not taken (counted as a blocked wait by the pipeline). A group without logged tags needs none.
   */
  #probeRoom(group: Group): { release(): void } | undefined {
    const none = { release: () => undefined };
    if (group.logged === 0 || this.#options.reserveRoom === undefined) return none;
    const room = this.#options.reserveRoom(group.logged);
    if (room.ready === undefined) return room;
    room.release();
    this.#logger.debug(
      { group: group.name },
      "logging buffer at its bound: the reconnect probe's values are not taken",
    );
    return undefined;
  }

  /**
   * The device refused the identity: stop reconnecting (each attempt would repeat the refused
   * log-in, and servers lock accounts after a few), say so once, keep the tags degraded.
   */
  #giveUp(code: KilnErrorCode, reason: string): void {
    if (this.#link === "stopped") return;
    this.#setLastError(`${code}: ${reason}`);
    this.#goOffline(reason);
    this.#wake?.abort();
    if (this.#gaveUp) return;
    this.#gaveUp = true;
    this.#logger.error({ error: this.#lastError }, "PLC refused the identity; not reconnecting");
    const { bus, clock, driver } = this.#options;
    void bus.publish("plc-connection-fail", { at: clock.now(), driver: driver.name, code, reason });
  }

  #unsubscribeAll(): void {
    for (const group of this.#groups) {
      if (group.unsubscribe) this.#unsubscribe(group, group.unsubscribe);
      group.unsubscribe = undefined;
    }
  }

  #unsubscribe(group: Group, unsubscribe: Disposer): void {
    try {
      unsubscribe();
    } catch (error) {
      this.#logger.warn({ error: describe(error), group: group.name }, "unsubscribe failed");
    }
  }

  #disposeListeners(): void {
    for (const dispose of this.#disposers.splice(0)) dispose();
  }
}

/** Resolves when `promise` settles or `signal` aborts, whichever comes first. */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    promise.then(done, done);
  });
}

function describe(error: unknown): string {
  if (KilnError.is(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

/** `dispose` called at most once, however often the result is. */
function once(dispose: Disposer): Disposer {
  let disposed = false;
  return () => {
    if (disposed) return;
    disposed = true;
    dispose();
  };
}
