import { QualityCodes, quality, type Clock, type Logger, type Quality } from "@kiln/core";
import { EndpointHealth, type Disposer, type EndpointHealthSnapshot, type EndpointState } from "@kiln/core/driver-kit";
import type { ResolvedModbusDriverOptions } from "./modbus-driver-options";

/** What the driver knows about one unit (slave id) behind its connection. */
export interface ModbusUnitHealth {
  /** The unit id. */
  readonly unitId: number;
  /**
   * `offline` after `unitHealth.offlineAfter` timeouts in a row; `online` again after any answer;
   * `not-yet-answered` for a unit of a read plan that has neither answered nor failed yet (not asked yet, or its
   * first request still on the wire).
   */
  readonly state: EndpointState | "not-yet-answered";
  /**
   * Timeouts (and gateway exceptions 10/11) since the unit last answered, and reads it was left out of
   * meanwhile (its probe pending): a dead unit is offline after `unitHealth.offlineAfter` of its reads.
   */
  readonly consecutiveFailures: number;
  /** The last failure's message. */
  readonly lastError?: string;
  /** When the unit last failed, ms since epoch on the driver's clock. */
  readonly lastFailureAt?: number;
  /** When the unit last answered (with data or an exception), ms since epoch. */
  readonly lastSuccessAt?: number;
  /** While offline: when the next probe request may go out, ms since epoch. */
  readonly nextProbeAt?: number;
}

/** A unit going offline or coming back, as reported by `ModbusDriver.onUnitStatusChange`. */
export interface ModbusUnitStatusChange {
  /** The unit id. */
  readonly unitId: number;
  /** The state before. */
  readonly from: EndpointState;
  /** The state now. */
  readonly to: EndpointState;
  /** Why, in words: the last error, or "answered again". */
  readonly reason: string;
  /** When going offline: when the first probe is due, ms since epoch. */
  readonly nextProbeAt?: number;
}

/**
 * Whether the driver trusts the order of the answers on its connection, as `ModbusDriver.answerStream` reports
 * it (see docs/drivers/modbus.md, "Transparent gateways", and ADR 0041).
 */
export interface ModbusAnswerStream {
  /** `false` from an anomaly until a fence's own answer proved that no older answer can come any more. */
  readonly aligned: boolean;
  /** The last anomaly, or what proved the stream aligned, in words. */
  readonly reason: string;
  /** Anomalies seen since the driver was created (timeouts, answers that did not fit, duplicates...). */
  readonly anomalies: number;
  /**
   * Answers that came with no request to take them, since the driver was created: late or repeated frames, and
   * on Modbus RTU also runs of noise bytes (each counted once). Each one that is a frame is also an anomaly
   * unless it paid an answer owed by a request that timed out (TCP).
   */
  readonly strays: number;
  /** While not aligned: when the stream was found possibly shifted, ms since epoch on the driver's clock. */
  readonly since?: number;
}

/** A change of {@link ModbusAnswerStream}, as reported by `ModbusDriver.onAnswerStreamChange`. */
export interface ModbusAnswerStreamChange {
  /** `false`: found possibly shifted (nothing is sent before a fence); `true`: a fence proved it aligned again. */
  readonly aligned: boolean;
  /** The anomaly, or the fence that proved it aligned, in words. */
  readonly reason: string;
  /** When, ms since epoch on the driver's clock. */
  readonly at: number;
}

/**
 * Health of each Modbus unit behind one connection, on the driver kit's {@link EndpointHealth}
 * (keyed `unit <id>`): a unit that fails `offlineAfter` times in a row is offline, its tags are
 * answered bad without traffic and one request probes it on the backoff. Reports each transition
 * to its listeners (a listener that throws is logged and skipped).
 */
export class ModbusUnitHealthMap {
  readonly #health: EndpointHealth;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #listeners = new Set<(change: ModbusUnitStatusChange) => void>();
  /** Units of the read plans in use, listed from the first plan on (at most 256). */
  readonly #planned = new Set<number>();

