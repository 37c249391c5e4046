import {
  ConnectionLifecycle,
  EndpointHealth,
  GOOD,
  KilnError,
  KilnValidationError,
  QualityCodes,
  abortError,
  afterEventLoopTurn,
  checkTagValue,
  parseOrThrow,
  quality,
  raceAbort,
  signalTimeLeft,
  type Disposer,
  type DriverStatusChange,
  type EndpointHealthSnapshot,
  type PlcDriverCapabilities,
  type Quality,
  type Sample,
  type Tag,
  type TagValue,
} from "@kiln/core/driver-kit";
import { SystemClock, silentLogger, type Clock, type DriverStatus, type Logger, type PlcDriver } from "@kiln/core";
import {
  formatModbusAddress,
  formatModbusBlock,
  isBitArea,
  isWritableArea,
  type ModbusAddress,
  type ModbusArea,
} from "./modbus-address";
import type { ModbusClient, ModbusStrayAnswer } from "./modbus-client";
import { createModbusRtuClient } from "./modbus-rtu-client";
import { createModbusTcpClient } from "./modbus-tcp-client";
import { answerDoubt } from "./modbus-answer-repeat";
import { compileDecoder, rawFromEngineering, writeReadsBack, type ModbusTagDecoder } from "./modbus-codec";
import { destroyClient, modbusTarget, openModbusClient } from "./modbus-connection";
import {
  modbusDriverOptionsSchema,
  type ModbusDriverOptions,
  type ResolvedModbusDriverOptions,
} from "./modbus-driver-options";
import {
  gatewayMayAnswerLate,
  kilnErrorFromModbus,
  modbusDisconnectedError,
  modbusFailureOf,
  qualityFromModbus,
  qualityFromModbusError,
} from "./modbus-failure";
import {
  ModbusReadPlanner,
  readModbusRequest,
  TRANSIENT_MODBUS_EXCEPTIONS,
  type ModbusLearnedHole,
  type ModbusLearnedMap,
  type ModbusReadItem,
  type ModbusReadPlan,
  type ModbusReadRequest,
  type ModbusSplitOptions,
} from "./modbus-read-planner";
import {
  ModbusRequestQueue,
  type ModbusAlignmentChange,
  type ModbusAnswerShape,
  type ModbusRequestOptions,
  type ModbusSerialBytes,
} from "./modbus-request-queue";
import {
  ModbusUnitHealthMap,
  type ModbusAnswerStream,
  type ModbusAnswerStreamChange,
  type ModbusUnitHealth,
  type ModbusUnitStatusChange,
} from "./modbus-unit-health";
import { ModbusWriter } from "./modbus-writer";

const CAPABILITIES: PlcDriverCapabilities = Object.freeze({ subscribe: false, browse: false });

/**
 * A Kiln {@link PlcDriver} for Modbus TCP and RTU, on its own TCP and RTU clients (every answer checked
 * against its request).
 *
 * - Tags carry a Modbus address (`"HR100:float32:CDAB"` or `{ area, address, type, order, ... }`; see
 *   `parseModbusAddress`).
 * - `read(tags)` runs the plan of the {@link ModbusReadPlanner}: tags grouped by unit and area, coalesced into
 *   as few requests as the protocol allows, through gaps of up to `maxGap` registers. A request refused with
 *   an exception in `splitOnExceptions` is split and retried so one bad address only poisons itself; it is
 *   remembered and reported with quality bad.
 * - Requests are serialised, each with a timeout and an optional quiet time before the next; on Modbus TCP,
 *   `maxInFlight` lets up to that many go out at once (pipelining), matched by transaction id.
 * - A lost connection is reopened with capped exponential backoff; status changes are reported through
 *   {@link ModbusDriver.onStatusChange}.
 *
 * @example
 * const driver = new ModbusDriver({ transport: { kind: "tcp", host: "10.0.0.5" }, unitId: 1 });
 * await driver.connect();
 * const samples = await driver.read(tags.list());
 * await driver.write(tags.get("pump.setpoint"), 42.5);
 * await driver.close();
 */
export class ModbusDriver implements PlcDriver {
  /** The driver contract version. */
  readonly driverApiVersion = "1" as const;
  /** The connection name. */
  readonly name: string;
  /** Modbus has neither subscriptions nor browsing. */
  readonly capabilities: PlcDriverCapabilities = CAPABILITIES;

