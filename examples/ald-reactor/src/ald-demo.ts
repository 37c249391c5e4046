import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import {
  type AlarmDefinitionInput,
  type Clock,
  type ControlSystem,
  createControlSystem,
  KilnError,
  type Principal,
  type ProcessResult,
  QualityCodes,
  type Sample,
  SystemClock,
} from "@kiln/core";
import { type AggregateValue, type Metrics } from "@kiln/core/driver-kit";
import { parseOrThrow, type SampleBucket } from "@kiln/core/driver-kit";
import { type TimerHandle } from "@kiln/core";
import { OpcuaDriver } from "@kiln/plc-opcua";
import { PostgresStore } from "@kiln/store-postgres";
import { z } from "zod";
import { AldReactorPlc, aldTags } from "./ald-reactor-plc";
import { serveAldSystem } from "./ald-serve";
import { cycleStatistics, cycleWindows, type CycleStatistics } from "./ald-cycles";
import { aldRecipe, phaseOfStep, type AldPhase } from "./ald-recipe";
import {
  auditCounts,
  linkDownText,
  summaryItems,
  worstPulseText,
  type AldDemoSummary,
  type AlarmRaiseRecord,
  type AuditCounts,
  type BreakerEventRecord,
} from "./ald-summary";
import { ProgressLine, type ProgressOutput } from "./progress-line";
import { DEFAULT_REACTOR_PARAMETERS } from "./reactor-model";
import { buildRunReport, type ReportMarker, type ReportPhase, type ReportPoint, type ReportTable } from "./report";
import {
  alarmOccurrences,
  cycleTimeline,
  linkOutages,
  valveSpans,
  worstPulse,
  type AlarmOccurrence,
  type CycleTimelineRow,
  type LinkEvent,
  type StepRecord,
} from "./run-analysis";

const positive = z.number().positive();
const milliseconds = z.number().int().nonnegative();

const optionsSchema = z
  .object({
    cycles: z.number().int().min(2).max(5_000).default(30),
    fault: z.boolean().default(false),
    outDir: z.string().min(1).default("out"),
    timing: z
      .object({
        pulseMs: z.number().int().min(5).max(5_000).default(150),
        purgeMs: z.number().int().min(10).max(60_000).default(500),
        holdMs: milliseconds.default(3_000),
        heatUpMs: milliseconds.default(2_000),
        outageMs: milliseconds.default(2_000),
        ackDelayMs: milliseconds.default(300),
      })
      .strict()
      .prefault({}),
    reactor: z
      .object({
        basePressureMbar: positive.optional(),
        tmaPressureMbar: positive.optional(),
        h2oPressureMbar: positive.optional(),
        tmaDriftPerCycle: z.number().min(0).optional(),
        riseTimeConstantMs: positive.optional(),
        purgeTimeConstantMs: positive.optional(),
        heaterTimeConstantMs: positive.optional(),
      })
      .strict()
      .prefault({}),
    alarms: z
      .object({ hiMbar: positive.max(10).default(1.2), hihiMbar: positive.max(10).default(2.0) })
      .strict()
      .refine((alarms) => alarms.hihiMbar > alarms.hiMbar, { message: "must exceed hiMbar", path: ["hihiMbar"] })
      .prefault({}),
    databaseUrl: z.string().min(1).optional(),
    schema: z.string().min(1).default("ald_demo"),
    output: z
      .custom<ProgressOutput>(
        (value) => typeof value === "object" && value !== null && typeof (value as ProgressOutput).write === "function",
        "must have a write(text) method, like process.stdout",
      )
      .optional(),
    progressLineMs: z.number().int().positive().default(2_000),
    trendPoints: z.number().int().min(5).max(50_000).default(1_000),
    log: z.custom<(line: string) => void>((value) => typeof value === "function", "must be a function").optional(),
    serve: z
      .object({
        port: z.number().int().min(0).max(65_535).default(4840),
        pkiDir: z.string().min(1).optional(),
        trustClientCertsDir: z.string().min(1).optional(),
        allowInsecure: z.boolean().default(false),
        until: z.custom<(endpointUrl: string) => Promise<void>>(
          (value) => typeof value === "function",
          "must be a function",
        ),
      })
      .strict()
      .optional(),
    metrics: z
      .custom<Metrics>(
        (value) =>
          typeof value === "object" &&
          value !== null &&
          ["counter", "gauge", "histogram"].every(
            (method) => typeof (value as Record<string, unknown>)[method] === "function",
          ),
        "must implement the Metrics port (counter, gauge, histogram)",
      )
      .optional(),
  })
  .strict();