  constructor(options: ResolvedModbusDriverOptions["unitHealth"], clock: Clock, logger: Logger, random?: () => number) {
    this.#clock = clock;
    this.#logger = logger;
    this.#health = new EndpointHealth({
      clock,
      offlineAfter: options.offlineAfter,
      probeBackoff: { initialDelayMs: options.probeInitialDelayMs, maxDelayMs: options.probeMaxDelayMs, jitter: 0.2 },
      ...(random ? { random } : {}),
    });
  }

  /** Records that a read plan has tags on `unitId`: it is listed from now on, answered or not. */
  planned(unitId: number): void {
    this.#planned.add(unitId);
  }

  /** Records that `unitId` answered (data or an exception). */
  answered(unitId: number): void {
    const key = unitKey(unitId);
    const before = this.#health.state(key);
    this.#health.success(key);
    if (before === "offline") this.#emit({ unitId, from: "offline", to: "online", reason: "answered again" });
  }

  /** Records that `unitId` did not answer usefully (timeout, gateway exception 10/11, an answer that fits no request). */
  failed(unitId: number, error: unknown): void {
    const key = unitKey(unitId);
    const before = this.#health.state(key);
    const after = this.#health.failure(key, error);
    if (before === "online" && after === "offline") {
      const reason = error instanceof Error ? error.message : String(error);
      const nextProbeAt = this.#entry(unitId)?.nextProbeAt;
      this.#emit({
        unitId,
        from: "online",
        to: "offline",
        reason,
        ...(nextProbeAt === undefined ? {} : { nextProbeAt }),
      });
    }
  }

  /**
   * Counts a read `unitId` was left out of while suspect (its tags answered bad, its probe in the
   * background) as one more failure, unless it already failed since `since` (ms on the driver's clock,
   * the read's start): so a dead unit is named offline after `offlineAfter` of its reads, however many
   * dead units share the one background probe. The last error stays the last real one; an offline unit
   * is not counted (its probe stays due).
   */
  missedRead(unitId: number, since: number): void {
    const entry = this.#entry(unitId);
    // An offline unit is named already; a failure now would push its due probe out on the backoff.
    if (entry === undefined || entry.state === "offline" || entry.consecutiveFailures === 0) return;
    if ((entry.lastFailureAt ?? 0) >= since) return;
    this.failed(unitId, new Error(entry.lastError ?? "no answer"));
  }

  /** Whether `unitId` is offline (`offlineAfter` failures in a row). */
  offline(unitId: number): boolean {
    return this.#entry(unitId)?.state === "offline";
  }

  /** Whether `unitId` has failed since it last answered (its requests go last in a read). */
  suspect(unitId: number): boolean {
    return (this.#entry(unitId)?.consecutiveFailures ?? 0) > 0;
  }

  /**
   * Whether `unitId` answered before and has failed exactly once since: one answer lost on the way, as
   * opposed to a unit that never answered or failed again (its next request may be awaited as its probe).
   */
  lostOneAnswer(unitId: number): boolean {
    const entry = this.#entry(unitId);
    return entry?.consecutiveFailures === 1 && entry.lastSuccessAt !== undefined;
  }

  /** Whether `unitId` has answered or failed before (a unit never asked is unknown). */
  known(unitId: number): boolean {
    return this.#entry(unitId) !== undefined;
  }

  /** Whether some unit has answered since its last failure (so the link to the device works). */
  anyAnswering(): boolean {
    return this.#health.snapshot().some((entry) => entry.consecutiveFailures === 0);
  }

  /** Whether a request to `unitId` may go out now: always while online; when offline, once its probe is due. */
  shouldProbe(unitId: number): boolean {
    return this.#health.shouldProbe(unitKey(unitId));
  }

  /**
   * The quality of a tag of a suspect unit that is not read in this scan: "unit 2 offline, next probe
   * at <ISO time>", or, before it is offline, "unit 2 failed its last 2 requests (last: <error>); probing it".
   */
  waitingQuality(unitId: number): Quality {
    const entry = this.#entry(unitId);
    if (entry?.state === "offline") {
      const nextProbeAt = entry.nextProbeAt ?? this.#clock.now();
      return quality(
        "bad",
        `unit ${unitId} offline, next probe at ${new Date(nextProbeAt).toISOString()}`,
        QualityCodes.BadTimeout,
      );
    }
    const failures = entry?.consecutiveFailures ?? 0;
    const requests = failures === 1 ? "request" : `${failures} requests`;
    const last = entry?.lastError === undefined ? "" : ` (last: ${entry.lastError})`;
    return quality("bad", `unit ${unitId} failed its last ${requests}${last}; probing it`, QualityCodes.BadTimeout);
  }

  /**
   * Every unit seen or planned, as the driver kit's endpoint snapshots (keyed `unit <id>`): a planned unit that
   * has not answered yet is `online` with no failure and `lastError` "not answered yet" (the driver kit's states
   * are online and offline only; {@link ModbusUnitHealthMap.list} says `not-yet-answered`).
   */
  snapshot(): EndpointHealthSnapshot[] {
    const seen = this.#health.snapshot();
    const waiting = [...this.#planned]
      .filter((unitId) => !this.known(unitId))
      .map((unitId) => ({
        endpoint: unitKey(unitId),
        state: "online" as const,
        consecutiveFailures: 0,
        lastError: NOT_YET_ANSWERED,
      }));
    return waiting.length === 0 ? seen : [...seen, ...waiting];
  }

  /** Every unit seen or planned, by unit id (a planned unit not heard from yet as `not-yet-answered`). */
  list(): ModbusUnitHealth[] {
    return this.snapshot()
      .map(({ endpoint, ...rest }): ModbusUnitHealth => {
        const unitId = Number(endpoint.slice(5));
        return this.known(unitId) ? { unitId, ...rest } : { unitId, ...rest, state: "not-yet-answered" };
      })
      .sort((left, right) => left.unitId - right.unitId);
  }

  /** Calls `listener` on each unit status change; returns a disposer. */
  onChange(listener: (change: ModbusUnitStatusChange) => void): Disposer {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  #entry(unitId: number) {
    return this.#health.get(unitKey(unitId));
  }

  #emit(change: ModbusUnitStatusChange): void {
    if (change.to === "offline") this.#logger.warn({ ...change }, "modbus unit offline");
    else this.#logger.info({ ...change }, "modbus unit online again");
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.#logger.error({ error }, "unit status listener failed");
      }
    }
  }
}

const NOT_YET_ANSWERED = "not answered yet (its requests have not had their turn, or the first is on the wire)";

function unitKey(unitId: number): string {
  return `unit ${unitId}`;
}