  readonly #options: ResolvedModbusDriverOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #clientFactory: () => ModbusClient;
  readonly #planner: ModbusReadPlanner;
  readonly #queue: ModbusRequestQueue;
  readonly #writer: ModbusWriter;
  readonly #lifecycle: ConnectionLifecycle;
  readonly #maxConsecutiveTimeouts: number;
  readonly #target: string;
  #client: ModbusClient | undefined;
  #consecutiveTimeouts = 0;
  /** Requests numbered in the order they are queued (and sent). */
  #sequence = 0;
  /** Answers (data or exception) each unit has given on this driver, to tell a dropped pipelined request. */
  readonly #answers = new Map<number, number>();
  /** Units reads deferred, each with a request to probe it (only unknown or suspect ones are); one probe at a time. */
  #probeCandidates = new Map<number, ModbusReadRequest>();
  #probing = false;
  #lastProbed = -1;
  /** When to try `maxInFlight` again after falling back to 1 (ms on the driver's clock). */
  #pipelineRetryAt = Number.POSITIVE_INFINITY;
  /**
   * Units (`<unit>`) and areas of a unit (`<unit>|<area>`) warned about for refusing every address of a read
   * (warned again after they serve one).
   */
  readonly #refusingAreas = new Set<string>();
  /** Whether the warning that `requestTimeoutMs` outlives a read's deadline was logged. */
  #deadlineWarned = false;
  /** Requests that timed out on this driver (any read's or write's, not a probe's): tells a read that one came. */
  #timeouts = 0;
  /** The newest request sent when a timeout last counted against the link. */
  #lastCountedSequence = 0;
  readonly #units: ModbusUnitHealthMap;
  /**
   * Health of each request block (keyed `unit 1 HR100-109`), counted only when its unit answered another
   * request in the same read: a block the unit never answers is backed off like an offline unit.
   */
  readonly #blocks: EndpointHealth;
  /** Blocks whose last request timed out: read after every other request of a read. */
  readonly #silentBlocks = new Set<string>();
  /**
   * Blocks (`blockKey`) that missed their turn in their last reads (the read's deadline came first while they
   * waited or were on the wire), with how many reads in a row: they go first in their rank next read,
   * most missed first, so every request is read within a bounded number of scans (see `#order`). Bounded by the
   * plans in use (`#releasePlan`).
   */
  readonly #missedTurns = new Map<string, number>();
  /**
   * Units of the last read none of whose requests had a turn in it (nothing sent, no health rule applied): a unit
   * never asked among them goes with the units in good health next read (see `#order`).
   */
  #starvedUnits = new Set<number>();
  readonly #learner: Pick<ModbusReadPlanner, "refused" | "learnBarrier">;
  /** Which exception splits a read request (see `ModbusSplitOptions.splitCode`); built once, not per request. */
  readonly #splitCode: ModbusSplitOptions["splitCode"];
  readonly #compiled = new WeakMap<ModbusReadPlan, readonly ModbusTagDecoder[]>();
  readonly #alignmentListeners = new Set<(change: ModbusAnswerStreamChange) => void>();
  /**
   * Reads answered, most recent first, one per block (at most {@link PROVEN_READS}): a fence reads only inside one
   * of them (an address range the device answered), so it is never refused for reading past the device's map
   * (see `#fenceFor`; on RTU only its unit's).
   */
  readonly #provenReads: ModbusReadRequest[] = [];
  /**
   * Where a fence read larger than the reads that answered was refused (`refusedKey`: unit, area, address): no
   * fence grows from there again (a read past the end of the device's map, adv12s H2). Bounded by `PROVEN_READS`.
   */
  readonly #refusedFences = new Set<string>();
  /** On TCP, a fence got no answer and no read answered since: the next fence reads at its own request. */
  #fenceAtRequest = false;
  /**
   * The answer shape (`shapeOf`) of each request block of the plans in use (keyed by `blockKey`, of every unit and
   * scan group): a probe's size avoids them all. Bounded by the plans in use: a block leaves it when no plan in use
   * has it (`#usePlan`).
   */
  readonly #plannedShapes = new Map<string, string>();
  /** How many plans in use have each block of `#plannedShapes`. */
  readonly #plannedUses = new Map<string, number>();
  /**
   * The plan in use for each tag array read (the planner caches one per array, replaced when it learns), in a
   * holder so that the array's collection releases it too (`#plansCollected`).
   */
  readonly #plansInUse = new WeakMap<readonly Tag[], { plan: ModbusReadPlan }>();
  readonly #plansCollected = new FinalizationRegistry<{ plan: ModbusReadPlan }>((holder) =>
    this.#releasePlan(holder.plan),
  );
  /** The unit of the last fence sent. */
  #fenceUnit: number | undefined;
  /** When (clock ms) the answer stream was last found possibly shifted. */
  #misalignedAt: number | undefined;

  /** @throws KilnValidationError naming each bad option. */
  constructor(options: ModbusDriverOptions) {
    this.#options = parseOrThrow(modbusDriverOptionsSchema, options, "Modbus driver options");
    const transport = this.#options.transport;
    this.#target = modbusTarget(transport);
    this.name = this.#options.name ?? `modbus:${this.#target}`;
    this.#clock = this.#options.clock ?? new SystemClock();
    this.#logger = (this.#options.logger ?? silentLogger).child({ driver: this.name });
    this.#lifecycle = new ConnectionLifecycle({
      name: this.name,
      clock: this.#clock,
      ...(this.#options.random ? { random: this.#options.random } : {}),
      onListenerError: (error) => this.#logger.error({ error }, "status listener failed"),
      // An accepted TCP connection (or an opened serial port) proves nothing: the reconnect backoff resets only
      // after the connection answered and stayed up (adv12 M3; see ConnectionLifecycle.reconnect).
      proofNeedsAnswer: true,
    });
    this.#lifecycle.onStatusChange(({ from, to, reason }) =>
      this.#logger.info({ from, to, reason }, "modbus driver status"),
    );
    this.#units = new ModbusUnitHealthMap(this.#options.unitHealth, this.#clock, this.#logger, this.#options.random);
    const unitHealth = this.#options.unitHealth;
    this.#blocks = new EndpointHealth({
      clock: this.#clock,
      offlineAfter: unitHealth.offlineAfter,
      probeBackoff: {
        initialDelayMs: unitHealth.probeInitialDelayMs,
        maxDelayMs: unitHealth.probeMaxDelayMs,
        jitter: 0.2,
      },
      ...(this.#options.random ? { random: this.#options.random } : {}),
    });
    this.#clientFactory =
      this.#options.clientFactory ??
      (transport.kind === "rtu"
        ? () => createModbusRtuClient({ requestTimeoutMs: this.#options.requestTimeoutMs })
        : () =>
            createModbusTcpClient({
              requestTimeoutMs: this.#options.requestTimeoutMs,
              frameCheck: transport.frameCheck,
              quietGapMs: transport.frameQuietGapMs,
            }));
    this.#maxConsecutiveTimeouts = this.#options.maxConsecutiveTimeouts ?? (transport.kind === "tcp" ? 3 : 0);
    const planner = this.#options.planner;
    this.#planner = new ModbusReadPlanner({
      limits: planner,
      forbidden: planner.forbidden,
      defaultUnitId: this.#options.unitId,
      relearnAfterMs: planner.relearnAfterMs,
      learnAfterRefusals: planner.learnAfterRefusals,
      learnRefusalSpanMs: planner.learnRefusalSpanMs,
      clock: this.#clock,
    });
    this.#learner = {
      refused: (item, code, proven) => {
        const before = this.#planner.learned.poisoned.length;
        this.#planner.refused(item, code, proven);
        if (this.#planner.learned.poisoned.length > before) {
          this.#logger.warn(
            { area: item.area, address: item.address, unitId: item.unitId, exception: code },
            "modbus address refused; reporting it bad until its next probe",
          );
        }
      },
      learnBarrier: (left, right) => this.#planner.learnBarrier(left, right),
    };
    const splitOn = this.#options.planner.splitOnExceptions;
    this.#splitCode = (error) => {
      const failure = modbusFailureOf(error);
      return typeof failure === "number" && splitOn.includes(failure) && !TRANSIENT_MODBUS_EXCEPTIONS.has(failure)
        ? failure
        : undefined;
    };
    this.#writer = new ModbusWriter(this.#options.write, this.#options.byteOrder, {
      request: (unitId, operation, what, signal, shape) =>
        this.#request(unitId, operation, what, signal, {
          ...this.#guarded(unitId, shape, shape.split("/")[0]!),
          ...this.#writeFence(unitId, shape),
        }),
      read: (unitId, area, address, count, what, signal, again) =>
        this.#readGuarded({ unitId, area, address, count, items: [] }, what, signal, again),
    });
    this.#queue = new ModbusRequestQueue({
      clock: this.#clock,
      timeoutMs: this.#options.requestTimeoutMs,
      interRequestDelayMs: this.#options.interRequestDelayMs,
      maxInFlight: this.#options.maxInFlight,
      // RTU answers carry no transaction id, and a TCP gateway to a serial line may stamp a late answer with
      // the newest request's id: after a timeout the line stays quiet for another request timeout before a
      // request of the same shape, so a late answer is never taken for that one's answer. On TCP the shape
      // leaves the unit out (`#guarded`): a gateway may stamp a late answer with the newest request's unit too.
      lateAnswerGuardMs: transport.kind === "rtu" || transport.lateAnswerGuard ? this.#options.requestTimeoutMs : 0,
      onAlignment: (change) => this.#alignmentChanged(change),
      onFenceTimeout: (error) => this.#fenceTimedOut(error),
      // A busy RTU device ignores the requests it gets while it sends a late answer: its fence waits for the bound.
      fenceAfterLateBound: transport.kind === "rtu",
      // `transport.separateShapes` (TCP with the guard, on by default): ids cannot be trusted behind a transparent
      // gateway, so one extra answer frame would shift every later answer of its shape onto the next request of that
      // shape; never two such back to back (ADR 0041, amendment fix12d) until the connection's peer proves that its
      // answers carry their own ids (two reads together, fix12e).
      separateShapes: this.#separating(),
      // RTU answers carry no id: the client's answer-time rule (fix12c) ends a shift only while the host reads in
      // time, so for a minute after any anomaly a read of another size goes after 8 of one shape in a row (fix12h).
      boundShapeRuns: transport.kind === "rtu",
      // The id proof's two reads in one TCP segment (fix12f).
      holdWrites: () => this.#client?.holdWrites?.() ?? (() => undefined),
      // Only TCP: a new connection proves that no answer of the old one comes (a serial line outlives its port).
      ...(transport.kind === "tcp" && transport.lateAnswerGuard && this.#options.reconnect.enabled
        ? { resyncAfterMs: transport.lostAnswerResyncMs, onResync: (reason: string) => this.#resync(reason) }
        : {}),
    });
  }

  /**
   * Whether the driver trusts the order of the answers on its connection (see docs/drivers/modbus.md,
   * "Transparent gateways"): `aligned: false` from an anomaly (a timeout, an answer that did not fit, an
   * answer nobody waited for, a connection lost with requests on the wire) until a fence's own answer proved
   * that no older answer can come any more; meanwhile no read or write is sent before that fence. `anomalies`
   * counts them since the driver was created; the state is kept across reconnects.
   */
  get answerStream(): ModbusAnswerStream {
    const { aligned, reason, anomalies, strays } = this.#queue.alignment;
    return {
      aligned,
      reason,
      anomalies,
      strays,
      ...(this.#misalignedAt === undefined ? {} : { since: this.#misalignedAt }),
    };
  }

  /**
   * Calls `listener` when the answer stream is found possibly shifted and when a fence proves it aligned again
   * (see {@link ModbusDriver.answerStream}); returns a disposer. A listener that throws is logged.
   */
  onAnswerStreamChange(listener: (change: ModbusAnswerStreamChange) => void): Disposer {
    this.#alignmentListeners.add(listener);
    return () => {
      this.#alignmentListeners.delete(listener);
    };
  }

  #alignmentChanged(change: ModbusAlignmentChange): void {
    const at = this.#clock.now();
    this.#misalignedAt = change.aligned ? undefined : at;
    if (change.aligned) this.#logger.info({ reason: change.reason }, "modbus answer stream proven aligned again");
    else
      this.#logger.warn(
        { reason: change.reason },
        "modbus answer stream may be shifted; nothing is trusted before a fence's own answer",
      );
    for (const listener of [...this.#alignmentListeners]) {
      try {
        listener({ ...change, at });
      } catch (error) {
        this.#logger.error({ error }, "answer stream listener failed");
      }
    }
  }

  /** The current connection state. */
  get status(): DriverStatus {
    return this.#lifecycle.status;
  }

  /**
   * Requests this driver keeps on the wire at once: the `maxInFlight` option, or 1 after the device was seen
   * to drop pipelined requests (a unit answered later requests but not an earlier one).
   */
  get maxInFlight(): number {
    return this.#queue.maxInFlight;
  }

  /** What the planner has learned about the device (poisoned addresses, barriers). */
  get learned(): ModbusLearnedMap {
    return this.#planner.learned;
  }

  /**
   * The health of every unit (slave id) this driver has talked to or has tags on, by unit id: online or offline
   * (or `not-yet-answered`, from the first read of a plan with tags on it until it answers or fails),
   * failures in a row, last error, and when an offline unit is probed next. The connection's own
   * state is {@link ModbusDriver.status}; a unit that stops answering never changes it while
   * other units answer.
   */
  units(): ModbusUnitHealth[] {
    return this.#units.list();
  }

  /**
   * The driver port's endpoint health: each unit seen as `unit <id>` (state, failures in a row, last
   * error, next probe), and each request block backed off as `unit <id> <block>` (e.g. `unit 1 HR100-109`,
   * always `offline`): a block that timed out `unitHealth.offlineAfter` reads in a row while its unit
   * answered other requests; and, while answers are not trusted (see {@link ModbusDriver.answerStream}),
   * `answer stream` (`offline`, the anomaly in `lastError`; on Modbus RTU not while the only units not trusted
   * are offline, which their own entries say); and each shape held by an answer owed by a device
   * that answers out of order as `held shape <shape>` (`offline`, `nextProbeAt`: when the link is resynchronised
   * to release it, see `transport.lostAnswerResyncMs`); and each request block not read within the read's deadline
   * `unitHealth.offlineAfter` reads in a row (`offline`, "not read within the read's deadline for 3 scans in a
   * row"). A unit of a read plan that has not answered yet is listed too (`online`, no failure, `lastError` "not
   * answered yet ..."). The core shows them in `system.health().acquisition.endpoints` and reports
   * the system `degraded`, naming the unit or block, while one is offline.
   */
  endpoints(): EndpointHealthSnapshot[] {
    const blocks = this.#blocks.snapshot().filter((block) => block.state === "offline");
    const stream = this.answerStream;
    const { resyncAt } = this.#queue.alignment;
    // On RTU each unit is its own answer stream (scope `String(unitId)`, see `#guarded`). A dead unit's scope stays
    // suspect (its probes carry no fence; its fence is owed before its next real read): while the unit is offline its
    // own entry says so, and listing "answer stream" for it too was a permanent false alarm that never came back
    // online (adv12x MEDIUM-1). Listed while any scope of a unit not offline (or with no unit) is suspect.
    const rtu = this.#options.transport.kind === "rtu";
    const listed =
      !stream.aligned &&
      (!rtu || this.#queue.unalignedScopes.some((scope) => scope === "" || !this.#units.offline(Number(scope))));
    const misaligned: EndpointHealthSnapshot[] = !listed
      ? []
      : [
          {
            endpoint: "answer stream",
            state: "offline",
            consecutiveFailures: 1,
            lastError: `answers not trusted until a fence proves them aligned: ${stream.reason}`,
            ...(stream.since === undefined ? {} : { lastFailureAt: stream.since }),
            // No fence could be built: when the stream is resynchronised (see the queue's `alignment.resyncAt`).
            ...(resyncAt === undefined ? {} : { nextProbeAt: resyncAt }),
          },
        ];
    const held: EndpointHealthSnapshot[] = this.#queue.held.map((hold) => ({
      endpoint: `held shape ${hold.shape ?? "(any)"}`,
      state: "offline",
      consecutiveFailures: 1,
      lastError:
        `requests of this shape are not sent: the answer to ${hold.owedBy} has not come and the device answers out of order; ` +
        (hold.releaseAt === undefined
          ? "held until it comes"
          : `released by resynchronising the link at ${new Date(hold.releaseAt).toISOString()} unless it comes first`),
      lastFailureAt: hold.since,
      ...(hold.releaseAt === undefined ? {} : { nextProbeAt: hold.releaseAt }),
    }));
    const named = this.#options.unitHealth.offlineAfter;
    const starved: EndpointHealthSnapshot[] = [];
    for (const [block, reads] of this.#missedTurns) {
      if (reads < named) continue;
      starved.push({
        endpoint: block,
        state: "offline",
        consecutiveFailures: reads,
        lastError: `not read within the read's deadline for ${reads} scans in a row (the scan's requests take longer than its deadline)`,
      });
    }
    return [...this.#units.snapshot(), ...blocks, ...starved, ...misaligned, ...held];
  }

  /**
   * A shape held by an answer a device that answers out of order never sent passed its forget horizon
   * (`transport.lostAnswerResyncMs`): closes the connection and reconnects, after which no answer of the old
   * connection can come (ADR 0041, amendment fix12v).
   */
  #resync(reason: string): void {
    const client = this.#client;
    if (!client) return;
    this.#connectionLost(client, reason);
  }

  /**
   * Calls `listener` when a unit goes offline (`unitHealth.offlineAfter` timeouts in a row) or answers
   * again; returns a disposer. Independent of any event bus: wire it to yours, or to an alarm.
   * A listener that throws is logged and does not affect the driver.
   */
  onUnitStatusChange(listener: (change: ModbusUnitStatusChange) => void): Disposer {
    return this.#units.onChange(listener);
  }

  /** Calls `listener` on every connection state change; returns a disposer. */
  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    return this.#lifecycle.onStatusChange(listener);
  }

  /**
   * The read plan for `tags` (cached per array), for diagnostics: `plan.requests.length` is the number of
   * requests per scan.
   * @throws KilnValidationError naming every tag whose address is missing or invalid.
   */
  readPlan(tags: readonly Tag[]): ModbusReadPlan {
    return this.#planner.plan(tags);
  }

  /**
   * Opens the connection. Resolves at once when connected; while reconnecting, resolves on the next
   * successful attempt.
   * @throws KilnError `KILN_CONNECTION_FAILED` (retryable) when the device cannot be reached,
   *   `KILN_NOT_SUPPORTED` for RTU when serial support (serialport, its native binding) does not load, `KILN_ABORTED` when `signal` aborts.
   */
  connect(signal?: AbortSignal): Promise<void> {
    if (this.status === "reconnecting") return this.#lifecycle.whenConnected(signal);
    return this.#lifecycle.connect((lifetime) => this.#open(lifetime), signal);
  }

  /** Closes the connection, stops reconnecting and fails every pending request. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close(async () => {
      const client = this.#client;
      this.#client = undefined;
      this.#queue.fail(
        new KilnError("KILN_NOT_CONNECTED", "The Modbus driver was closed.", { details: { modbus: "disconnected" } }),
      );
      if (client) await destroyClient(client);
    });
  }

  /**
   * Reads `tags` and returns one sample per tag, in order. A tag the device refuses (exception, timeout)
   * comes back with quality bad. Units are independent:
   * - requests to units in good health go first, then units never asked, then units that failed since
   *   they last answered; a unit that times out is not asked again in the same read;
   * - a read waits for at most one request timeout (plus what is left of a probe on the wire when it
   *   starts): after its first timeout (or another read's it waited behind), units not heard
   *   from yet in this read are not asked, even in good health, unless the read's deadline leaves a whole
   *   request timeout ("unit 3 not asked in this read: another request timed out first ..."); and whenever
   *   a unit of the read is in good health, units that failed (or were never asked while another failed)
   *   are not waited for: their tags are bad at once ("unit 2 failed its last 2 requests ...; probing it").
   *   A suspect unit left out of a read counts it as a failure (offline after `offlineAfter` of its reads);
   * - a request block that timed out while its unit answered others, `unitHealth.offlineAfter` reads in a
   *   row, is backed off: its tags bad without traffic ("unit 1 HR100-109: no answer in its last 3 reads
   *   ..."), read again when its probe is due, listed by {@link ModbusDriver.endpoints}; a block whose last
   *   request timed out is read after every other request;
   * - except a unit that answered before and failed only its last request (one lost answer): before any
   *   timeout in the read, and when the read's deadline leaves at least `requestTimeoutMs`, its first
   *   request goes out inline, after the units in good health, as its probe; if it answers, the unit's
   *   other requests follow and its tags are good in this read; if not, its tags are bad, the read is
   *   still in time, and the unit is not waited for again (a unit that dies costs one more request
   *   timeout, in the scan after its first);
   * - those units are probed one request at a time, behind every live request and never during a read,
   *   never awaited by a read (an offline unit whose probe is due included);
   *   an offline unit's tags are bad (`BadTimeout`, "unit 2 offline, next probe at ...") without traffic
   *   until its probe is due;
   * - when `signal` carries its caller's deadline (the core's `acquisition.timeoutMs`, see the driver
   *   kit's `signalTimeLeft`), the read returns shortly before it with the samples it has; tags not read
   *   by then are bad (`BadTimeout`, "not answered within the read's deadline").
   *
   * So a unit that has answered before gets a value on every scan, whatever number of units behind the
   * same gateway are dead; at startup the first scan may take one request timeout. A lost connection
   * rejects the whole call with a retryable `KILN_CONNECTION_FAILED`; an aborted `signal` with
   * `KILN_ABORTED` (the driver contract).
   */
  async read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    // A read of units all offline (or of learned holes only) sends nothing and answers in microtasks:
    // a caller's tight loop must still let the event loop turn.
    return afterEventLoopTurn(this.#read(requested, signal));
  }

  async #read(requested: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    this.#assertOpen();
    if (signal?.aborted) throw abortError(signal, `Modbus read of ${requested.length} tags`);
    if (requested.length === 0) return [];
    if (this.#pipelineRetryAt !== Number.POSITIVE_INFINITY) this.#retryPipelining();
    const plan = this.#planner.plan(requested);
    this.#usePlan(requested, plan);
    // The tags as planned: a caller changing its array while the read awaits must not rename the samples
    // (adv12b H1: another register's value under the new tag's name, marked good).
    const tags = requested.slice();
    const samples = new Array<Sample>(tags.length);
    const now = this.#clock.now();
    for (const [index, hole] of plan.poisoned) {
      const quality = holeQuality(hole, plan.addresses[index]!);
      samples[index] = { tag: tags[index]!.name, value: null, timestamp: now, quality };
    }
    const { order, anyHealthy, anySuspect } = this.#order(plan.requests);
    const left = signalTimeLeft(signal);
    const budget = left === undefined ? undefined : left - Math.min(DEADLINE_MARGIN_MS, left / 10);
    const state: ReadState = {
      budgetEnd: budget === undefined ? undefined : now + budget,
      probes: new Map(),
      tags,
      decoders: this.#decoders(plan, tags),
      samples,
      signal,
      silent: new Set(),
      timedOut: false,
      expired: false,
      refusals: [],
      served: new Set(),
      servedAreas: new Set(),
      blockOutcomes: [],
      timeoutsBefore: this.#timeouts,
      turns: new Set(),
    };
    const deferred = new Map<number, ModbusReadRequest>();
    const defer = (request: ModbusReadRequest, why: Quality): void => {
      this.#markBad(state, request, why);
      if (!deferred.has(request.unitId)) deferred.set(request.unitId, request);
    };
    // Workers take the requests in order; with maxInFlight 1 this is one request after the other,
    // with more the queue keeps that many on the wire.
    const pending = order.values();
    const worker = async (): Promise<void> => {
      for (const request of pending) {
        if (state.expired) return;
        state.turns.add(request);
        const unitId = request.unitId;
        const block = blockKey(request);
        if (state.silent.has(unitId)) {
          this.#markBad(
            state,
            request,
            quality("bad", `unit ${unitId} did not answer earlier in this read`, BAD_TIMEOUT),
          );
        } else if (!this.#blocks.shouldProbe(block)) this.#markBad(state, request, this.#blockQuality(block));
        else if (!this.#units.shouldProbe(unitId)) this.#markBad(state, request, this.#units.waitingQuality(unitId));
        else if (!this.#units.known(unitId)) {
          if (!state.timedOut && (!anySuspect || !anyHealthy)) await this.#readRequest(state, request);
          else defer(request, quality("bad", `unit ${unitId} has not answered yet; probing it`, BAD_TIMEOUT));
        } else if (this.#units.suspect(unitId) && (state.timedOut || anyHealthy || this.#units.offline(unitId))) {
          // An offline unit whose probe is due is probed in the background too, never awaited by a read (a
          // read of dead units only would otherwise wait a request timeout on each scan).
          const probe = state.probes.get(unitId) ?? this.#probeInline(state, request);
          if (probe === undefined) defer(request, this.#units.waitingQuality(unitId));
          else if (probe !== state.probes.get(unitId)) {
            state.probes.set(unitId, probe);
            await probe;
          } else {
            // Another worker is probing this unit with its first request: the rest follow its outcome.
            await probe;
            if (state.silent.has(unitId)) {
              this.#markBad(
                state,
                request,
                quality("bad", `unit ${unitId} did not answer earlier in this read`, BAD_TIMEOUT),
              );
            } else if (!this.#units.suspect(unitId)) await this.#readRequest(state, request);
            else defer(request, this.#units.waitingQuality(unitId));
          }
        } else if (
          (state.timedOut || this.#timeouts > state.timeoutsBefore) &&
          !state.served.has(unitId) &&
          !this.#timeForOneMore(state)
        ) {
          // A unit in good health not heard from in this read, after a timeout (of this read, or of another
          // read's request this one waited behind): the read waits at most one request timeout (several units
          // dying together must not cost one each); it goes first next scan.
          this.#markBad(
            state,
            request,
            quality(
              "bad",
              `unit ${unitId} not asked in this read: another request timed out first (a read waits at most one request timeout)`,
              BAD_TIMEOUT,
            ),
          );
        } else await this.#readRequest(state, request);
      }
    };
    // Probes wait while the read runs: one slipping in between two of its requests would hold the line a
    // whole request timeout in the middle of the read. Taken before the first request is queued, so the queue
    // never sees the read's first request settle (a held shape) with no read in progress (fix12aa).
    const releaseProbes = this.#queue.holdBackground();
    const workers = Math.min(this.#queue.maxInFlight, order.length);
    const work = (workers <= 1 ? worker() : Promise.all(Array.from({ length: workers }, worker))).then(() => {
      this.#learnRefusals(state);
      this.#learnBlocks(state);
    });
    try {
      if (left === undefined || budget === undefined) await work;
      else {
        if (this.#options.requestTimeoutMs >= budget) this.#warnDeadline(left);
        await this.#untilDeadline(work, state, budget);
      }
    } finally {
      releaseProbes();
    }
    this.#countTurns(order, state);
    // A suspect unit left out of this read counts it as a failure (a dead unit is named after offlineAfter of its reads).
    for (const unitId of deferred.keys()) this.#units.missedRead(unitId, now);
    this.#scheduleProbes(deferred);
    if (!state.expired) return samples;
    // The deadline came first: requests still on the wire finish in the background (their outcome
    // updates unit health), and the caller gets a copy that they cannot change any more.
    work.catch(() => undefined);
    const timestamp = this.#clock.now();
    const late = quality("bad", `not answered within the read's deadline (${Math.round(left ?? 0)} ms)`, BAD_TIMEOUT);
    return Array.from(
      samples,
      (sample, index) => sample ?? { tag: tags[index]!.name, value: null, timestamp, quality: late },
    );
  }

  /**
   * Records `plan`'s blocks' shapes (see `#plannedShapes`) once per plan, not on every read: the planner returns the
   * same plan object for the same tag array until it learns something; the plan it replaces has its blocks released.
   */
  #usePlan(tags: readonly Tag[], plan: ModbusReadPlan): void {
    const holder = this.#plansInUse.get(tags);
    if (holder?.plan === plan) return;
    for (const request of plan.requests) {
      const block = blockKey(request);
      this.#units.planned(request.unitId);
      this.#plannedUses.set(block, (this.#plannedUses.get(block) ?? 0) + 1);
      this.#plannedShapes.set(block, shapeOf(request));
    }
    if (holder === undefined) {
      const fresh = { plan };
      this.#plansInUse.set(tags, fresh);
      this.#plansCollected.register(tags, fresh);
    } else {
      const replaced = holder.plan;
      holder.plan = plan;
      this.#releasePlan(replaced);
    }
  }

  /** A plan is no longer in use: its blocks leave `#plannedShapes` unless another plan in use has them. */
  #releasePlan(plan: ModbusReadPlan): void {
    for (const request of plan.requests) {
      const block = blockKey(request);
      const uses = (this.#plannedUses.get(block) ?? 1) - 1;
      if (uses > 0) this.#plannedUses.set(block, uses);
      else {
        this.#plannedUses.delete(block);
        this.#plannedShapes.delete(block);
        this.#missedTurns.delete(block);
      }
    }
  }

  /**
   * Warns once that `requestTimeoutMs` is not below the read's deadline (less the read's margin): a request
   * that times out then always outlives the read that sent it (its tags are bad for that scan, its timeout counts afterwards).
   * Not clamped: a shorter timeout would count a live but slow unit's late answers as failures.
   */
  #warnDeadline(deadlineMs: number): void {
    if (this.#deadlineWarned) return;
    this.#deadlineWarned = true;
    this.#logger.warn(
      { requestTimeoutMs: this.#options.requestTimeoutMs, deadlineMs: Math.round(deadlineMs) },
      `requestTimeoutMs (${this.#options.requestTimeoutMs} ms) is not below the read's deadline ` +
        `(${Math.round(deadlineMs)} ms, the core's acquisition.timeoutMs): a unit that does not answer is found ` +
        "out only after the read returned; set requestTimeoutMs below acquisition.timeoutMs",
    );
  }

  /**
   * Reads `request`, the first of a unit that answered before and failed only its last request (one lost
   * answer), inline as the unit's probe, when the read has not seen a timeout and its deadline leaves a whole request timeout:
   * a unit that answers again gets its tags good in this read, and the read still returns in time if it
   * stays silent. Otherwise (a unit that failed more, or no time) undefined: the unit is probed in the
   * background.
   */
  #probeInline(state: ReadState, request: ModbusReadRequest): Promise<void> | undefined {
    if (state.timedOut || !this.#units.lostOneAnswer(request.unitId)) return undefined;
    if (state.budgetEnd !== undefined && state.budgetEnd - this.#clock.now() < this.#options.requestTimeoutMs) {
      return undefined;
    }
    return this.#readRequest(state, request);
  }

  /**
   * Waits for `work` at most `budgetMs`; then sets `state.expired` (no further request of the read goes out)
   * and returns, so the caller gets the finished samples before its own timeout discards them all.
   */
  async #untilDeadline(work: Promise<void>, state: ReadState, budgetMs: number): Promise<void> {
    let timer: ReturnType<Clock["setTimeout"]> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = this.#clock.setTimeout(
        () => {
          state.expired = true;
          resolve();
        },
        Math.max(0, budgetMs),
      );
    });
    try {
      await Promise.race([work, expired]);
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
    }
  }

  /**
   * The read's requests in the order they go out: units in good health first (with units never asked whose
   * requests missed their turn in the last read), then units never asked, then units that failed since they last
   * answered; within each, the requests that missed their turn in the last reads first, most missed first (fair:
   * a request left out by the deadline goes before those that were read). The read then waits for at most one request
   * timeout: after its first timeout only units in good health are asked, the others are deferred
   * (answered bad and probed, not awaited). Before it, suspects are deferred while a unit of the read is
   * in good health (a read of one unit, or of units that all failed, waits for them) unless they failed
   * only once (probed inline, see `#probeInline`), and units never asked are deferred while both a
   * suspect and a unit in good health are in the read.
   */
  #order(requests: readonly ModbusReadRequest[]): {
    order: readonly ModbusReadRequest[];
    anyHealthy: boolean;
    anySuspect: boolean;
  } {
    const ranks = new Map<number, number>();
    let anyHealthy = false;
    let anySuspect = false;
    let anyUnknown = false;
    const missed = (request: ModbusReadRequest): number =>
      this.#missedTurns.size === 0 ? 0 : (this.#missedTurns.get(blockKey(request)) ?? 0);
    // A unit never asked because earlier requests used the last read's time goes with the units in good health:
    // behind them it would never be asked (adv12 M2). Not one whose request was on the wire at the deadline (it
    // may be dead: its outcome says so before it is asked again).
    const starved = this.#starvedUnits;
    for (const request of requests) {
      const unitId = request.unitId;
      if (ranks.has(unitId)) continue;
      const rank = this.#units.suspect(unitId) ? 2 : this.#units.known(unitId) || starved.has(unitId) ? 0 : 1;
      ranks.set(unitId, rank);
      if (rank === 0) anyHealthy = true;
      else if (rank === 2) anySuspect = true;
      else anyUnknown = true;
    }
    // Blocks whose last request timed out go after every other request, so a unit's live blocks are read
    // (and prove the unit alive) before its silent one. The sort is stable: when every request has the same
    // rank the plan's order stands, so it is not sorted.
    const silent = (request: ModbusReadRequest): number =>
      this.#silentBlocks.size > 0 && this.#silentBlocks.has(blockKey(request)) ? 3 : 0;
    const rank = (request: ModbusReadRequest): number => Math.max(ranks.get(request.unitId)!, silent(request));
    // Within a rank, the blocks that missed their turn go first, most missed first (stable: the plan's order
    // otherwise), so a slow unit's requests cannot keep a fast unit's, or its own later ones, out of every read.
    const mixed =
      Number(anyHealthy) + Number(anySuspect) + Number(anyUnknown) > 1 ||
      requests.some((request) => missed(request) > 0) ||
      (this.#silentBlocks.size > 0 && requests.some((request) => silent(request) > 0));
    const sorted = mixed ? [...requests].sort((a, b) => rank(a) - rank(b) || missed(b) - missed(a)) : requests;
    // Separating shapes (TCP with the guard): the queue sends a read of another size between two requests of one
    // answer shape; ordering the blocks so shapes alternate (within a rank) saves most of those (fix12d). Only once
    // this connection's id proof failed (fix12e): before it the first same-shape pair sends the proof instead of a
    // separator, and a native device that passes it keeps the plan's order (and which blocks a timeout leaves
    // unread in a scan) for good.
    const order =
      this.#separating() && this.#queue.shapesSeparated && this.#queue.idProof === "failed"
        ? alternateShapes(sorted, (request) => shapeOf(request), mixed ? rank : () => 0, this.#queue.lastShape)
        : sorted;
    return { order, anyHealthy, anySuspect };
  }

  /**
   * Counts which requests of `order` missed their turn in this read (see `#missedTurns`); a block that missed
   * `unitHealth.offlineAfter` reads in a row is logged once and named by {@link ModbusDriver.endpoints}.
   */
  #countTurns(order: readonly ModbusReadRequest[], state: ReadState): void {
    if (state.turns.size === order.length && this.#missedTurns.size === 0 && this.#starvedUnits.size === 0) return;
    const named = this.#options.unitHealth.offlineAfter;
    const hadTurn = new Set<number>();
    for (const request of state.turns) hadTurn.add(request.unitId);
    this.#starvedUnits = new Set(order.map((request) => request.unitId).filter((unitId) => !hadTurn.has(unitId)));
    for (const request of order) {
      const block = blockKey(request);
      // A request still on the wire when the deadline came missed its turn too: else the one at the deadline's
      // edge could be the same every scan.
      if (state.turns.has(request) && request.items.every((item) => state.samples[item.index] !== undefined)) {
        this.#missedTurns.delete(block);
        continue;
      }
      const missed = (this.#missedTurns.get(block) ?? 0) + 1;
      this.#missedTurns.set(block, missed);
      if (missed === named) {
        this.#logger.warn(
          { block, reads: missed },
          `modbus ${block} not read within the read's deadline for ${missed} reads in a row: the scan's requests take longer than its deadline (raise acquisition.timeoutMs, lower requestTimeoutMs, or split the scan group)`,
        );
      }
    }
  }

  /**
   * Probes the units a read deferred, one request at a time and behind every live request (the queue's
   * background lane), units never asked before first, then round-robin by unit id. Probes follow each
   * other while they are answered; after one times out the next waits for the next read, so a silent
   * unit holds the line at most one request timeout per read.
   */
  #scheduleProbes(deferred: ReadonlyMap<number, ModbusReadRequest>): void {
    // Merged, not replaced: reads of several scan groups each defer their own units.
    for (const [unitId, request] of deferred) this.#probeCandidates.set(unitId, request);
    this.#nextProbe();
  }

  #nextProbe(): void {
    if (this.#probing || this.#probeCandidates.size === 0 || this.status !== "connected") return;
    const candidates = [...this.#probeCandidates.keys()]
      .filter((unitId) => this.#units.shouldProbe(unitId))
      .sort((a, b) => a - b);
    const unknown = candidates.filter((unitId) => !this.#units.known(unitId));
    const pool = unknown.length > 0 ? unknown : candidates.filter((unitId) => this.#units.suspect(unitId));
    const unitId = pool.find((id) => id > this.#lastProbed) ?? pool[0];
    if (unitId === undefined) return;
    // A read of another size than every block the scans read (of any unit): a late answer to it (the unit was
    // silent) has another shape than each of them, so on TCP with the guard (where the unit is not part of the
    // shape, see `#guarded`) a dead unit's probe does not hold back the reads of the units that answer (adv12z:
    // the size next to the dead unit's own block was the live unit's block's). Any answer proves the unit
    // alive, an exception too (the other size may run past the unit's map).
    const { request, collides } = probeRead(this.#probeCandidates.get(unitId)!, this.#plannedShapes);
    if (collides) {
      this.#logger.warn(
        { unitId, probe: describeRead(request) },
        "every probe size has the shape of a block the scans read: probing with the least used one, whose late answer may hold those reads back",
      );
    }
    this.#probeCandidates.delete(unitId);
    this.#lastProbed = unitId;
    this.#probing = true;
    this.#request(unitId, (client) => readArea(client, request), `probe ${describeRead(request)}`, undefined, {
      background: true,
      ...this.#guarded(unitId, shapeOf(request), request.area),
      // No fence: a probe's data is never delivered, and a held late answer taken by it only says what is
      // true (the unit answers), so a dead unit's probes do not pay one.
    }).then(
      () => {
        this.#probing = false;
        this.#nextProbe();
      },
      (error: unknown) => {
        this.#probing = false;
        // An exception is an answer: the next probe may follow. A timeout waits for the next read.
        if (typeof modbusFailureOf(error) === "number") this.#nextProbe();
      },
    );
  }

  /** One compiled decoder per tag of a plan, built once per plan. */
  #decoders(plan: ModbusReadPlan, tags: readonly Tag[]): readonly ModbusTagDecoder[] {
    let decoders = this.#compiled.get(plan);
    if (!decoders) {
      decoders = plan.addresses.map((address, index) =>
        compileDecoder(address, address.order ?? this.#options.byteOrder, tags[index]!),
      );
      this.#compiled.set(plan, decoders);
    }
    return decoders;
  }

  /**
   * Writes `value` to `tag`, encoded from the tag's type, byte order and scale, and checked first by the
   * same rules as the control system's writes (core's `checkTagValue`): `1.5` to an `int16` tag is refused,
   * never rounded.
   * @throws KilnError `KILN_TAG_NOT_WRITABLE` (read-only tag or area; nothing is sent),
   *   `KILN_VALIDATION` (wrong type, a fraction for an integer tag; nothing is sent),
   *   `KILN_OUT_OF_RANGE` (value outside the tag's range or the Modbus type; nothing is sent), `KILN_WRITE_REJECTED` (the
   *   device's own exception, 1-6 or 8), `KILN_TIMEOUT` (no answer, or a gateway's exception: 10, 11 or a code Modbus
   *   does not define, after which the write may have taken effect), `KILN_CONNECTION_FAILED`, `KILN_NOT_CONNECTED`, `KILN_DEVICE_ERROR`, `KILN_ABORTED`. Every error
   *   from the device path carries `details.sent`: `false` when no write request went on the wire (the read half of a
   *   read-modify-write failed, the fence before it proved nothing, the caller aborted while it waited, the connection
   *   was down; the device's value is untouched, retry as is), `true` when one did (it may have taken effect).
   */
  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    // A write to an offline unit is refused without traffic: a caller's tight retry loop must still
    // let the event loop turn (as read()).
    return afterEventLoopTurn(this.#write(tag, value, signal));
  }

  async #write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    const address = this.#planner.address(tag);
    if (tag.access !== "readwrite" || !isWritableArea(address.area)) {
      throw new KilnError(
        "KILN_TAG_NOT_WRITABLE",
        tag.access !== "readwrite"
          ? `Tag "${tag.name}" is read-only (access "${tag.access}").`
          : `Tag "${tag.name}" is in the ${address.area} area, which Modbus clients cannot write; use a coil or holding register.`,
        { details: { tag: tag.name, address: formatModbusAddress(address) } },
      );
    }
    const problem = checkTagValue(tag, value);
    if (problem !== undefined) {
      const { range } = tag;
      if (range && typeof value === "number" && Number.isFinite(value) && (value < range.min || value > range.max)) {
        throw new KilnError("KILN_OUT_OF_RANGE", `Cannot write ${tag.name}: ${problem}.`, {
          details: { tag: tag.name, value, min: range.min, max: range.max },
        });
      }
      throw new KilnValidationError(`write to ${tag.name}`, [{ path: "value", message: problem }]);
    }
    this.#assertOpen();
    const raw = rawFromEngineering(value, address, { tag: tag.name });
    const unexact = writeReadsBack(value, raw, address, address.order ?? this.#options.byteOrder, tag);
    if (unexact !== undefined) {
      throw new KilnValidationError(`write to ${tag.name}`, [{ path: tag.name, message: unexact }]);
    }
    const unitId = address.unitId ?? this.#options.unitId;
    await this.#writer.write(tag, address, raw, unitId, signal);
  }

  #assertOpen(): void {
    const status = this.status;
    if (status === "connected" || status === "reconnecting") return;
    throw new KilnError(
      "KILN_NOT_CONNECTED",
      status === "closed"
        ? `Modbus driver "${this.name}" is closed.`
        : `Modbus driver "${this.name}" is not connected; call connect() first.`,
      { details: { driver: this.name, status } },
    );
  }

  /**
   * Runs one request through the queue with the right unit id; failures become Kiln errors. When `signal`
   * aborts, the call rejects at once (`KILN_ABORTED`, or the signal's own Kiln error) and a request not yet
   * sent is dropped; one already on the wire runs to its answer or timeout in the background, and that
   * outcome still counts in the unit's and the link's health (a dead unit is marked offline even when every
   * caller gives up before its request timeout).
   */
  #request<T>(
    unitId: number,
    operation: (client: ModbusClient) => Promise<T>,
    what: string,
    signal?: AbortSignal,
    request: ModbusRequestOptions = {},
  ): Promise<T> {
    return raceAbort(this.#counted(unitId, operation, what, signal, request), signal, what);
  }

  /** `#request` without the caller's abort: settles with the wire's outcome, counted in health. */
  async #counted<T>(
    unitId: number,
    operation: (client: ModbusClient) => Promise<T>,
    what: string,
    signal: AbortSignal | undefined,
    request: ModbusRequestOptions,
  ): Promise<T> {
    let client: ModbusClient | undefined;
    const sequence = ++this.#sequence;
    // Set when the request goes out: whether others may be on the wire with it, and the unit's answers so far.
    let pipelined = false;
    let answeredBefore = 0;
    try {
      const result = await this.#queue.run(
        async () => {
          client = this.#client;
          if (!client || this.status !== "connected") {
            throw modbusDisconnectedError(`not connected (${this.status}) when ${what} was due`);
          }
          pipelined = this.#queue.maxInFlight > 1;
          answeredBefore = this.#answers.get(unitId) ?? 0;
          client.setID(unitId);
          try {
            return await operation(client);
          } catch (error) {
            throw kilnErrorFromModbus(error, what);
          }
        },
        what,
        signal,
        request,
      );
      this.#consecutiveTimeouts = 0;
      this.#answered(unitId);
      if (client === this.#client) this.#lifecycle.answered();
      return result;
    } catch (error) {
      const failure = modbusFailureOf(error);
      // Never sent: its fence proved nothing (a silent fence is counted when it times out, see #fenceTimedOut).
      if (KilnError.is(error) && error.details.sent === false) throw error;
      // A probe's timeout is not counted: it went out between reads (see holdBackground).
      if (failure === "timeout" && request.background !== true) this.#timeouts++;
      if (failure === "timeout" && pipelined && (this.#answers.get(unitId) ?? 0) > answeredBefore) {
        // The unit answered other requests while this one, sent with others in flight, waited: it drops
        // pipelined requests (many answer only the earliest), which says nothing about the unit's or the
        // link's health. Fall back to one at a time before counting anything against the unit.
        if (this.#queue.maxInFlight > 1) {
          this.#pipeliningDropped(unitId, "answered some requests in flight but not others", true);
        }
        throw error;
      }
      if (typeof failure === "number") {
        // The gateway answered, so the link is alive; 10, 11 and codes Modbus does not define say the unit behind it
        // did not (gatewayMayAnswerLate).
        this.#consecutiveTimeouts = 0;
        if (client === this.#client) this.#lifecycle.answered();
        if (gatewayMayAnswerLate(failure)) this.#units.failed(unitId, error);
        else {
          this.#answers.set(unitId, (this.#answers.get(unitId) ?? 0) + 1);
          this.#units.answered(unitId);
        }
      }
      if (failure === undefined && KilnError.is(error, "KILN_DEVICE_ERROR") && client && client === this.#client) {
        if (error.details.pipelineDesync === true) {
          // Answers that fit no request in flight: the device's transaction ids cannot be trusted, for good.
          // The fault is pipelining, not the unit: fall back without counting it against the unit.
          if (this.#queue.maxInFlight > 1) {
            this.#pipeliningDropped(unitId, "answered with transaction ids that do not match", false);
          }
          throw error;
        }
        // An exception not trusted (maybe another request's late answer, see ModbusRequestOptions.exceptionShape)
        // or an answer taken while the stream may be shifted says the link works and nothing about this unit.
        if (typeof error.details.unprovenException === "number" || error.details.unaligned === true) {
          this.#consecutiveTimeouts = 0;
          throw error;
        }
        // An answer that does not fit its request (CRC, unit, length, echo): the unit is not answering usefully.
        this.#units.failed(unitId, error);
      }
      if (failure === "timeout" && client && client === this.#client) {
        this.#units.failed(unitId, error);
        this.#linkTimeout(client, sequence);
      } else if (failure === "disconnected" && client && client === this.#client) {
        this.#connectionLost(client, "the transport is not open");
      }
      throw error;
    }
  }

  /**
   * A fence (on TCP a read at the unit that answered last, on RTU at its request's unit, sent only after the late
   * bound of the unit's owed answers: its silence is the unit's own) got no answer: counted against that unit and
   * the link like any timeout, and the next fence goes to its own request's unit. The request it went before is not
   * counted (never sent), so a unit that never answers is counted once per fence.
   */
  #fenceTimedOut(error: unknown): void {
    const client = this.#client;
    if (!client || this.#fenceUnit === undefined) return;
    this.#timeouts++;
    this.#units.failed(this.#fenceUnit, error);
    // On TCP the next fence reads in its own request's range until a read answers again (see `#fenceFor`).
    this.#fenceAtRequest = true;
    this.#linkTimeout(client, this.#sequence);
  }

  /** A timeout of the request numbered `sequence` on `client`: counted against the link, which may be lost. */
  #linkTimeout(client: ModbusClient, sequence: number): void {
    if (this.#linkSuspected(sequence)) this.#consecutiveTimeouts++;
    if (client.isOpen === false) this.#connectionLost(client, "the transport closed without notice");
    else if (this.#maxConsecutiveTimeouts > 0 && this.#consecutiveTimeouts >= this.#maxConsecutiveTimeouts) {
      this.#connectionLost(
        client,
        `${this.#consecutiveTimeouts} requests in a row timed out with no answer from any unit`,
      );
    }
  }

  #answered(unitId: number): void {
    this.#units.answered(unitId);
    this.#answers.set(unitId, (this.#answers.get(unitId) ?? 0) + 1);
  }

  /**
   * Whether a timeout of the request numbered `sequence` is evidence against the link itself: only while no
   * unit is in good health (any unit that answers since its last failure proves the link works), and once
   * per batch of pipelined requests (those sent before the last counted timeout fail together).
   */
  #linkSuspected(sequence: number): boolean {
    if (this.#units.anyAnswering()) return false;
    if (sequence <= this.#lastCountedSequence) return false;
    this.#lastCountedSequence = this.#sequence;
    return true;
  }

  /**
   * Falls back to one request in flight. A dropped request may have been one slow answer, so unless
   * `retry` is false (wrong transaction ids) pipelining is tried again after {@link PIPELINE_RETRY_MS}.
   */
  #pipeliningDropped(unitId: number, how: string, retry: boolean): void {
    const from = this.#queue.maxInFlight;
    this.#queue.maxInFlight = 1;
    this.#pipelineRetryAt = retry ? this.#clock.now() + PIPELINE_RETRY_MS : Number.POSITIVE_INFINITY;
    this.#logger.warn(
      { unitId, maxInFlight: from },
      `the device ${how} with ${from} requests in flight; sending one request at a time ` +
        (retry ? `for ${PIPELINE_RETRY_MS / 60_000} minutes` : "from now on: leave maxInFlight at 1 for this device"),
    );
  }

  /** Tries pipelining again once its retry time has come (see `#pipeliningDropped`). */
  #retryPipelining(): void {
    if (this.#pipelineRetryAt > this.#clock.now()) return;
    this.#pipelineRetryAt = Number.POSITIVE_INFINITY;
    this.#queue.maxInFlight = this.#options.maxInFlight;
    this.#logger.info({ maxInFlight: this.#options.maxInFlight }, "trying pipelined requests again");
  }

  /** Reads one request, splitting it on an address exception; a lost connection rejects. */
  async #readRequest(state: ReadState, request: ModbusReadRequest): Promise<void> {
    const outcomes = await readModbusRequest(
      request,
      (part) => this.#readGuarded(part, describeRead(part), state.signal),
      {
        splitCode: this.#splitCode,
        learner: {
          // A refusal a split proved is learned at once; the others wait for the end of the read (#learnRefusals).
          refused: (item, code, proven) =>
            proven ? this.#learner.refused(item, code, true) : state.refusals.push({ item, code }),
          learnBarrier: this.#learner.learnBarrier,
        },
      },
    );
    const timedOut = outcomes.find((outcome) => !outcome.ok && modbusFailureOf(outcome.error) === "timeout");
    state.blockOutcomes.push({ request, timeout: timedOut && !timedOut.ok ? timedOut.error : undefined });
    for (const outcome of outcomes) {
      if (outcome.ok) {
        state.served.add(outcome.request.unitId);
        state.servedAreas.add(`${outcome.request.unitId}`);
        state.servedAreas.add(`${outcome.request.unitId}|${outcome.request.area}`);
        this.#planner.served(outcome.request);
        this.#decode(state, outcome.request, outcome.data);
        continue;
      }
      const error = outcome.error;
      const failure = modbusFailureOf(error);
      if (failure === "timeout") {
        state.silent.add(outcome.request.unitId);
        state.timedOut = true;
      }
      // A tag-level failure (exception, timeout, bad reply) is a quality; anything else (the connection,
      // the caller's abort) fails the read.
      if (typeof failure === "number" || failure === "timeout" || KilnError.is(error, "KILN_DEVICE_ERROR")) {
        this.#markBad(state, outcome.request, qualityFromModbusError(error));
      } else throw error;
    }
  }

  /**
   * Block health from this read: a request that timed out while its unit answered another request of the
   * read counts against its block (after `unitHealth.offlineAfter` in a row the block is backed off: its
   * tags bad without traffic, one request probing it on the unit probe backoff); one answered clears it.
   * A block that timed out while its unit answered nothing says nothing about the block (the unit may be
   * dead): it only goes last in the next read, so the unit's other blocks are asked first.
   */
  #learnBlocks(state: ReadState): void {
    for (const { request, timeout } of state.blockOutcomes) {
      const block = blockKey(request);
      if (timeout === undefined) {
        this.#silentBlocks.delete(block);
        if (this.#blocks.get(block)) this.#blocks.success(block);
        continue;
      }
      this.#silentBlocks.add(block);
      if (!state.served.has(request.unitId)) continue;
      const before = this.#blocks.state(block);
      if (this.#blocks.failure(block, timeout) === "offline" && before === "online") {
        this.#logger.warn(
          { unitId: request.unitId, block, nextProbeAt: this.#blocks.get(block)?.nextProbeAt },
          `modbus ${block} did not answer ${this.#options.unitHealth.offlineAfter} reads in a row while the unit answered others; reporting its tags bad until its next probe`,
        );
      }
    }
  }

  /** The quality of a tag in a backed-off block: "unit 1 HR100-109: no answer in its last 3 reads ...". */
  #blockQuality(block: string): Quality {
    const entry = this.#blocks.get(block);
    const next = new Date(entry?.nextProbeAt ?? this.#clock.now()).toISOString();
    const reads = entry?.consecutiveFailures ?? 0;
    return quality(
      "bad",
      `${block}: no answer in its last ${reads} reads while the unit answered others; next probe at ${next}`,
      BAD_TIMEOUT,
    );
  }

  /**
   * Reads `request` through the late-answer guard: its shape (`#guarded`) and, on TCP with the guard, its fence.
   * Every read whose answer is used goes through here: a scan's reads and the read half of a bit write's
   * read-modify-write (a probe, whose data is never used, has no fence).
   */
  #readGuarded(
    request: ModbusReadRequest,
    what: string,
    signal: AbortSignal | undefined,
    again = false,
  ): Promise<boolean[] | number[]> {
    return this.#request(
      request.unitId,
      async (client) => {
        const data = await readArea(client, request);
        this.#proven(request);
        return data;
      },
      what,
      signal,
      {
        ...this.#guarded(request.unitId, shapeOf(request), request.area),
        ...this.#fenceFor(request.unitId, request),
        ...(again ? { unseparated: true } : {}),
      },
    );
  }

  /**
   * The queue's shape of a request to `unitId` (see `ModbusRequestOptions.shape`) from the shape of its answer
   * `shape` (function and size), and the shape of an exception answer to it (`kind`: its function). On RTU the
   * unit id is part of both (the frame carries it and the client checks it); on TCP with the late-answer guard
   * it is not: a gateway to a serial line may stamp a late answer with the whole MBAP header of the newest
   * request, unit id included, so a late answer of unit 2 fits a request of the same function and size to unit 3.
   */
  #guarded(
    unitId: number,
    shape: string,
    kind: string,
  ): Pick<ModbusRequestOptions, "shape" | "exceptionShape" | "scope" | "unit" | "serialBytes"> {
    const transport = this.#options.transport;
    const unitless = transport.kind === "tcp" && transport.lateAnswerGuard;
    const unit = unitless ? "" : `${unitId}/`;
    // On RTU each unit is its own answer stream (`ModbusRequestOptions.scope`): fenced and proven on its own.
    const scope = transport.kind === "rtu" ? { scope: String(unitId) } : {};
    const serialBytes = serialBytesOf(shape);
    // Unit-less shapes carry the unit beside them: a held shape blocking another unit resynchronises at once.
    return {
      shape: `${unit}${shape}`,
      exceptionShape: `${unit}${kind}`,
      ...scope,
      // Always: the queue keeps answer times per unit (fix12k, adv12l); a held shape's reach is bounded by it only
      // when the shape leaves the unit out (a shape with the unit in it never blocks another unit's request).
      unit: unitId,
      // Its size: the answer times are judged per byte (a unit's large blocks beside its short reads, fix12n).
      ...(serialBytes === undefined ? {} : { serialBytes }),
    };
  }

  /**
   * The queue's shape of an answer no request took (see `#guarded`, `shapeOf` and modbus-writer's `writeShape`):
   * a read's area and byte count, a write's echo, or an exception's function. An unknown function has no shape.
   */
  #answerShape(answer: ModbusStrayAnswer): ModbusAnswerShape {
    const { pdu, unitId } = answer;
    const functionCode = pdu[0] ?? 0;
    const base = functionCode & 0x7f;
    const area = READ_AREAS[base];
    const kind = area ?? `fc${base}`;
    if (functionCode & 0x80) return { exceptionShape: this.#guarded(unitId, kind, kind).exceptionShape! };
    let shape: string | undefined;
    if (area !== undefined && pdu.length >= 2) shape = `${area}/${pdu[1]}`;
    else if (pdu.length >= 5) {
      const address = pdu.readUInt16BE(1);
      const value = pdu.readUInt16BE(3);
      if (functionCode === 5) shape = `fc5/${address}/${String(value === 0xff00)}`;
      else if (functionCode === 6 || functionCode === 15 || functionCode === 16) shape = `${kind}/${address}/${value}`;
      else if (functionCode === 22 && pdu.length >= 7) shape = `fc22/${address}/${value}/${pdu.readUInt16BE(5)}`;
    }
    return shape === undefined ? {} : { shape: this.#guarded(unitId, shape, kind).shape! };
  }

  /**
   * On TCP with the late-answer guard, and on RTU: the fence for a request at `unitId` reading `request`'s area and
   * address (see `ModbusRequestOptions.fence`): a read inside a read that answered (`#provenReads`, most recent
   * first: at its address, its size or a smaller one; before any answered, inside `request`'s own range), whose
   * answer's shape no answer still on its way has (`fenceReads`; an exception answer is as good unless one of its
   * function may still come). None fits (every proven size unsure): the queue resynchronises on a backoff
   * (ADR 0041, amendment fix12s). On TCP any unit's answer proves the
   * stream: with the guard the unit is not part of a shape, and a dead unit's fence would only time out. On RTU
   * only the unit's own (its scope, see `#guarded`): the client takes an answer only from the unit asked, so a late
   * answer of one unit fits only that unit's requests, and only that unit's answer to the fence proves that it is
   * done with it (a device busy sending a late answer ignores the requests it gets meanwhile, so an answer later
   * than the late bound would otherwise be taken by the next request of its shape: ADR 0041, amendment fix12w).
   * It is sent patiently (`ModbusClient.patientNext`, TCP): older answers stamped with its id are dropped. Its
   * silence counts against its unit (see `#fenceTimedOut`); on RTU its own answer counts for its unit (the unit
   * asked answered), on TCP nowhere.
   */
  #fenceFor(
    unitId: number,
    request: Pick<ModbusReadRequest, "area" | "address" | "count">,
  ): Pick<ModbusRequestOptions, "fence"> {
    const transport = this.#options.transport;
    const rtu = transport.kind === "rtu";
    if (!rtu && !transport.lateAnswerGuard) return {};
    return {
      fence: (unsure) => {
        let proven = rtu ? this.#provenReads.filter((read) => read.unitId === unitId) : this.#provenReads;
        // After a fence's silence (TCP), its unit may have died: at the request's own unit, like before any answer.
        if (!rtu && this.#fenceAtRequest) proven = [];
        // Nothing answered yet: the request's own range, or a larger read where it starts.
        const bases = proven.length > 0 ? proven : [{ ...request, unitId, items: [] }];
        for (const { read: fence, inside } of fenceReads(bases, this.#refusedFences)) {
          const { shape, exceptionShape, serialBytes } = this.#guarded(fence.unitId, shapeOf(fence), fence.area);
          if (unsure(shape!)) continue;
          return {
            shape: shape!,
            ...(exceptionShape === undefined ? {} : { exceptionShape }),
            ...(serialBytes === undefined ? {} : { serialBytes }),
            unit: fence.unitId,
            run: () => {
              const client = this.#client;
              if (!client || this.status !== "connected")
                return Promise.reject(
                  modbusDisconnectedError("before the check read that proves the answers in step could be sent"),
                );
              client.setID(fence.unitId);
              this.#fenceUnit = fence.unitId;
              client.patientNext?.();
              return readArea(client, fence).then(
                (data) => {
                  this.#fenceAnswered(fence.unitId, rtu);
                  return data;
                },
                (raw: unknown) => {
                  // Typed like a request's (an exception code in `details.modbus`): the queue tells an exception
                  // from an answer that did not fit by it (before, every refused fence counted as a mismatch).
                  const error = kilnErrorFromModbus(raw, describeRead(fence));
                  if (typeof modbusFailureOf(error) === "number") {
                    this.#fenceAnswered(fence.unitId, rtu);
                    // A read reaching past what answered was refused: never grown from there again.
                    if (!inside) {
                      if (this.#refusedFences.size >= PROVEN_READS) this.#refusedFences.clear();
                      this.#refusedFences.add(refusedKey(fence));
                    }
                  }
                  throw error;
                },
              );
            },
          };
        }
        return undefined;
      },
    };
  }

  /**
   * A fence got an answer of its own (data or exception): the link answers (adv12s M1: on TCP a fence's answer
   * counted for no unit, so timeouts around it took the link down while it answered), and on RTU its unit does
   * (the client takes an answer only from the unit asked).
   */
  #fenceAnswered(unitId: number, rtu: boolean): void {
    this.#consecutiveTimeouts = 0;
    if (rtu) this.#units.answered(unitId);
  }

  /**
   * Whether requests of one answer shape are never sent back to back until the connection's ids are proven
   * (`transport.separateShapes`, fix12d; on by default since fix12e).
   */
  #separating(): boolean {
    const transport = this.#options.transport;
    return transport.kind === "tcp" && transport.lateAnswerGuard && transport.separateShapes;
  }

  /** Records `request` as answered (see `#provenReads`). */
  #proven(request: ModbusReadRequest): void {
    this.#fenceAtRequest = false;
    const index = this.#provenReads.findIndex(
      (read) =>
        read.unitId === request.unitId &&
        read.area === request.area &&
        read.address === request.address &&
        read.count === request.count,
    );
    if (index === 0) return;
    if (index > 0) this.#provenReads.splice(index, 1);
    this.#provenReads.unshift(request);
    if (this.#provenReads.length > PROVEN_READS) this.#provenReads.pop();
  }

  /** The fence of a write whose echo has `shape` (`fc<code>/<address>/...`, see modbus-writer): a read there. */
  #writeFence(unitId: number, shape: string): Pick<ModbusRequestOptions, "fence"> {
    const [functionCode, address] = shape.split("/");
    const area = functionCode === "fc5" || functionCode === "fc15" ? "coil" : "holding-register";
    return this.#fenceFor(unitId, { area, address: Number(address), count: 1 });
  }

  /** Whether the read's deadline leaves a whole request timeout (never without a deadline). */
  #timeForOneMore(state: ReadState): boolean {
    return state.budgetEnd !== undefined && state.budgetEnd - this.#clock.now() >= this.#options.requestTimeoutMs;
  }

  /**
   * Counts the read's unproven refusals (items refused alone, no part of their split read) towards learning
   * them as holes, unless their unit refused every address it was asked in this read and more than one:
   * a unit that refuses everything (misconfigured, starting up, a gateway mapping it wrong) has a unit-level
   * problem, which says nothing about any one address, so its tags stay bad with the exception and are read
   * again on every scan instead of being learned as holes until their probe. A single tag refused alone
   * read after read is still learned (`learnAfterRefusals`).
   */
  #learnRefusals(state: ReadState): void {
    const { refusals, servedAreas } = state;
    for (const key of servedAreas) this.#refusingAreas.delete(key);
    if (refusals.length === 0) return;
    // Per unit and per area of a unit: more than one address refused and none of them served in this read is the
    // unit (or the area: a device reloading its holding-register map while it serves its inputs) refusing, not
    // one hole per address.
    const refusedBy = new Map<string, Set<string>>();
    const count = (key: string, item: RefusedItem): void => {
      const addresses = refusedBy.get(key) ?? new Set<string>();
      addresses.add(`${item.area}|${item.address}|${item.count}`);
      refusedBy.set(key, addresses);
    };
    for (const { item } of refusals) {
      count(`${item.unitId}`, item);
      count(`${item.unitId}|${item.area}`, item);
    }
    const refusing = (key: string): boolean => !servedAreas.has(key) && refusedBy.get(key)!.size > 1;
    for (const [key, addresses] of refusedBy) {
      if (!refusing(key) || this.#refusingAreas.has(key)) continue;
      this.#refusingAreas.add(key);
      const [unitId, area] = key.split("|");
      this.#logger.warn(
        { unitId: Number(unitId), ...(area === undefined ? {} : { area }), addresses: addresses.size },
        `modbus unit ${unitId} refused every ${area === undefined ? "address" : `${area} address`} it was asked; not learning them as holes (check the unit's configuration, or it is starting up)`,
      );
    }
    for (const { item, code } of refusals) {
      if (!refusing(`${item.unitId}`) && !refusing(`${item.unitId}|${item.area}`)) {
        this.#learner.refused(item, code, false);
      }
    }
  }

  #decode(state: ReadState, request: ModbusReadRequest, data: boolean[] | number[]): void {
    const timestamp = this.#clock.now();
    const { tags, decoders, samples } = state;
    const start = request.address;
    // An answer its client could not prove is this request's own (a repeat of the previous answer, ModbusAnswerRepeats).
    const doubt = answerDoubt(data);
    const shown = doubt === undefined ? GOOD : quality("uncertain", doubt, QualityCodes.Uncertain);
    for (const item of request.items) {
      const index = item.index;
      const decoded = decoders[index]!(data, item.address - start);
      samples[index] = decoded.ok
        ? { tag: tags[index]!.name, value: decoded.value, timestamp, quality: shown }
        : { tag: tags[index]!.name, value: null, timestamp, quality: decoded.quality };
    }
  }

  #markBad(state: ReadState, request: ModbusReadRequest, quality: Quality): void {
    const timestamp = this.#clock.now();
    for (const item of request.items) {
      state.samples[item.index] = { tag: state.tags[item.index]!.name, value: null, timestamp, quality };
    }
  }

  /** Opens a client; `signal` (the call's and the lifetime's) aborts the attempt. */
  async #open(signal: AbortSignal): Promise<void> {
    const client = await openModbusClient(
      {
        transport: this.#options.transport,
        clientFactory: this.#clientFactory,
        clock: this.#clock,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        driver: this.name,
        onLost: (lost, reason) => this.#connectionLost(lost, reason),
      },
      signal,
    );
    this.#client = client;
    this.#consecutiveTimeouts = 0;
    this.#queue.forgetIdProof();
    if (this.#options.transport.kind === "tcp") this.#queue.newConnection();
    // The ledger and the answer stream's alignment are kept: behind a gateway the serial line outlives the
    // TCP connection, and an answer to a request of the old connection may come on this one.
    client.onStray?.((reason, answer) => {
      if (client !== this.#client) return;
      // A well-formed answer nobody took (late, duplicate) still shows that the link answers (adv12s M1).
      if (answer !== undefined) this.#consecutiveTimeouts = 0;
      // RTU: a frame makes its unit's answer stream suspect and pays nothing (see `strayOnLine`).
      if (this.#options.transport.kind === "rtu") {
        this.#logger.debug({ reason }, "modbus bytes no request was waiting for");
        this.#queue.strayOnLine(reason, answer && this.#guarded(answer.unitId, "", "").scope);
      } else if (answer === undefined) this.#queue.unasked(reason);
      else if (answer.refused) this.#queue.unfit(this.#answerShape(answer));
      else this.#queue.unasked(reason, this.#answerShape(answer));
    });
    // What was learned may not hold for the device behind the new connection (replaced, reconfigured).
    this.#planner.forget();
    this.#blocks.reset();
    this.#silentBlocks.clear();
  }

  #connectionLost(client: ModbusClient, reason: string): void {
    if (client !== this.#client || this.status !== "connected") return;
    this.#client = undefined;
    void destroyClient(client);
    this.#queue.fail(modbusDisconnectedError(reason));
    this.#logger.warn({ reason }, "modbus connection lost");
    const { enabled, ...backoff } = this.#options.reconnect;
    if (!enabled || this.#lifecycle.signal.aborted) {
      this.#lifecycle.setStatus("disconnected", reason);
      return;
    }
    void this.#lifecycle.reconnect({
      reason,
      backoff,
      delayFirst: true,
      attempt: (lifetime) => this.#open(lifetime),
      onAttemptFailed: (error, attempt) => {
        if (KilnError.is(error, "KILN_NOT_SUPPORTED")) return "stop";
        this.#logger.debug({ attempt, error }, "modbus reconnect attempt failed");
        return "retry";
      },
      connectedReason: (attempts) => `reconnected after ${attempts} attempt${attempts === 1 ? "" : "s"}`,
    });
  }
}