/**
 * Options of {@link runAldDemo}. Everything has a default: 30 cycles of 150 ms pulses and
 * 500 ms purges (about a minute in all), on embedded PGlite, quiet.
 *
 * - `cycles`: ALD cycles, split in two blocks around the purge hold (at least 2). @default 30
 * - `fault`: stop the PLC's OPC UA server at the start of the hold and start it again
 *   `timing.outageMs` later, on the same port. @default false
 * - `outDir`: where `ald-run.html` goes, resolved against the current directory. @default "out"
 * - `timing`: `pulseMs` (150), `purgeMs` (500), `holdMs` (3000), `heatUpMs` (2000),
 *   `outageMs` (2000), `ackDelayMs` (300: how long the demo operator takes to acknowledge).
 * - `reactor`: overrides of {@link DEFAULT_REACTOR_PARAMETERS}.
 * - `alarms`: `hiMbar` (1.2) and `hihiMbar` (2.0, with an interlock) on the chamber pressure.
 * - `databaseUrl`: a PostgreSQL URL; without it the store runs on an in-memory PGlite.
 * - `schema`: the schema used on the server. @default "ald_demo"
 * - `output`: where the progress line goes (`process.stdout`). @default none
 * - `progressLineMs`: period of the progress lines when `output` is not a terminal. @default 2000
 * - `log`: where status lines go when there is no progress line. @default none
 * - `trendPoints`: the most points of the pressure trend (`history.downsample`). @default 1000
 * - `serve`: also serve the system over OPC UA (`@kiln/opcua-server`) with the demo users of
 *   `ALD_DEMO_USERS`: `port` (4840), `pkiDir` (a temporary folder), `trustClientCertsDir`,
 *   `allowInsecure` (SecurityPolicy None and anonymous viewers too), and `until(endpointUrl)`:
 *   after the recipe ends the server keeps serving until it resolves. @default none
 * - `metrics`: where the system reports its metrics (e.g. `PrometheusMetrics` of
 *   `@kiln/observability`). @default an in-memory `MemoryMetrics`
 */
export type AldDemoOptions = z.input<typeof optionsSchema>;

type ResolvedOptions = z.output<typeof optionsSchema>;

/** Scan periods of the fast (pressure, valves) and slow (heater, counter) groups, ms. */
const FAST_SCAN_MS = 50;
const PRESSURE = "chamber.pressure";
const SLOW_SCAN_MS = 200;
/** The acquisition's reconnect backoff after a lost PLC link, ms (doubling from the first to the cap). */
const RECONNECT = { initialDelayMs: 200, maxDelayMs: 1_000 } as const;

/** The demo operator: acknowledges alarms and starts the recipe. */
const OPERATOR: Principal = { id: "demo-operator", roles: ["operator"] };
/** Saves the recipe version the operator runs: operators run saved recipes (their write set was authorized at save). */
const ENGINEER: Principal = { id: "demo-engineer", roles: ["engineer"] };

/** Name of the report file written in `outDir`. */
export const ALD_REPORT_FILE = "ald-run.html";

/**
 * Runs the ALD demo end to end and returns its summary:
 *
 * 1. starts a simulated ALD reactor behind a real OPC UA server (SignAndEncrypt, user name and
 *    password, its certificate trusted explicitly by the driver);
 * 2. composes a Kiln system on it with `OpcuaDriver` and `PostgresStore`, pressure alarms
 *    (HI, and HIHI with an interlock) and logging;
 * 3. saves the ALD recipe as an engineer (`system.saveRecipe`) and runs it through
 *    `system.startRecipe` as an operator, acknowledging alarms as an operator
 *    would, optionally stopping and restarting the PLC's server mid-run (`fault`);
 * 4. stops the system (draining the logging pipeline), reads the run back from the store
 *    through the history API, and writes `outDir/ald-run.html`.
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) for bad options, naming the field.
 * @throws KilnError `KILN_CONNECTION_FAILED` when the PLC link does not come up, and the
 *   store's or driver's errors when they fail to start.
 */
export async function runAldDemo(input: AldDemoOptions = {}): Promise<AldDemoSummary> {
  const options = parseOrThrow(optionsSchema, input, "ALD demo options");
  const clock = new SystemClock();
  return new AldDemoRun(options, clock).run();
}

class AldDemoRun {
  readonly #options: ResolvedOptions;
  readonly #clock: Clock;
  readonly #cleanups: (() => Promise<void>)[] = [];
  readonly #phases: ReportPhase[] = [];
  readonly #steps: StepRecord[] = [];
  readonly #linkEvents: LinkEvent[] = [];
  readonly #markers: ReportMarker[] = [];
  readonly #raises: { record: AlarmRaiseRecord; acknowledgedAt?: number }[] = [];
  readonly #breakerEvents: BreakerEventRecord[] = [];
  readonly #pendingAcks = new Set<Promise<unknown>>();
  readonly #ackTimers = new Map<TimerHandle, () => void>();
  #acknowledged = 0;
  #interlockTrips = 0;
  #tmaStarts = 0;
  #cyclesCompleted = 0;
  /**
   * The demo's own recipe process, once `startRecipe` answered. Step events of other processes (a recipe an OPC UA
   * client starts with `--serve` after the demo's has ended) are not the demo's run: its cycles, phases and pulse
   * timing ignore them. Events before the id is known are the demo's own (one process runs at a time).
   */
  #ownProcessId: string | undefined;
  #currentStep = "starting";
  #link = "connecting";
  #linkLost = 0;
  #linkRestored = 0;
  #qualityChanges = 0;
  #fault: Promise<void> | undefined;
  #faultTimes: { stoppedAt: number; restartedAt: number } | undefined;
  #progress: ProgressLine | undefined;

