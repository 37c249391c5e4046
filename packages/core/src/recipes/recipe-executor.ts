import { sayingLess, withholdingNothing } from "../domain/refusal-disclosure";
import { KilnError, KilnValidationError } from "../domain/errors";
import type { CvtChange } from "../cvt/current-value-view";
import { isRestamped } from "../cvt/receipt-stamp";
import { sameTagValue, type TagCatalog, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import type { ProcessRepository } from "@kiln/core/driver-kit";
import { silentLogger } from "../runtime/silent-logger";
import type { MachineBinding } from "./machine-binding";
import { ProcessRun, type ProcessFailure } from "./process-run";
import type { RecipeIo } from "./recipe-io";
import { timingStats, type ProcessProblem, type ProcessResult, type RecipeProcess } from "./recipe-process";
import type { RecipePlan } from "./recipe-plan";
import { recipeSchema, type RecipeInput } from "./recipe-schema";
import { validateRecipe, type RecipeLimits, type RecipeResolver } from "./recipe-validation";
import { checkSafeState, writeSafeState, type SafeStateWrite } from "./safe-state";

export type { ProcessProblem, ProcessResult, RecipeProcess } from "./recipe-process";
export type { SafeStateWrite } from "./safe-state";

/** Options of {@link RecipeExecutor}. */
export interface RecipeExecutorOptions {
  /** Drives the machine's state machine (see {@link kilnMachineBinding}, {@link packmlMachineBinding}). */
  readonly machine: MachineBinding;
  /** Device writes and current values. */
  readonly io: RecipeIo;
  /** The machine's tags; recipes are validated against it. */
  readonly catalog: TagCatalog;
  /** Time source for every wait, pulse, ramp and timestamp. */
  readonly clock: Clock;
  /** Where processes and their events are saved. */
  readonly processes: ProcessRepository;
  /** Finds recipes named by `call` steps (see `recipeResolver(repository)`). */
  readonly resolveRecipe?: RecipeResolver;
  /**
   * Written, in order, when a process is aborted or fails, and on {@link RecipeExecutor.trip}.
   * Not written when a process completes: a recipe ends with its own shutdown steps. Each tag at
   * most once (review 15m, M2). {@link RecipeExecutor.haltSafeState} stops it part way (fix15z).
   * @default []
   */
  readonly safeState?: readonly SafeStateWrite[];
  /** Where process and step events are published. */
  readonly bus?: EventBus<KilnEvents>;
  /** Diagnostics. @default silentLogger */
  readonly logger?: Logger;
  /** Overrides of the recipe limits used to validate recipes. */
  readonly limits?: Partial<RecipeLimits>;
  /**
   * Longest time between two saves of a running process: progress is saved after every
   * top-level step, and at a step boundary when this long has passed since the last save.
   * @default 5000
   */
  readonly progressSaveIntervalMs?: number;
  /** Makes process ids. @default crypto.randomUUID */
  readonly createId?: () => string;
  /**
   * How long a start waits for the last process to finish ending once its effect is done (the
   * safe state written, the machine back at its ready state): a step write it sent before its
   * abort still on the wire (each bounded by the driver's write timeout), then its record's last
   * save. Past it the start is refused (`KILN_INVALID_TRANSITION`, `details.ending`). The control
   * system passes `acquisition.timeoutMs + storePolicies.processes.timeoutMs`.
   * @default 7000
   */
  readonly endingWaitMs?: number;
  /**
   * What the device confirmed, for the failure lines of {@link RecipeExecutor.safeStateFailures}
   * (fix15s): a failed write is forgotten only on evidence, never by a reset. The control system
   * binds it to its checked writer. Without it only the executor's own later writes of the tag
   * (and a read-back, {@link RecipeExecutor.readBack}) clear a failure.
   */
  readonly evidence?: SafeStateEvidence;
}

/**
 * The device facts a failed safe-state (or pulse-off, step-write) write waits for (fix15s),
 * from the writer every write of the system goes through.
 */
export interface SafeStateEvidence {
  /** The writer's issue order now: a write issued later has a greater number. */
  mark(): number;
  /** True once a write of `tag` issued after `mark` landed at the device as the tag's latest intent. */
  landedAfter(tag: string, mark: number): boolean;
  /**
   * The device-call order now, shared with acquisition's poll reads (`CvtChange.readIssued`):
   * taken when a failure is noted (fix15z). Without it (and {@link quietSince}) a poll's
   * read-back is judged by source timestamps only (fix15v).
   */
  order?(): number;
  /**
   * True when no write of `tag` is queued or out at the device, and none landed (or maybe landed)
   * after the device-call order `since`: a read issued then shows what the device holds (fix15z).
   */
  quietSince?(tag: string, since: number): boolean;
}

/** Who started a process: recorded on its `process-start` event and passed with each of its writes. */
export interface ProcessPrincipal {
  /** The principal's id. */
  readonly id: string;
  /** Its roles when it started the process. */
  readonly roles: readonly string[];
}

/** A validated recipe's effects, given to {@link ProcessStartOptions.authorize} before anything runs. */
export interface RecipeStartRequest {
  /** The recipe version. */
  readonly recipe: { readonly name: string; readonly version: number };
  /** See {@link RecipeExecutor.writeSet}: steps, called recipes and the safe state. */
  readonly writeSet: readonly string[];
  /** True when the recipe is a saved version, unchanged (see {@link RecipeExecutor.isSaved}). */
  readonly saved: boolean;
  /** The run's parameter values, defaults applied. */
  readonly parameters: Readonly<Record<string, unknown>>;
  /** The id the process will have (given, or made for it): the target of its pause, resume and abort. */
  readonly processId: string;
}

/** Options of `ControlSystem.startRecipe`. */
export interface StartRecipeOptions {
  /** Parameter values for this run; the recipe's defaults fill the rest. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /**
   * The process id: 1 to 256 characters, no control characters (`ControlSystem.startRecipe`
   * refuses anything else with `KILN_VALIDATION`, path `processId`). @default a new unique id
   */
  readonly processId?: string;
}

/** @internal What the control system adds to {@link StartRecipeOptions} when it starts a process. */
export interface ProcessStartOptions extends StartRecipeOptions {
  /** Who starts it: recorded on `process-start` and passed with every write of the process. */
  readonly startedBy?: ProcessPrincipal;
  /**
   * Called once the recipe is validated, before the process is saved or the machine started;
   * throw to refuse the start (nothing has run). The control system authorizes the write set here.
   */
  readonly authorize?: (request: RecipeStartRequest) => void | Promise<void>;
  /**
   * Cancels the start while it has not begun: every wait before its process is saved (the
   * recipe store, the process store) races it, and the start then rejects at once with
   * `KILN_ABORTED` (`details.cancelled`, nothing ran), as {@link RecipeExecutor.abortPending}
   * does (adversarial review 15z, M5). `authorize` is awaited to its end (the control system's
   * audit entry), then the cancellation is checked.
   */
  readonly signal?: AbortSignal;
  /**
   * Runs the wait for the last process to finish ending (see `endingWaitMs`) and resolves with
   * its result. The control system runs it outside its command turn, so other commands go on
   * meanwhile, and takes its turn again before resolving (review 15c, M1): the start's readiness
   * is checked again after it. @default runs the wait as it is
   */
  readonly outsideTurn?: <T>(wait: () => Promise<T>) => Promise<T>;
}

/**
 * A safe-state write the device refused (or that timed out), a pulse's off write that failed
 * after the pulse was aborted (review 15t), or a step write sent before its process was aborted
 * that failed afterwards (review 15s), kept until the device is known to hold a value set since:
 * a later write of the tag landed, or the device read back the value that was not written (good
 * quality, newer than the failure). A reset of the machine does not clear it (fix15s).
 */
export interface SafeStateFailure {
  /** The tag whose safe (or off) value was not written. */
  readonly tag: string;
  /**
   * `safe-state` (the default when absent): a safe-state write; `pulse-off`: an aborted pulse's
   * off write (the tag may still hold its on value); `step-write`: a step write in flight when
   * its process was aborted (the tag may not hold the value the process wrote last). Cleared once
   * a later write of the tag lands (any writer: the safe state again, a process, an operator), or
   * a read-back shows `value`; not by a reset of the machine (fix15s).
   */
  readonly stage?: "safe-state" | "pulse-off" | "step-write";
  /** Why, in words (`KILN_...: message` for a KilnError). */
  readonly reason: string;
  /** The error's code, when it was a KilnError (`KILN_WRITE_REJECTED`, `KILN_TIMEOUT`...). */
  readonly code?: string;
  /**
   * The value that was not written, when known (the safe value for `safe-state`): a good read-back
   * of it newer than the failure clears the failure without a write (fix15s).
   */
  readonly value?: TagValue;
  /** When the write failed, ms since the Unix epoch (the executor's clock). */
  readonly at: number;
}

/**
 * What {@link RecipeExecutor.trip} did: the safe state written and the machine faulted, with or
 * without a process. It answers once that is done, not after the process record's final save
 * (the process's `finished` waits for that; adversarial review 15z, M4).
 */
export interface TripResult {
  /** The id of the process it aborted (or that was ending), if one was active. */
  readonly processId?: string;
  /** Problems met writing the safe state or faulting the machine (empty when none). */
  readonly problems: readonly ProcessProblem[];
}

const DEFAULT_PROGRESS_SAVE_INTERVAL_MS = 5_000;
const DEFAULT_ENDING_WAIT_MS = 7_000;

/**
 * Runs validated recipes as processes on one machine, one process at a time.
 *
 * Life of a process: `created` (saved) → the machine binding's `begin()` → `running` ⇄
 * `paused` → `completed` | `aborted` | `failed`. A failed process writes the safe state and
 * faults the machine; an aborted one writes the safe state and ends the machine (or faults it
 * with `abort(reason, { fault: true })`); a completed one only ends the machine.
 *
 * Events (aggregate id = process id): `process-start`, `process-pause`, `process-resume`,
 * `process-end`, and `step-start`/`step-end` for every step (loops and calls included) with
 * its run-time path (`steps[2].loop[17].steps[1]`, `steps[4].call.steps[0]`), planned and actual
 * duration. They are published on the bus at once, and saved with the record through
 * `ProcessRepository.save(record, events, expectedVersion)`:
 *
 * - at every status change (created, running, paused, resumed, ended);
 * - after every top-level step;
 * - at any step boundary when `progressSaveIntervalMs` (default 5 s) has passed since the last save.
 *
 * A failed save is published as `process-save-fail` and its events are kept for the next save,
 * so nothing is dropped; a host that dies in between leaves the process `running` in the
 * store, which {@link recoverInterrupted} marks `interrupted` at the next start.
 *
 * @example
 * const executor = new RecipeExecutor({
 *   machine: kilnMachineBinding(machine), io, catalog: tags, clock, processes: store.processes,
 *   resolveRecipe: recipeResolver(store.recipes), bus,
 *   safeState: [{ tag: "valve.tma", value: false }, { tag: "valve.h2o", value: false }],
 * });
 * const process = await executor.start(ald, { parameters: { cycles: 300 } });
 * const result = await process.finished; // { status: "completed", timing: { pulse: { p99, ... } } }
 */
export class RecipeExecutor {
  readonly #options: RecipeExecutorOptions;
  readonly #safeState: readonly SafeStateWrite[];
  readonly #progressSaveIntervalMs: number;
  readonly #logger: Logger;
  #active: ProcessRun | undefined;
  #starting = false;
  /** The start in progress (from the call until its process is active or the start failed), with what was asked of it meanwhile. */
  #pending: PendingStart | undefined;
  /** Trips acting now (from the call until the machine is faulted): no start may begin meanwhile. */
  #tripping = 0;
  /** See {@link safeStateEpoch}. */
  #safeStateEpoch = 0;
  /** Safe-state writings by {@link applySafeState} under way. */
  #applying = 0;
  /** The safe-state writes that failed, by tag, until the device confirms a value set since (review 15u, fix15s). */
  readonly #safeStateFailures = new Map<string, SafeStateFailure>();
  /** Per failure: the writer's issue order when it was noted (see {@link SafeStateEvidence}). */
  readonly #failureMarks = new WeakMap<SafeStateFailure, number>();
  /** Per failure, the source timestamp its tag's producer had last delivered when it was noted: a read-back must be newer (fix15v). */
  readonly #failureSources = new WeakMap<SafeStateFailure, number>();
  /** Per failure, the device-call order when it was noted: a poll's read-back must be issued after it (fix15z). */
  readonly #failureOrders = new WeakMap<SafeStateFailure, number>();
  /** Aborted by {@link haltSafeState}; a new one by {@link resumeSafeState}. */
  #halt = new AbortController();
  /** Per tag, the source timestamp its producer last delivered ({@link readBack}: `CvtChange.sourceTimestamp`). */
  readonly #lastSource = new Map<string, number>();
  /**
   * The catalog's writable tags: the only ones a failure can name (safe-state and step writes go to
   * writable tags), so the only ones {@link readBack} keeps a source timestamp for. A read-only tag
   * costs a lookup in this small set instead of a write to a map of the whole catalog (issue 16).
   */
  readonly #writable: ReadonlySet<string>;

  /**
   * @throws KilnValidationError (`KILN_VALIDATION`) when a safe-state write names an unknown or
   * read-only tag, a value that does not fit it, or a tag listed before (paths `safeState[1].tag`).
   * @throws RangeError when `progressSaveIntervalMs` is not a positive number.
   */
  constructor(options: RecipeExecutorOptions) {
    this.#options = options;
    this.#safeState = checkSafeState(options.catalog, options.safeState ?? []);
    this.#writable = new Set(
      options.catalog
        .list()
        .filter((tag) => tag.access === "readwrite")
        .map((tag) => tag.name),
    );
    this.#progressSaveIntervalMs = options.progressSaveIntervalMs ?? DEFAULT_PROGRESS_SAVE_INTERVAL_MS;
    if (!(this.#progressSaveIntervalMs > 0)) throw new RangeError("progressSaveIntervalMs must be a positive number");
    this.#logger = options.logger ?? silentLogger;
  }

  /** The machine's id. */
  get machineId(): string {
    return this.#options.machine.machineId;
  }

  /**
   * True while a {@link trip} is acting (from its call until the safe state is written and the
   * machine faulted). No start begins meanwhile, and the control system refuses machine commands
   * other than the safety functions (adversarial review 15w, H1/M6).
   */
  get tripping(): boolean {
    return this.#tripping > 0;
  }

  /**
   * How many times the machine has begun to be brought to its safe state, by any path: a trip or
   * a manual stop, fault or abort ({@link fence}), a process's abort, stop or fault, a process
   * that failed on its own, an {@link applySafeState}. Bumped before any await. A manual write
   * taken at one epoch is not sent at another: a write issued before the safe state never lands
   * after it (review 15f, H1).
   */
  get safeStateEpoch(): number {
    return this.#safeStateEpoch;
  }

  /**
   * True while the safe state is being brought about: a fence acting, an {@link applySafeState}
   * under way, or the active process aborting, stopping, faulting or failing until its machine is
   * at its end state. A manual write meanwhile is refused (review 15f, H1).
   */
  get actingSafeState(): boolean {
    return this.#tripping > 0 || this.#applying > 0 || this.#active?.actingSafeState === true;
  }

  /** True while the active process has been asked to stop, abort or fault (or has ended): it no longer runs (review 15d, M3). */
  get halting(): boolean {
    return this.#active?.halting === true;
  }

  /**
   * The safe-state writes that failed (by a process's abort or failure, a trip, a manual stop,
   * fault or abort), one per tag, the latest, with the late pulse-off and step-write failures:
   * kept until the device is known to hold a value set since the failure: a later write of the tag
   * landed (the safe state's again, a process's or an operator's, issued after the failure), or a
   * good read-back of the value not written arrived ({@link readBack}). A reset of the machine does
   * not clear them: the device may still hold the old, unsafe value (fix15s; review 15u named them,
   * 15p M2 found the reset hiding them). The control system's `health().problems` names each.
   */
  safeStateFailures(): readonly SafeStateFailure[] {
    const evidence = this.#options.evidence;
    if (evidence !== undefined) {
      for (const [key, failure] of this.#safeStateFailures) {
        const mark = this.#failureMarks.get(failure);
        if (mark !== undefined && evidence.landedAfter(failure.tag, mark)) this.#safeStateFailures.delete(key);
      }
    }
    return [...this.#safeStateFailures.values()];
  }

  /**
   * A change of the current value table (the control system passes every one it takes): a failure
   * of its tag whose `value` the sample shows, with good quality, is cleared, no write needed
   * (fix15s), only on evidence the device took the sample after the failure was noted:
   * - its source timestamp (`change.sourceTimestamp`, as the producer delivered it) is strictly
   *   newer than the last one the tag's producer had delivered when the failure was noted (the
   *   same clock, so a device clock running ahead or behind the host's does not matter), or, for a
   *   tag never heard from before the failure, than the failure's time; a sample the table stamped
   *   with its receive time because its source timestamp did not advance (`RESTAMPED_REASON`)
   *   never clears (fix15v, adv15u H1);
   * - and, for a poll's answer (`change.readIssued`, with the writer's {@link SafeStateEvidence.order}),
   *   the read was issued after the failure was noted, and no write of the tag landed (or maybe
   *   landed) since it was issued nor is still out (fix15z, adv15y H1: a read issued before an
   *   unsafe write landed, answered after the failure, sampled the old safe value and cleared the
   *   line while the device held the unsafe one; a source timestamp does not say when the read was
   *   made relative to a write's landing). A subscription's notification is judged by its source
   *   timestamp alone.
   */
  readBack(change: Pick<CvtChange, "sample" | "sourceTimestamp" | "readIssued">): void {
    const { sample, sourceTimestamp, readIssued } = change;
    if (this.#writable.has(sample.tag)) this.#lastSource.set(sample.tag, sourceTimestamp);
    if (this.#safeStateFailures.size === 0 || sample.quality.severity !== "good" || sample.value === null) return;
    if (isRestamped(sample)) return;
    const evidence = this.#options.evidence;
    for (const [key, failure] of this.#safeStateFailures) {
      if (failure.tag !== sample.tag || failure.value === undefined) continue;
      if (!sameTagValue(sample.value, failure.value)) continue;
      if (!(sourceTimestamp > (this.#failureSources.get(failure) ?? failure.at))) continue;
      const noted = this.#failureOrders.get(failure);
      if (readIssued !== undefined && noted !== undefined && evidence?.quietSince !== undefined) {
        if (!(readIssued > noted && evidence.quietSince(sample.tag, readIssued))) continue;
      }
      this.#safeStateFailures.delete(key);
    }
  }

  /**
   * Stops every writing of the safe state under way and any begun later (the control system's
   * `stop()` once its budget is spent, before it closes the writer; fix15z, adv15y H2): nothing
   * more is sent, nothing more awaited; each write not answered yet fails at once (`KILN_ABORTED`,
   * `details.halted`), so it is noted as a failed safe-state write ({@link safeStateFailures})
   * and the command or abort that wrote it records its `:fail` while the writer is still open.
   * Until {@link resumeSafeState}.
   */
  haltSafeState(reason: string): void {
    if (!this.#halt.signal.aborted) this.#halt.abort(reason);
  }

  /** Writes the safe state again after a {@link haltSafeState} (the control system's `start()`). */
  resumeSafeState(): void {
    if (this.#halt.signal.aborted) this.#halt = new AbortController();
  }

  /** Keeps a failure, with the writer's issue order now (what a later write must pass). */
  #keepFailure(key: string, failure: SafeStateFailure): void {
    this.#safeStateFailures.set(key, failure);
    const source = this.#lastSource.get(failure.tag);
    if (source !== undefined) this.#failureSources.set(failure, source);
    const mark = this.#options.evidence?.mark();
    if (mark !== undefined) this.#failureMarks.set(failure, mark);
    const order = this.#options.evidence?.order?.();
    if (order !== undefined) this.#failureOrders.set(failure, order);
  }

  /**
   * Subscribes to processes that fail on their own, told once each as soon as the failure's
   * effect is done (safe state written, machine faulted); the control system audits them
   * (review 15j, M2). Returns the unsubscribe. A listener that throws is logged by the run.
   */
  onProcessFailed(listener: (failure: ProcessFailure) => void): () => void {
    this.#failureListeners.add(listener);
    return () => void this.#failureListeners.delete(listener);
  }

  readonly #failureListeners = new Set<(failure: ProcessFailure) => void>();

  /** Keeps the outcome of one writing of the safe state: each failed tag noted, each written one cleared. */
  #noteSafeState(problems: readonly ProcessProblem[]): void {
    const failed = new Set<string>();
    for (const problem of problems) {
      if (problem.stage !== "safe-state" || problem.tag === undefined) continue;
      failed.add(problem.tag);
      const value = this.#safeState.find((write) => write.tag === problem.tag)?.value;
      this.#keepFailure(problem.tag, {
        stage: "safe-state",
        tag: problem.tag,
        reason: describeProblem(problem.error),
        ...(KilnError.is(problem.error) ? { code: problem.error.code } : {}),
        ...(value === undefined ? {} : { value }),
        at: this.#options.clock.now(),
      });
    }
    for (const write of this.#safeState) {
      if (failed.has(write.tag)) continue;
      this.#safeStateFailures.delete(write.tag);
      this.#safeStateFailures.delete(`late:${write.tag}`);
    }
  }

  /** The process running (or paused) on the machine, if any. */
  get active(): RecipeProcess | undefined {
    return this.#active;
  }

  /**
   * The id of the process a start in progress will run, while its process is not active yet
   * (the start is waiting for the last process to finish ending, validating, authorizing or
   * waiting for its audit entry); undefined otherwise.
   */
  get pendingId(): string | undefined {
    return this.#waiting()?.id;
  }

  /** The start in progress whose process is not active yet (the last one may still be ending). */
  #waiting(): PendingStart | undefined {
    return this.#pending?.begun === false ? this.#pending : undefined;
  }

  /**
   * Aborts a start in progress whose process is not active yet: it is cancelled before its
   * first effect (the start rejects with `KILN_ABORTED`; nothing is saved or written, the
   * machine does not move). Answers at once, without waiting for the start.
   * @returns the cancelled process's result (`aborted`, nothing run, not persisted), or
   *   undefined when no start is pending.
   */
  abortPending(reason: string): ProcessResult | undefined {
    const pending = this.#waiting();
    if (pending === undefined) return undefined;
    this.#cancelPending(pending, reason);
    const now = this.#options.clock.now();
    return {
      processId: pending.id,
      status: "aborted",
      reason: pending.abortReason,
      stepsCompleted: 0,
      startedAt: now,
      endedAt: now,
      timing: { pulse: timingStats([]), wait: timingStats([]) },
      problems: [],
      persisted: false,
    };
  }

  /**
   * Asks a start in progress whose process is not active yet to pause before its first step
   * (the process begins and holds at its first step boundary). False when no start is pending.
   */
  pausePending(): boolean {
    const pending = this.#waiting();
    if (pending === undefined) return false;
    pending.pause = true;
    return true;
  }

  /** True when a pending start was asked to pause ({@link pausePending}). */
  get pendingPause(): boolean {
    return this.#waiting()?.pause === true;
  }

  /**
   * Validates `recipe` (see `validateRecipe`), saves a new process, starts the machine and
   * runs the recipe in the background. Resolves once the process is running.
   *
   * @throws KilnValidationError (`KILN_VALIDATION`) listing every problem of the recipe, or path
   *   `processId` when `options.processId` names a process already saved; nothing ran.
   * @throws whatever `options.authorize` throws (e.g. `KILN_FORBIDDEN`); nothing ran.
   * A process that is only ending (its effect done: safe state written, machine back at its ready
   * state; a write it sent before its abort still in flight, or its record's last save) does not
   * refuse the start: the start waits for it, at most `endingWaitMs` (ADR 0042, amendment 2026-12-02 15r),
   * once validated and authorized (a start bound to be refused is refused at once).
   * @throws KilnError `KILN_INVALID_TRANSITION` when a process is already active on the machine
   * (one still running, or one still ending after `endingWaitMs`: `details.ending.lateWrites`
   * names the tags whose writes have not settled), or the machine cannot begin: refused before anything is saved when the binding says so
   * (`canBegin`), checked before `authorize` and again once authorized (no record, no event);
   * a `begin()` that still rejects leaves the process saved `failed`, with no process event.
   * @throws the store's error when the new process cannot be saved; nothing ran.
   */
  async start(recipe: RecipeInput, options: ProcessStartOptions = {}): Promise<RecipeProcess> {
    if (this.#starting || (this.#active !== undefined && this.#active.ending === undefined)) {
      throw new KilnError(
        "KILN_INVALID_TRANSITION",
        // The running process is not named: the caller may not be allowed to see it (issue 15).
        `Machine "${this.machineId}" is already running a process: abort it or wait for it to end.`,
        { details: { machineId: this.machineId, command: "start" } },
      );
    }
    this.#starting = true;
    const pending: PendingStart = {
      id: options.processId ?? (this.#options.createId ?? defaultId)(),
      pause: false,
      begun: false,
      cancel: new AbortController(),
    };
    this.#pending = pending;
    const signal = options.signal;
    const onCancel = (): void => void this.#cancelPending(pending, reasonOf(signal));
    if (signal?.aborted === true) onCancel();
    else signal?.addEventListener("abort", onCancel, { once: true });
    // Every wait before the process begins races the cancellation (review 15z, M5).
    const unlessCancelled = <T>(work: Promise<T>): Promise<T> => raceCancel(work, pending);
    try {
      const plan = await unlessCancelled(this.plan(recipe, options));
      if (
        options.processId !== undefined &&
        (await unlessCancelled(this.#options.processes.get(pending.id))) !== undefined
      ) {
        // Checked before authorization and its audit entry: a start that cannot save its process
        // is refused as bad input, never recorded `allowed` (adversarial review 15s, F4).
        throw new KilnValidationError("recipe start", [
          { path: "processId", message: `must not name an existing process ("${pending.id}" exists)` },
        ]);
      }
      const writeSet = this.writeSet(plan);
      // A machine that cannot start is refused before the start is authorized and audited (denied).
      this.#checkReady(pending);
      await options.authorize?.({
        recipe: { name: plan.recipe.name, version: plan.recipe.version },
        writeSet,
        saved: await unlessCancelled(this.isSaved(plan)),
        parameters: { ...plan.parameters },
        processId: pending.id,
      });
      // Only a start bound to run waits for the last process to finish ending: a bad recipe or a
      // refused write set is refused at once, never after the wait (adversarial review 15-2, M1).
      await this.#awaitEnding(pending, options.outsideTurn);
      // Aborted while it waited (for validation, authorization, its audit entry): nothing has run.
      // Checked and acted on in one turn: an abort after this finds the process active.
      if (pending.abortReason !== undefined) throw cancelledError(pending);
      // Again, in the turn that makes the process active: the machine may have moved while the
      // start waited (its audit entry). Refused before anything is saved: no process record, no
      // process events (adversarial review 15y, L8).
      this.#checkReady(pending);
      const run = new ProcessRun({
        id: pending.id,
        plan,
        writeSet,
        ...(options.startedBy === undefined
          ? {}
          : {
              startedBy: Object.freeze({
                id: options.startedBy.id,
                roles: Object.freeze([...options.startedBy.roles]),
              }),
            }),
        options: this.#options,
        safeState: this.#safeState,
        onSafeState: (problems) => this.#noteSafeState(problems),
        onSafeStateBegin: () => void this.#safeStateEpoch++,
        safeStateHalt: () => this.#halt.signal,
        // A write the steps no longer waited for failed: a pulse's off (the tag may still be on;
        // review 15t, M2), a step write in flight at the abort (review 15s, M3).
        onLateWriteFailure: (problem) => {
          if (problem.tag === undefined || (problem.stage !== "pulse-off" && problem.stage !== "step-write")) return;
          this.#keepFailure(`late:${problem.tag}`, {
            tag: problem.tag,
            stage: problem.stage,
            reason: describeProblem(problem.error),
            ...(KilnError.is(problem.error) ? { code: problem.error.code } : {}),
            at: this.#options.clock.now(),
          });
        },
        onStepWrite: (tag) => this.#safeStateFailures.delete(`late:${tag}`),
        onFailed: (failure) => {
          for (const listener of this.#failureListeners) listener(failure);
        },
        progressSaveIntervalMs: this.#progressSaveIntervalMs,
        logger: this.#logger,
        onEnd: (ended) => {
          if (this.#active === ended) this.#active = undefined;
        },
      });
      pending.begun = true;
      this.#active = run;
      // A pause asked for while it was starting holds it at its first step boundary.
      if (pending.pause) void run.pause().catch(() => undefined);
      try {
        await run.begin();
      } catch (error) {
        if (this.#active === run) this.#active = undefined;
        throw error;
      }
      return run;
    } finally {
      signal?.removeEventListener("abort", onCancel);
      this.#starting = false;
      if (this.#pending === pending) this.#pending = undefined;
    }
  }

  /**
   * Waits, at most `endingWaitMs` (and never past the start's cancellation), for the last process
   * to finish ending when its effect is done: a write it sent before its abort still on the wire
   * must land before the next process writes (every writer keeps a tag's order, ADR 0042 15s).
   * @throws KilnError `KILN_INVALID_TRANSITION` (nothing ran) when it is still ending then.
   */
  async #awaitEnding(
    pending: PendingStart,
    outsideTurn: <T>(wait: () => Promise<T>) => Promise<T> = (wait) => wait(),
  ): Promise<void> {
    const previous = this.#active;
    if (previous === undefined) return;
    const waitMs = this.#options.endingWaitMs ?? DEFAULT_ENDING_WAIT_MS;
    const timer = new AbortController();
    try {
      const timeout = this.#options.clock.sleep(waitMs, timer.signal).catch(() => undefined);
      await outsideTurn(() => raceCancel(Promise.race([previous.finished, timeout]), pending));
    } finally {
      timer.abort();
    }
    if (this.#active !== previous) return;
    const lateWrites = previous.ending?.lateWrites ?? [];
    // The process is not named: the caller may not be allowed to see it (issue 15); its late
    // writes' tags only to a caller who may know each (review 15e: `disclosureFor`).
    const refusal = (shown: readonly string[]): { message: string; details: Record<string, unknown> } => {
      const withheld = lateWrites.length - shown.length;
      const what = [...shown, ...(withheld > 0 ? [`${withheld} other tag${withheld === 1 ? "" : "s"}`] : [])];
      return {
        message:
          `Machine "${this.machineId}" is still ending its last process after ${waitMs} ms: ` +
          (lateWrites.length > 0
            ? `the write of ${what.join(", ")} sent before its abort has not settled`
            : "its record's last save has not finished") +
          `; nothing ran. Start again once it has (health() names it).`,
        details: {
          machineId: this.machineId,
          command: "start",
          ending: { lateWrites: shown, ...(withheld > 0 ? { lateWritesWithheld: withheld } : {}), waitedMs: waitMs },
        },
      };
    };
    const full = refusal(lateWrites);
    throw sayingLess(
      new KilnError("KILN_INVALID_TRANSITION", full.message, { details: full.details }),
      (disclosure) => {
        const shown = lateWrites.filter((tag) => disclosure.tag(tag));
        return shown.length === lateWrites.length ? undefined : refusal(shown);
      },
    );
  }

  /**
   * The last process while it is ending after its effect (see `endingWaitMs`): its id and the
   * tags of its writes sent before its abort that have not settled. Undefined otherwise.
   */
  ending(): { readonly processId: string; readonly lateWrites: readonly string[] } | undefined {
    const ending = this.#active?.ending;
    return ending === undefined || this.#active === undefined
      ? undefined
      : { processId: this.#active.id, lateWrites: ending.lateWrites };
  }

  /** Marks a pending start aborted (the first reason wins) and wakes every wait it races. */
  #cancelPending(pending: PendingStart, reason: string): void {
    if (pending.begun) return;
    pending.abortReason ??= reason;
    pending.cancel.abort();
  }

  /** Refuses a start (`KILN_INVALID_TRANSITION`, nothing ran) when the machine binding says it cannot begin now. */
  #checkReady(pending: PendingStart): void {
    // A trip still writing the safe state has not faulted the machine yet: a start now would
    // begin on a machine about to be faulted (adversarial review 15w, H1).
    // These name only the caller's own start (its id): nothing withheld (review 15e).
    if (this.#tripping > 0) {
      throw withholdingNothing(
        new KilnError(
          "KILN_INVALID_TRANSITION",
          `Machine "${this.machineId}" is tripping (safe state being written): nothing ran. Reset the machine once the trip is over.`,
          { details: { machineId: this.machineId, command: "start", processId: pending.id, tripping: true } },
        ),
      );
    }
    if (this.#options.machine.canBegin?.() !== false) return;
    throw withholdingNothing(
      new KilnError(
        "KILN_INVALID_TRANSITION",
        // The state is not named: the caller may not be allowed to see it (ADR 0010 §5).
        `Machine "${this.machineId}" cannot start a process in its current state: nothing ran. Bring it back to its ready state first.`,
        { details: { machineId: this.machineId, command: "start", processId: pending.id } },
      ),
    );
  }

  /**
   * Validates `recipe` against the machine (see `validateRecipe`) without running it.
   * @throws KilnValidationError (`KILN_VALIDATION`) listing every problem of the recipe.
   */
  plan(recipe: unknown, options: Pick<StartRecipeOptions, "parameters"> = {}): Promise<RecipePlan> {
    return validateRecipe(recipe, {
      catalog: this.#options.catalog,
      resolveRecipe: this.#options.resolveRecipe,
      parameters: options.parameters,
      limits: this.#options.limits,
    });
  }

  /**
   * Every tag a run of `plan` can write, each once: the plan's write set (set, pulse and ramp
   * steps, through loops and called recipes) followed by the machine's safe state, which is
   * written when the process is aborted or fails.
   */
  writeSet(plan: RecipePlan): string[] {
    return [...new Set([...plan.writeSet, ...this.#safeState.map((write) => write.tag)])];
  }

  /**
   * True when `plan`'s recipe is a saved version, unchanged: the recipe resolver finds its name
   * and version, and the saved definition is the same recipe (defaults applied; key order ignored).
   */
  async isSaved(plan: RecipePlan): Promise<boolean> {
    const resolve = this.#options.resolveRecipe;
    if (resolve === undefined) return false;
    const saved = recipeSchema.safeParse(await resolve(plan.recipe.name, plan.recipe.version));
    return saved.success && canonicalJson(saved.data) === canonicalJson(plan.recipe);
  }

  /**
   * Writes the safe state, in order, each write attempted even when an earlier one fails.
   * Resolves with the writes that failed. `report.joined` collects the tags whose write joined a
   * safe-state write of the same value still waiting for its answer (no call of its own; fix15s).
   */
  async applySafeState(report?: { readonly joined: string[] }): Promise<ProcessProblem[]> {
    this.#safeStateEpoch++;
    this.#applying++;
    try {
      const problems = await writeSafeState(
        this.#options.io,
        this.#safeState,
        this.#logger,
        undefined,
        report?.joined,
        this.#halt.signal,
      );
      this.#noteSafeState(problems);
      return problems;
    } finally {
      this.#applying--;
    }
  }

  /**
   * Aborts the active process, if any (as `RecipeProcess.abort`), and resolves once its effect is
   * done: the safe state written and the machine at the process's end state (faulted with
   * `fault`), without waiting for the process record's final save (`finished` waits for it).
   * A fault asked for while a stop is under way, or after the machine stopped while the record
   * still saves, faults the machine (adversarial review 15z, H1). Never rejects.
   * @returns the process's id and the problems met; undefined when no process is active.
   */
  async halt(
    reason: string,
    options: { readonly fault?: boolean } = {},
  ): Promise<{ readonly processId: string; readonly problems: readonly ProcessProblem[] } | undefined> {
    const active = this.#active;
    if (active === undefined) return undefined;
    return { processId: active.id, problems: await active.halt(reason, options) };
  }

  /**
   * The interlock action, whatever the process's stage (none, starting, running, ending, ended
   * but still saving): writes the safe state and faults the machine (Kiln `error`, PackML
   * `aborted`; nothing to fault in Kiln `maintenance`). With an active process it aborts it
   * faulted (safe state written first); a trip during a stop escalates it; a trip once the
   * process's machine has stopped writes the safe state again and faults the machine
   * (adversarial review 15z, H1/H2). Answers once that is done, not after the record's save.
   */
  trip(reason: string): Promise<TripResult> {
    return this.fence(reason, async () => {
      const halted = await this.halt(reason, { fault: true });
      if (halted !== undefined) return { processId: halted.processId, problems: halted.problems };
      const problems = await this.applySafeState();
      try {
        await this.#options.machine.fault(reason);
      } catch (error) {
        problems.push({ stage: "machine", error });
      }
      return { problems };
    });
  }

  /**
   * The safety fence: runs `work` (a trip, or a manual stop, fault or abort, with or without a
   * process) with {@link tripping} true from this call until `work` settles. A start not active
   * yet is cancelled now, and every start checks the fence in the turn that would begin its
   * process, so none begins while the safe state is written and the machine moved (adversarial
   * reviews 15w H1, 15d H1). Fences nest (a trip during a manual stop).
   */
  async fence<T>(reason: string, work: () => Promise<T>): Promise<T> {
    this.#safeStateEpoch++;
    this.#tripping++;
    try {
      const pending = this.#waiting();
      if (pending !== undefined) this.#cancelPending(pending, reason);
      return await work();
    } finally {
      this.#tripping--;
    }
  }
}

/** An error in words: `KILN_...: message` for a KilnError. */
function describeProblem(error: unknown): string {
  if (KilnError.is(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

/** JSON with object keys sorted, so two stores' copies of a definition compare equal. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, entry: unknown) =>
    typeof entry === "object" && entry !== null && !Array.isArray(entry)
      ? Object.fromEntries(Object.entries(entry).sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0)))
      : entry,
  );
}

function defaultId(): string {
  return globalThis.crypto.randomUUID();
}

/** A start in progress and what was asked of it before its process became active. */
interface PendingStart {
  readonly id: string;
  abortReason?: string;
  pause: boolean;
  /** Its process is active (it left the start's waits): an abort now goes to the process. */
  begun: boolean;
  /** Aborted with the start: the waits before it begins race it. */
  readonly cancel: AbortController;
}

/** The start's `KILN_ABORTED`: `cancelled`, its audited command records the start as cancelled (nothing ran), naming the abort. */
function cancelledError(pending: PendingStart): KilnError {
  // Names only the caller's own start: nothing withheld (review 15e).
  return withholdingNothing(
    new KilnError(
      "KILN_ABORTED",
      `The start of process "${pending.id}" was aborted before it began (${pending.abortReason}): nothing ran.`,
      { details: { processId: pending.id, reason: pending.abortReason, cancelled: true } },
    ),
  );
}

/** `work`, or the start's `KILN_ABORTED` as soon as it is cancelled (the work goes on, its result unused). */
function raceCancel<T>(work: Promise<T>, pending: PendingStart): Promise<T> {
  const signal = pending.cancel.signal;
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(cancelledError(pending));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(cancelledError(pending));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function reasonOf(signal: AbortSignal | undefined): string {
  const reason: unknown = signal?.reason;
  return typeof reason === "string" ? reason : "start cancelled";
}