interface ReadState {
  /** When the read's time budget ends (ms on the driver's clock), if its caller gave a deadline. */
  readonly budgetEnd: number | undefined;
  /** Inline probes of units that failed only their last request, by unit (see `#probeInline`). */
  readonly probes: Map<number, Promise<void>>;
  readonly tags: readonly Tag[];
  readonly decoders: readonly ModbusTagDecoder[];
  readonly samples: Sample[];
  readonly signal: AbortSignal | undefined;
  /** Units that timed out during this read: not asked again in it. */
  readonly silent: Set<number>;
  /** A request of this read timed out: from now on only units in good health are asked. */
  timedOut: boolean;
  /** The read's deadline passed: no further request goes out, unfinished tags are bad. */
  expired: boolean;
  /** Items refused alone that no split proved, counted at the end of the read (`#learnRefusals`). */
  readonly refusals: { item: RefusedItem; code: number }[];
  /** Units that served at least one request of this read. */
  readonly served: Set<number>;
  /** The same as keys `<unit>` and `<unit>|<area>` (each area of a unit that served a request of this read). */
  readonly servedAreas: Set<string>;
  /** Each request of the plan read in this read: whether it timed out (and with what), for block health. */
  readonly blockOutcomes: { request: ModbusReadRequest; timeout: unknown }[];
  /** The driver's timeout count when the read started (see `ModbusDriver.#timeouts`). */
  readonly timeoutsBefore: number;
  /** Requests of the read that got their turn (sent, or answered bad by a health rule; see `#countTurns`). */
  readonly turns: Set<ModbusReadRequest>;
}