  constructor(options: ResolvedOptions, clock: Clock) {
    this.#options = options;
    this.#clock = clock;
  }

  async run(): Promise<AldDemoSummary> {
    try {
      return await this.#run();
    } finally {
      this.#progress?.stop();
      for (const cleanup of this.#cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    }
  }

  async #run(): Promise<AldDemoSummary> {
    const options = this.#options;
    const clock = this.#clock;
    const startedAt = clock.now();
    const workDir = await mkdtemp(path.join(tmpdir(), "kiln-ald-demo-"));
    this.#cleanups.push(() => rm(workDir, { recursive: true, force: true }));

    const user = { userName: "kiln-demo", password: randomUUID() };
    const parameters = { ...DEFAULT_REACTOR_PARAMETERS, ...options.reactor };
    const plc = new AldReactorPlc({ parameters, users: [user], clock });
    this.#cleanups.push(() => plc.dispose());
    const storeCreated = this.#createStore(); // PGlite boots while the PLC starts
    storeCreated.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
    this.#cleanups.push(async () => (await storeCreated).release());
    await plc.start();
    this.#say(`PLC: simulated ALD reactor on OPC UA at ${plc.server.endpointUrl}`);
    const { store, kind: storeKind } = await storeCreated;
    this.#say(storeKind === "pglite" ? "Store: embedded PGlite (in memory)" : "Store: PostgreSQL at DATABASE_URL");

    const system = this.#compose(plc, store, workDir, user);
    this.#cleanups.push(() => system.stop());
    this.#record(system);
    await system.start();
    await this.#untilOnline(system);
    let serving: { readonly endpointUrl: string; readonly until: (endpointUrl: string) => Promise<void> } | undefined;
    if (options.serve) {
      const { until, pkiDir, ...serve } = options.serve;
      const server = await serveAldSystem(system, {
        ...serve,
        pkiDir: pkiDir ?? path.join(workDir, "opcua-server-pki"),
      });
      this.#cleanups.push(() => server.stop());
      serving = { endpointUrl: server.endpointUrl, until };
      this.#say(`OPC UA server: ${server.endpointUrl}`);
    }

    const cyclesBeforeHold = Math.floor(options.cycles / 2);
    const runParameters = {
      cyclesBeforeHold,
      cyclesAfterHold: options.cycles - cyclesBeforeHold,
      pulseMs: options.timing.pulseMs,
      purgeMs: options.timing.purgeMs,
      holdMs: options.timing.holdMs,
      heatUpMs: options.timing.heatUpMs,
    };
    if (options.fault) {
      system.bus.on("step-start", (event) => {
        if (this.#fault === undefined && phaseOfStep(event.path)?.kind === "hold") this.#fault = this.#outage(plc);
      });
    }
    if (options.output) {
      this.#progress = new ProgressLine({
        output: options.output,
        clock,
        lineMs: options.progressLineMs,
        read: () => {
          const pressure = system.read("chamber.pressure");
          const temperature = system.read("heater.temperature");
          return {
            cycle: this.#tmaStarts,
            cycles: options.cycles,
            step: this.#currentStep,
            ...(typeof pressure?.value === "number" ? { pressureMbar: pressure.value } : {}),
            ...(typeof temperature?.value === "number" ? { temperatureC: temperature.value } : {}),
            stale: pressure !== undefined && pressure.quality.severity !== "good",
            alarms: this.#raises.length,
            link: this.#link,
            elapsedMs: clock.now() - startedAt,
          };
        },
      });
      this.#progress.start();
    }

    await system.saveRecipe(ENGINEER, aldRecipe);
    const recipeProcess = await system.startRecipe(OPERATOR, aldRecipe, { parameters: runParameters });
    this.#ownProcessId = recipeProcess.id;
    const result = await recipeProcess.finished;
    this.#currentStep = result.status;
    this.#progress?.stop();
    this.#progress = undefined;
    await this.#fault;
    await this.#settleAcknowledgements();
    if (serving) {
      // The summary and report are made from the stopped system's history, so they follow the end of serving.
      this.#say(
        `Recipe ${result.status} after ${((result.endedAt - result.startedAt) / 1_000).toFixed(1)} s; still serving at ${serving.endpointUrl} until stopped (Ctrl-C): the summary and the report follow then`,
      );
      await serving.until(serving.endpointUrl);
    }
    const plcState = plc.state;
    await system.stop();
    const logging = system.health().logging;

    const history = await this.#readHistory(store, startedAt, clock.now() + 1);
    const outages = linkOutages(this.#linkEvents, history.to);
    const worst = worstPulse(this.#steps);
    const summary: AldDemoSummary = {
      ok: false,
      mode: options.fault ? "fault" : "normal",
      store: storeKind,
      endpointUrl: plc.server.endpointUrl,
      process: {
        id: result.processId,
        status: result.status,
        ...(result.reason === undefined ? {} : { reason: result.reason }),
        stepsCompleted: result.stepsCompleted,
        durationMs: result.endedAt - result.startedAt,
      },
      cycles: { planned: options.cycles, completed: this.#cyclesCompleted, countedByPlc: plcState.cycles },
      pulses: { tma: plcState.tmaPulses, h2o: plcState.h2oPulses },
      samples: {
        in: logging.samplesIn,
        out: logging.samplesOut,
        dropped: logging.samplesDropped,
        stored: history.stored,
        lost: Math.max(0, logging.samplesIn - history.stored),
        notGood: history.notGood,
        stale: history.stale,
      },
      pulseTiming: result.timing.pulse,
      ...(worst ? { worstPulse: worst } : {}),
      timeline: cycleTimeline(this.#steps),
      waitTiming: result.timing.wait,
      alarms: {
        raised: this.#raises.length,
        acknowledged: this.#acknowledged,
        interlockTrips: this.#interlockTrips,
        raises: this.#raises.map(({ record, acknowledgedAt }) =>
          acknowledgedAt === undefined ? record : { ...record, acknowledgedAt },
        ),
        occurrences: history.alarms,
      },
      audit: history.audit,
      breakerEvents: [...this.#breakerEvents],
      link: {
        lost: this.#linkLost,
        restored: this.#linkRestored,
        outages,
        downtimeMs: outages.reduce((sum, outage) => sum + outage.durationMs, 0),
        qualityChanges: this.#qualityChanges,
        backoff: RECONNECT,
      },
      ...(this.#faultTimes ? { fault: this.#faultTimes } : {}),
      pressure: {
        range: { from: history.from, to: history.to },
        samples: history.samples.get(PRESSURE) ?? [],
        trend: history.pressureTrend,
        cycles: history.cycles,
      },
      reportFile: path.resolve(options.outDir, ALD_REPORT_FILE),
      startedAt,
      durationMs: 0,
    };
    const finished: AldDemoSummary = {
      ...summary,
      ok:
        result.status === "completed" &&
        summary.cycles.completed === options.cycles &&
        summary.samples.lost === 0 &&
        summary.samples.dropped === 0 &&
        summary.samples.out === summary.samples.in,
      durationMs: clock.now() - startedAt,
    };
    await mkdir(options.outDir, { recursive: true });
    await writeFile(finished.reportFile, this.#report(finished, result, history, runParameters), "utf8");
    return finished;
  }

  async #createStore(): Promise<{
    store: PostgresStore;
    kind: "pglite" | "postgresql";
    release: () => Promise<void>;
  }> {
    const { databaseUrl, schema } = this.#options;
    if (databaseUrl !== undefined) {
      const store = new PostgresStore({ connectionString: databaseUrl, schema });
      return { store, kind: "postgresql", release: () => store.close() };
    }
    // The demo owns the PGlite database (the store never closes a PGlite it was given), so the
    // run can be read back after the system has stopped and closed the store.
    const pglite = await PGlite.create();
    const store = new PostgresStore({ pglite });
    return {
      store,
      kind: "pglite",
      release: async () => {
        await store.close();
        await pglite.close();
      },
    };
  }

  #compose(
    plc: AldReactorPlc,
    store: PostgresStore,
    workDir: string,
    user: { userName: string; password: string },
  ): ControlSystem {
    const { alarms } = this.#options;
    const driver = new OpcuaDriver({
      endpointUrl: plc.server.endpointUrl,
      name: "ald-plc",
      security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" },
      identity: { type: "username", ...user },
      pki: { dir: path.join(workDir, "pki"), trustedServerCertificates: [plc.server.certificateFile] },
      connectionStrategy: { maxRetry: 3, initialDelayMs: 200, maxDelayMs: 1_000, randomisationFactor: 0.1 },
      timeouts: { keepAliveMs: 1_000, requestMs: 2_000 },
    });
    const definitions: AlarmDefinitionInput[] = [
      {
        tag: "chamber.pressure",
        kind: "HI",
        setpoint: alarms.hiMbar,
        deadband: Math.min(0.2, alarms.hiMbar / 4),
        priority: 2,
        message: "Chamber pressure high: TMA dose drifting up",
      },
      {
        tag: "chamber.pressure",
        kind: "HIHI",
        setpoint: alarms.hihiMbar,
        priority: 1,
        interlock: true,
        message: "Chamber pressure very high: precursors overlapping, process tripped",
      },
    ];
    return createControlSystem({
      machineId: "ald-1",
      tags: aldTags,
      driver,
      store,
      scanGroups: { fast: { periodMs: FAST_SCAN_MS }, slow: { periodMs: SLOW_SCAN_MS } },
      acquisition: {
        timeoutMs: 2_000,
        failureThreshold: 3,
        recoveryTimeMs: 2_000,
        reconnect: RECONNECT,
      },
      logging: { maxLatencyMs: 250 },
      ...(this.#options.metrics ? { metrics: this.#options.metrics } : {}),
      alarms: definitions,
      machine: {
        safeState: [
          { tag: "valve.tma", value: false },
          { tag: "valve.h2o", value: false },
        ],
      },
    });
  }

  /** Subscribes to everything the summary and the report need. */
  #record(system: ControlSystem): void {
    const { bus } = system;
    const clock = this.#clock;
    const foreign = (processId: string): boolean =>
      this.#ownProcessId !== undefined && processId !== this.#ownProcessId;
    bus.on("step-start", (event) => {
      if (foreign(event.processId)) return;
      const phase = phaseOfStep(event.path);
      if (!phase || phase.kind === "set") return;
      this.#currentStep = phase.label;
      if (phase.kind === "tma") this.#tmaStarts++;
    });
    bus.on("step-end", (event) => {
      if (foreign(event.processId)) return;
      const phase: AldPhase | undefined = phaseOfStep(event.path);
      if (!phase || phase.kind === "set") return;
      this.#phases.push({ start: event.startedAt, end: event.at, kind: phase.kind, label: phase.label });
      this.#steps.push({
        path: event.path,
        kind: phase.kind,
        label: phase.label,
        start: event.startedAt,
        end: event.at,
        ...(event.plannedMs === undefined ? {} : { plannedMs: event.plannedMs }),
        actualMs: event.actualMs,
        ...(event.errorMs === undefined ? {} : { errorMs: event.errorMs }),
        outcome: event.outcome,
      });
      if (phase.kind === "h2o" && event.outcome === "completed") this.#cyclesCompleted++;
    });
    bus.on("alarm-raise", (event) => {
      const entry: { record: AlarmRaiseRecord; acknowledgedAt?: number } = {
        record: { at: event.at, alarmId: event.alarmId, message: event.message, value: event.value },
      };
      this.#raises.push(entry);
      this.#markers.push({
        at: event.at,
        kind: "alarm",
        label: `${event.alarmId} raised (${formatValue(event.value)} mbar)`,
        chartId: "pressure",
      });
      if (event.state !== "unacknowledged") return;
      const acknowledge = (): void => {
        const acknowledging = system
          .acknowledgeAlarm(OPERATOR, event.alarmId, "seen by the demo operator")
          .catch((error: unknown) => {
            // Already acknowledged (or gone back to normal and acknowledged): nothing to do.
            if (!KilnError.is(error, "KILN_INVALID_TRANSITION")) throw error;
          })
          .finally(() => this.#pendingAcks.delete(acknowledging));
        this.#pendingAcks.add(acknowledging);
      };
      const timer = clock.setTimeout(() => {
        this.#ackTimers.delete(timer);
        acknowledge();
      }, this.#options.timing.ackDelayMs);
      this.#ackTimers.set(timer, acknowledge);
    });
    bus.on("alarm-state-change", (event) => {
      if (event.cause !== "acknowledge") return;
      this.#acknowledged++;
      const pending = [...this.#raises].reverse().find((raise) => raise.record.alarmId === event.alarmId);
      if (pending && pending.acknowledgedAt === undefined) pending.acknowledgedAt = event.at;
      this.#markers.push({
        at: event.at,
        kind: "acknowledge",
        label: `${event.alarmId} acknowledged`,
        chartId: "pressure",
      });
    });
    bus.on("interlock-trip", (event) => {
      this.#interlockTrips++;
      this.#markers.push({ at: event.at, kind: "interlock", label: `interlock ${event.alarmId} tripped` });
      this.#say(
        `Interlock ${event.alarmId} tripped at ${formatValue(event.value)} mbar: process aborted, valves closed`,
      );
    });
    bus.on("breaker-state-change", (event) => {
      this.#breakerEvents.push({
        at: event.at,
        breaker: event.breaker,
        from: event.from,
        to: event.to,
        ...(event.reason === undefined ? {} : { reason: event.reason }),
      });
    });
    // The link markers and every outage figure are made from these events once, after the run
    // (linkOutages): the same span everywhere.
    bus.on("plc-connection-lose", (event) => {
      this.#link = "offline";
      this.#linkLost++;
      this.#linkEvents.push({ at: event.at, type: "lose" });
      this.#markers.push({ at: event.at, kind: "link-lost", label: `PLC link lost: ${event.reason}` });
      this.#say(`PLC link lost (${event.reason}); tags turn uncertain, reconnecting`);
    });
    bus.on("plc-connection-restore", (event) => {
      this.#link = "online";
      this.#linkRestored++;
      this.#linkEvents.push({ at: event.at, type: "restore" });
      const outage = linkOutages(this.#linkEvents, event.at).at(-1);
      this.#markers.push({ at: event.at, kind: "link-restored", label: `PLC link restored` });
      this.#say(`PLC link restored: ${linkDownText(outage ? [outage] : [])}`);
    });
    system.cvt.observeAll((change) => {
      if (change.previous !== undefined && change.qualityChanged) this.#qualityChanges++;
    });
  }

  async #untilOnline(system: ControlSystem): Promise<void> {
    const deadline = this.#clock.now() + 20_000;
    while (
      system.health().acquisition.link !== "online" ||
      aldTags.names.some((tag) => system.read(tag)?.quality.severity !== "good")
    ) {
      if (this.#clock.now() > deadline) {
        throw new KilnError("KILN_CONNECTION_FAILED", "The PLC link did not come up within 20 s.", {
          details: { lastError: system.health().acquisition.lastError },
        });
      }
      await this.#clock.sleep(20);
    }
    this.#link = "online";
  }

  /** Stops the OPC UA server, keeps it down for `outageMs`, and starts it again on the same port. */
  async #outage(plc: AldReactorPlc): Promise<void> {
    this.#say(`Fault: stopping the PLC's OPC UA server for ${(this.#options.timing.outageMs / 1_000).toFixed(1)} s`);
    const stoppedAt = this.#clock.now();
    await plc.server.stop();
    await this.#clock.sleep(this.#options.timing.outageMs);
    await plc.server.start();
    const restartedAt = this.#clock.now();
    this.#faultTimes = { stoppedAt, restartedAt };
    this.#say(`Fault: OPC UA server running again on ${plc.server.endpointUrl}`);
  }

  /** Acknowledges at once what the operator has not got to yet, and waits for every acknowledgement. */
  async #settleAcknowledgements(): Promise<void> {
    for (const [timer, acknowledge] of this.#ackTimers) {
      this.#clock.clearTimeout(timer);
      acknowledge();
    }
    this.#ackTimers.clear();
    await Promise.all([...this.#pendingAcks]);
  }

  async #readHistory(store: PostgresStore, from: number, to: number): Promise<History> {
    // The system closed the store on stop; open it again to read the run back.
    await store.open(aldTags.list());
    const samples = new Map<string, Sample[]>();
    let stored = 0;
    let notGood = 0;
    let stale = 0;
    for (const tag of aldTags.names) {
      const all: Sample[] = [];
      for (;;) {
        const page = await store.samples.readSamples({
          tag,
          from,
          to,
          limit: 10_000,
          ...(all.length > 0 ? { after: all.at(-1)!.timestamp } : {}),
        });
        all.push(...page);
        if (page.length < 10_000) break;
      }
      samples.set(tag, all);
      stored += all.length;
      notGood += all.filter((sample) => sample.quality.severity !== "good").length;
      stale += all.filter((sample) => sample.quality.code === QualityCodes.UncertainLastUsableValue).length;
    }
    const bucketMs = Math.max(50, Math.ceil((to - from) / 240));
    const buckets = new Map<string, SampleBucket[]>();
    for (const tag of [PRESSURE, "heater.temperature"]) {
      buckets.set(tag, await store.samples.readBuckets({ tag, from, to, bucketMs }));
    }
    // The pressure trend is drawn from the store's M4 downsample, and each cycle's statistics are
    // the store's aggregates over the cycle (OPC UA Part 13), both computed in the database.
    const pressureTrend = await store.history.downsample(PRESSURE, {
      start: from,
      end: to,
      points: this.#options.trendPoints,
    });
    const cycles = await cycleStatistics(store.history, PRESSURE, cycleWindows(this.#phases));
    // The alarm table comes from the store's alarm history (every ISA-18.2 transition, with who
    // acknowledged), not from the events the demo saw.
    const alarms = alarmOccurrences(await store.alarms.query({ from, to }));
    const audit = auditCounts(await store.audit.query({ from, to }));
    await store.close();
    return { samples, buckets, bucketMs, stored, notGood, stale, from, to, pressureTrend, cycles, alarms, audit };
  }

  #report(
    summary: AldDemoSummary,
    result: ProcessResult,
    history: History,
    runParameters: Readonly<Record<string, number>>,
  ): string {
    const points = (tag: string, samples: readonly Sample[] = history.samples.get(tag) ?? []): ReportPoint[] =>
      samples.flatMap((sample) =>
        typeof sample.value === "number"
          ? [{ t: sample.timestamp, v: sample.value, good: sample.quality.severity === "good" }]
          : [],
      );
    const { alarms } = this.#options;
    const start = new Date(summary.startedAt).toISOString().replace("T", " ").slice(0, 19);
    const valve = (tag: string): { t: number; open: boolean; good: boolean }[] =>
      (history.samples.get(tag) ?? []).flatMap((sample) =>
        typeof sample.value === "boolean"
          ? [{ t: sample.timestamp, open: sample.value, good: sample.quality.severity === "good" }]
          : [],
      );
    const worst = summary.worstPulse;
    const worstCycleRow = worst?.cycle === undefined ? [] : [worst.cycle - 1];
    return buildRunReport({
      title: `ALD run: ${aldRecipe.name} v${aldRecipe.version}, ${summary.cycles.completed} of ${summary.cycles.planned} cycles`,
      subtitle: `${start} UTC · ${summary.mode === "fault" ? "fault mode: PLC server stopped and restarted mid-run" : "normal run"} · process ${result.processId} ${result.status}`,
      range: { from: history.from, to: history.to },
      charts: [
        {
          id: "pressure",
          title: "Chamber pressure",
          unit: "mbar",
          series: [
            {
              label: PRESSURE,
              role: "primary",
              points: points(PRESSURE, history.pressureTrend),
              // Communication gaps come from every stored sample, not from the trend's picks.
              qualityPoints: points(PRESSURE),
              holdMs: FAST_SCAN_MS,
            },
          ],
          band: { bucketMs: history.bucketMs, buckets: history.buckets.get(PRESSURE) ?? [] },
          limits: [
            { label: `HI ${alarms.hiMbar}`, value: alarms.hiMbar, severity: "warning" },
            { label: `HIHI ${alarms.hihiMbar}`, value: alarms.hihiMbar, severity: "danger" },
          ],
        },
        {
          id: "temperature",
          title: "Heater temperature",
          unit: "°C",
          series: [
            {
              label: "heater.temperature",
              role: "primary",
              points: points("heater.temperature"),
              holdMs: SLOW_SCAN_MS,
            },
            { label: "heater.setpoint", role: "reference", points: points("heater.setpoint"), step: true },
          ],
          band: { bucketMs: history.bucketMs, buckets: history.buckets.get("heater.temperature") ?? [] },
        },
      ],
      pulseChart: {
        id: "valves",
        title: "Valve states as logged (open = bar)",
        lanes: [
          { label: "valve.tma", kind: "tma", pulses: valveSpans(valve("valve.tma"), history.to) },
          { label: "valve.h2o", kind: "h2o", pulses: valveSpans(valve("valve.h2o"), history.to) },
        ],
        ...(worst
          ? {
              highlight: {
                lane: worst.step.kind === "tma" ? 0 : 1,
                start: worst.openAt,
                end: worst.step.end,
                label: `worst pulse timing: ${worstPulseText(worst, history.from)}`,
              },
            }
          : {}),
      },
      phases: this.#phases,
      outages: summary.link.outages.map((outage) => ({
        start: outage.start,
        end: outage.end,
        label: linkDownText([outage]),
      })),
      markers: this.#markers,
      summary: summaryItems(summary),
      tables: [
        cycleTimelineTable(summary.timeline, history.from, worstCycleRow),
        {
          title: "Chamber pressure per cycle",
          columns: ["cycle", "from", "to", "minimum (mbar)", "maximum (mbar)", "average (mbar)", "quality"],
          rows: history.cycles.map((cycle) => [
            String(cycle.cycle),
            offset(cycle.start, history.from),
            offset(cycle.end, history.from),
            formatAggregate(cycle.minimum.value),
            formatAggregate(cycle.maximum.value),
            formatAggregate(cycle.average.value),
            worstQuality([cycle.minimum, cycle.maximum, cycle.average]),
          ]),
          empty: "No cycle ran.",
        },
        {
          id: "alarms",
          title: "Alarms",
          columns: ["tag", "alarm", "priority", "raised", "value (mbar)", "cleared", "acknowledged", "acknowledged by"],
          rows: summary.alarms.occurrences.map((occurrence) => [
            occurrence.tag,
            occurrence.kind,
            String(occurrence.priority),
            occurrence.raisedTo === "unacknowledged"
              ? offset(occurrence.raisedAt, history.from)
              : `${offset(occurrence.raisedAt, history.from)} (${occurrence.raisedTo})`,
            occurrence.value === undefined ? "" : formatValue(occurrence.value),
            occurrence.clearedAt === undefined ? "still active" : offset(occurrence.clearedAt, history.from),
            occurrence.acknowledgedAt === undefined
              ? "not acknowledged"
              : offset(occurrence.acknowledgedAt, history.from),
            occurrence.acknowledgedBy ?? "",
          ]),
          empty: "No alarm was raised.",
          note: "From the store's alarm history (store.alarms.query): every ISA-18.2 transition, paired per occurrence; times since the start of the run; priority 1 is the highest.",
        },
        {
          title: "Breaker events",
          columns: ["at", "breaker", "from", "to", "reason"],
          rows: summary.breakerEvents.map((event) => [
            offset(event.at, history.from),
            event.breaker,
            event.from,
            event.to,
            event.reason ?? "",
          ]),
          empty: "No circuit breaker changed state.",
        },
      ],
      recipe: aldRecipe,
      parameters: runParameters,
      notes: [
        "Charts are read back from the store after the run: the pressure line is the store's M4 trend (history.downsample), the other lines raw samples (readSamples), the band min/max per bucket (readBuckets).",
        "The per-cycle table is computed by the store (history.aggregate: Minimum, Maximum, Average over each cycle, OPC UA Part 13); a cycle runs from its TMA pulse through the purges after its H2O pulse.",
        "Shading shows the recipe step running at each moment (step-start/step-end events), repeated in the step lane above each plot; the PLC link lane under it shows each outage, also outlined across the plot; triangles mark alarms, acknowledgements and PLC link changes.",
        "The valve chart shows valve.tma and valve.h2o as logged by the PLC at the 50 ms scan (so a bar's width is its open time to within a scan period); the ring marks the pulse with the largest timing error, measured by the recipe executor from the open write to the close write (step-end actualMs), the figure behind the summary's max.",
      ],
    });
  }

  #say(text: string): void {
    if (this.#progress) this.#progress.note(text);
    else this.#options.log?.(text);
  }
}