/** An item the device refused, as the planner's learner is told of it. */
type RefusedItem = Pick<ModbusReadItem, "unitId" | "area" | "address" | "count">;

const BAD_TIMEOUT = QualityCodes.BadTimeout;

/** A read returns this long (ms, at most a tenth of its time) before its caller's deadline. */
const DEADLINE_MARGIN_MS = 100;

/** After a dropped pipelined request, one request at a time for this long (ms) before trying again. */
const PIPELINE_RETRY_MS = 5 * 60_000;

/** "modbus exception 2 (illegal data address) at HR266@100; learned, next probe at <ISO time>". */
function holeQuality(hole: ModbusLearnedHole, address: ModbusAddress): Quality {
  const refused = qualityFromModbus(hole.exceptionCode);
  const where = formatModbusAddress({ ...address, unitId: hole.unitId });
  const next = new Date(hole.nextProbeAt).toISOString();
  return quality("bad", `${refused.reason ?? "refused"} at ${where}; learned, next probe at ${next}`, refused.code);
}

/**
 * A read at `request`'s unit of another size than it (one register or 8 bits fewer, or more for the smallest),
 * whose answer cannot pass for `request`'s: a fence (see `fenceSizes`). It starts at
 * `request`'s address, or as much lower as a larger read needs to end within the address space (0-65535: a
 * read of 2 registers at 65535 would ask past its end).
 */