interface History {
  readonly samples: ReadonlyMap<string, Sample[]>;
  readonly pressureTrend: readonly Sample[];
  readonly cycles: readonly CycleStatistics[];
  readonly alarms: readonly AlarmOccurrence[];
  readonly audit: AuditCounts;
  readonly buckets: ReadonlyMap<string, SampleBucket[]>;
  readonly bucketMs: number;
  readonly stored: number;
  readonly notGood: number;
  readonly stale: number;
  readonly from: number;
  readonly to: number;
}

function formatAggregate(value: number | bigint | null): string {
  return value === null ? "no data" : typeof value === "number" ? value.toFixed(3) : String(value);
}

/** The worst severity of the results, with the reason when it is not good. */
function worstQuality(results: readonly AggregateValue[]): string {
  const worst =
    results.find((result) => result.quality.severity === "bad") ??
    results.find((result) => result.quality.severity === "uncertain");
  if (worst === undefined) return "good";
  return worst.quality.reason === undefined
    ? worst.quality.severity
    : `${worst.quality.severity}: ${worst.quality.reason}`;
}

function formatValue(value: number | boolean | null): string {
  return typeof value === "number" ? value.toFixed(3) : String(value);
}

function offset(at: number, from: number): string {
  return `${((at - from) / 1_000).toFixed(2)} s`;
}