function otherSize(request: ModbusReadRequest): ModbusReadRequest {
  const count = isBitArea(request.area)
    ? request.count > 8
      ? request.count - 8
      : request.count + 8
    : request.count > 1
      ? request.count - 1
      : 2;
  const address = Math.min(request.address, MODBUS_ADDRESS_SPACE - count);
  return { ...request, address, count, items: [] };
}

/**
 * A probe of `request`'s unit (see `ModbusDriver.#nextProbe`): a read at its area and address (or as much lower
 * as the size needs to end within the address space) of the first size of `fenceSizes(request)` whose answer
 * shape is no planned block's (`planned`: block → `shapeOf`, the unit's own block included), so a late answer
 * to it cannot hold back a scan's read, whatever unit. When every size collides (`collides`), the size whose
 * shape the fewest blocks have.
 */
function probeRead(
  request: ModbusReadRequest,
  planned: ReadonlyMap<string, string>,
): { request: ModbusReadRequest; collides: boolean } {
  const uses = new Map<string, number>();
  for (const shape of planned.values()) uses.set(shape, (uses.get(shape) ?? 0) + 1);
  uses.set(shapeOf(request), (uses.get(shapeOf(request)) ?? 0) + 1);
  let best: { count: number; uses: number } | undefined;
  for (const count of fenceSizes(request)) {
    const used = uses.get(shapeOf({ area: request.area, count })) ?? 0;
    if (best === undefined || used < best.uses) best = { count, uses: used };
    if (used === 0) break;
  }
  const count = best!.count;
  const address = Math.min(request.address, MODBUS_ADDRESS_SPACE - count);
  return { request: { ...request, address, count, items: [] }, collides: best!.uses > 0 };
}