/** The order of a cycle's steps in the recipe. */
const CYCLE_STEPS = ["tma", "purge", "h2o", "purge"] as const;

/**
 * The per-cycle timeline table: each cycle's start, its four steps' measured durations against
 * their setpoints (`actual / set`, ms), the cycle's length, and its largest deviation.
 */
function cycleTimelineTable(
  rows: readonly CycleTimelineRow[],
  from: number,
  highlightRows: readonly number[],
): ReportTable {
  return {
    id: "cycles",
    title: "Cycle timeline",
    columns: [
      "cycle",
      "start",
      "TMA pulse (ms, actual / set)",
      "purge (ms)",
      "H2O pulse (ms)",
      "purge (ms)",
      "cycle length (ms)",
      "largest deviation",
    ],
    rows: rows.map((row) => {
      const cells: string[] = [];
      let index = 0;
      for (const kind of CYCLE_STEPS) {
        const step = row.steps[index]?.kind === kind ? row.steps[index++] : undefined;
        cells.push(
          step === undefined
            ? "—"
            : `${step.actualMs.toFixed(1)} / ${step.plannedMs ?? "—"}${step.outcome === "completed" ? "" : ` (${step.outcome})`}`,
        );
      }
      const planned = row.steps.reduce((sum, step) => sum + (step.plannedMs ?? 0), 0);
      const deviation = row.worst
        ? `${row.worst.errorMs! >= 0 ? "+" : ""}${row.worst.errorMs!.toFixed(1)} ms (${row.worst.label})`
        : "—";
      return [
        String(row.cycle),
        offset(row.start, from),
        ...cells,
        `${(row.end - row.start).toFixed(0)} / ${planned}`,
        deviation,
      ];
    }),
    highlightRows,
    empty: "No cycle ran.",
    note: "Measured by the recipe executor (step-end events): a pulse from its open write to its close write, a purge from its start to its end; deviation = actual − setpoint. The cycle length runs from the TMA pulse's start to the last purge's end, so it includes the valve writes. The highlighted cycle holds the worst-timed pulse.",
  };
}