/**
 * Fence reads for `bases` (reads that answered, most recent first; see `ModbusDriver.#fenceFor`), in order of
 * preference, each with whether it stays inside what answered:
 * 1. inside a base: at its address, every smaller size of another answer shape (not a base's own: a planned
 *    block's shape, which the fence's answer, if late on a device answering out of order, would hold);
 * 2. when the bases give no other size (one-register reads): a larger read at the most recent base's address
 *    (`fenceSizes`), unless one from there was refused (`refused`, see `refusedKey`): it may reach past the map;
 * 3. by address: a read from one base's address to the end of another of the same unit and area (both ends
 *    answered; refused if the map has a hole between them), unless one from there was refused.
 * A read past the device's map is refused (exception 2), and a refused fence proves nothing while a refusal of its
 * function may still come: a fence of 2 registers at HR99, the last register of a stock pymodbus map, stopped a
 * live unit for good (adv12s H2).
 */
function fenceReads(
  bases: readonly ModbusReadRequest[],
  refused: ReadonlySet<string>,
): { read: ModbusReadRequest; inside: boolean }[] {
  const reads: { read: ModbusReadRequest; inside: boolean }[] = [];
  const seen = new Set<string>();
  const add = (base: ModbusReadRequest, address: number, count: number, inside: boolean) => {
    const read = { unitId: base.unitId, area: base.area, address, count, items: [] };
    const key = `${base.unitId}/${shapeOf(read)}`;
    if (seen.has(key)) return;
    seen.add(key);
    reads.push({ read, inside });
  };
  for (const base of bases) {
    const step = isBitArea(base.area) ? 8 : 1;
    // Not its own size: that is a planned block's shape, which a fence's owed answer would hold.
    seen.add(`${base.unitId}/${shapeOf(base)}`);
    for (let count = base.count - 1; count >= 1; count = count > step ? count - step : count - 1)
      add(base, base.address, count, true);
  }
  const last = bases[0];
  if (last !== undefined && !refused.has(refusedKey(last)))
    for (const count of fenceSizes(last))
      if (count > last.count) add(last, Math.min(last.address, MODBUS_ADDRESS_SPACE - count), count, false);
  for (const from of bases)
    for (const to of bases) {
      if (to.unitId !== from.unitId || to.area !== from.area || to.address <= from.address) continue;
      const count = to.address + to.count - from.address;
      if (count <= (isBitArea(from.area) ? 2000 : 125) && !refused.has(refusedKey(from)))
        add(from, from.address, count, false);
    }
  return reads;
}

/** Where a fence read was refused: its unit, area and address (see `ModbusDriver.#refusedFences`). */
function refusedKey(read: Pick<ModbusReadRequest, "unitId" | "area" | "address">): string {
  return `${read.unitId}/${read.area}/${read.address}`;
}

/**
 * Sizes of fence reads for `request` (see `ModbusDriver.#fenceFor`), in order of preference: smaller first (within
 * the block the device serves), then larger; each gives another byte count than `request` and than each other.
 */
function fenceSizes(request: Pick<ModbusReadRequest, "area" | "count">): number[] {
  const bits = isBitArea(request.area);
  const step = bits ? 8 : 1;
  const max = bits ? 2000 : 125;
  const sizes: number[] = [];
  const first = otherSize({ ...request, address: 0, unitId: 0, items: [] }).count;
  sizes.push(first);
  for (let count = request.count - step; count >= 1; count -= step) if (count !== first) sizes.push(count);
  for (let count = request.count + step; count <= max; count += step) if (count !== first) sizes.push(count);
  return sizes;
}

/** The area each read function code (1-4) reads. */
const READ_AREAS: Readonly<Partial<Record<number, ModbusArea>>> = {
  1: "coil",
  2: "discrete-input",
  3: "holding-register",
  4: "input-register",
};

/** Reads answered that a fence may read inside (see `ModbusDriver.#provenReads`). */
const PROVEN_READS = 16;

/** Addresses in each Modbus area (0-65535). */
const MODBUS_ADDRESS_SPACE = 0x10000;

/** How block health names a request: `unit 1 HR100-109`. */
function blockKey(request: ModbusReadRequest): string {
  return `unit ${request.unitId} ${formatModbusBlock(request.area, request.address, request.count)}`;
}

/** The shape of a read's answer: area and byte count (with the unit, see `ModbusDriver.#guarded`, what tells two answers apart). */
/**
 * `requests` reordered so that no two in a row have the same `shape` where another order allows it (ADR 0041,
 * amendment fix12d): each next one is the first left of the lowest rank left whose shape differs from the one before
 * (`last`: the shape sent just before the first), else the first of that rank. Stable otherwise; ranks keep their order.
 */
function alternateShapes<T>(
  requests: readonly T[],
  shape: (request: T) => string,
  rank: (request: T) => number,
  last: string | undefined,
): readonly T[] {
  if (requests.length < 2 && (requests.length === 0 || shape(requests[0]!) !== last)) return requests;
  const left = [...requests];
  const out: T[] = [];
  let previous = last;
  while (left.length > 0) {
    const lowest = rank(left[0]!);
    let index = left.findIndex((request) => rank(request) === lowest && shape(request) !== previous);
    if (index < 0) index = 0;
    const [next] = left.splice(index, 1);
    out.push(next!);
    previous = shape(next!);
  }
  return out;
}

function shapeOf(request: Pick<ModbusReadRequest, "area" | "count">): string {
  const bytes = isBitArea(request.area) ? Math.ceil(request.count / 8) : request.count * 2;
  return `${request.area}/${bytes}`;
}

/**
 * The bytes on a serial line (RTU framing: unit id, PDU, CRC) of a request whose answer has the unit-less `shape`
 * (`shapeOf`, or modbus-writer's `writeShape`) and of that answer (see `ModbusRequestOptions.serialBytes`): a read
 * is 8 and 5 plus its data bytes; a write's request carries its data and its answer is an echo. Undefined for a
 * shape of no known request.
 */
function serialBytesOf(shape: string): ModbusSerialBytes | undefined {
  const [kind, first, second] = shape.split("/");
  const count = Number(kind?.startsWith("fc") === true ? second : first);
  if (!Number.isInteger(count) || count < 0) return undefined;
  switch (kind) {
    case "fc5":
    case "fc6":
      return { request: 8, answer: 8 };
    case "fc15":
      return { request: 9 + Math.ceil(count / 8), answer: 8 };
    case "fc16":
      return { request: 9 + 2 * count, answer: 8 };
    case "fc22":
      return { request: 10, answer: 10 };
    default:
      return Object.values(READ_AREAS).includes(kind as ModbusArea) ? { request: 8, answer: 5 + count } : undefined;
  }
}

function describeRead(request: ModbusReadRequest): string {
  const unit = isBitArea(request.area) ? "bits" : "registers";
  return `read of ${request.count} ${unit} at ${request.area} ${request.address} (unit ${request.unitId})`;
}

async function readArea(client: ModbusClient, request: ModbusReadRequest): Promise<boolean[] | number[]> {
  switch (request.area) {
    case "coil":
      return (await client.readCoils(request.address, request.count)).data;
    case "discrete-input":
      return (await client.readDiscreteInputs(request.address, request.count)).data;
    case "input-register":
      return (await client.readInputRegisters(request.address, request.count)).data;
    case "holding-register":
      return (await client.readHoldingRegisters(request.address, request.count)).data;
  }
}
