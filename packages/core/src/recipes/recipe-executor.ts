import { KilnError, KilnValidationError, type ValidationIssue } from "../domain/errors";
import type { Sample } from "../domain/sample";
import { checkTagValue, type TagCatalog, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import type { Disposer, EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import type { NewDomainEvent } from "../ports/event-store";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import type { ProcessRecord, ProcessRepository, ProcessStatus } from "../ports/process-repository";
import type { MachineBinding } from "./machine-binding";
import type { RecipeIo } from "./recipe-io";
import {
  isParameterRef,
  stepKindOf,
  type CallStep,
  type ConditionOperator,
  type LoopStep,
  type ParameterValue,
  type PulseStep,
  type RampStep,
  type RecipeInput,
  type RecipeStep,
  type RecipeStepKind,
  type RecipeValue,
  type SetStep,
  type WaitStep,
  type WaitUntilStep,
} from "./recipe-schema";
import {
  recipeKey,
  validateRecipe,
  type RecipeLimits,
  type RecipePlan,
  type RecipeResolver,
} from "./recipe-validation";

/** One write of a machine's safe state. */
export interface SafeStateWrite {
  /** A writable tag of the catalog. */
  readonly tag: string;
  /** The value that makes it safe (a closed valve, a zero setpoint). */
  readonly value: TagValue;
}

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
   * Not written when a process completes: a recipe ends with its own shutdown steps.
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
}

/** Options of {@link RecipeExecutor.start}. */
export interface StartRecipeOptions {
  /** Parameter values for this run; the recipe's defaults fill the rest. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /** The process id. @default options.createId() */
  readonly processId?: string;
}

/** Distribution of timing errors (actual − planned, ms) of one step kind over a run. All 0 when `count` is 0. */
export interface TimingStats {
  /** Number of steps measured. */
  readonly count: number;
  /** Median error. */
  readonly p50: number;
  /** 99th percentile error (nearest rank). */
  readonly p99: number;
  /** Largest error. */
  readonly max: number;
}

/** Something that went wrong while a process was being stopped or saved, in addition to its outcome. */
export interface ProcessProblem {
  /** `pulse-off`: a pulse's off value could not be written; `safe-state`: a safe-state write failed; `machine`: the state machine refused; `save`: the final save failed. */
  readonly stage: "pulse-off" | "safe-state" | "machine" | "save";
  /** The tag concerned, for writes. */
  readonly tag?: string;
  /** The error. */
  readonly error: unknown;
}

/** How a process ended. */
export interface ProcessResult {
  /** The process id. */
  readonly processId: string;
  /** Its final status. */
  readonly status: "completed" | "aborted" | "failed";
  /** Why it was aborted or failed. */
  readonly reason?: string;
  /** The error that failed it. */
  readonly error?: unknown;
  /** Run-time path of the last step that finished. */
  readonly lastCompletedStep?: string;
  /** Number of non-container steps (everything but `loop` and `call`) that finished. */
  readonly stepsCompleted: number;
  /** When it began running (ms since epoch). */
  readonly startedAt: number;
  /** When it ended. */
  readonly endedAt: number;
  /** Pulse timing error (open time − planned; open time is measured between the on and off writes completing) and wait timing error. */
  readonly timing: { readonly pulse: TimingStats; readonly wait: TimingStats };
  /** Problems met while stopping or saving, in order. */
  readonly problems: readonly ProcessProblem[];
  /** True when the final record and every event were saved. */
  readonly persisted: boolean;
}

/** What {@link RecipeExecutor.trip} did. */
export interface TripResult {
  /** The result of the process it aborted, if one was running. */
  readonly process?: ProcessResult;
  /** Problems met writing the safe state or faulting the machine when no process was running. */
  readonly problems: readonly ProcessProblem[];
}

/**
 * A recipe run on a machine. Commands take effect as follows:
 *
 * - `pause()`: at the next step boundary (a running wait or pulse completes first); resolves
 *   once paused; rejects if the machine refuses (the process then keeps running) or the process
 *   ends first. Pausing a paused process does nothing.
 * - `resume()`: resolves once running again; cancels a pause that has not taken effect yet.
 * - `abort(reason)`: at once. The current wait, pulse, ramp or waitUntil is cancelled (a pulse
 *   still writes its off value), the safe state is written, and the machine is ended (or faulted
 *   with `{ fault: true }`, as an interlock does). Resolves with the result; harmless when ended.
 *
 * `pause` and `resume` reject with `KILN_INVALID_TRANSITION` once the process has ended.
 */
export interface RecipeProcess {
  /** The process id (aggregate id of its events). */
  readonly id: string;
  /** The current status. */
  readonly status: ProcessStatus;
  /** The current record (as last changed; saved at the granularity documented on {@link RecipeExecutor}). */
  readonly record: ProcessRecord;
  /** Resolves when the process has ended; never rejects. */
  readonly finished: Promise<ProcessResult>;
  /** Pauses at the next step boundary. */
  pause(): Promise<void>;
  /** Resumes a paused process. */
  resume(): Promise<void>;
  /** Aborts at once and applies the safe state. */
  abort(reason?: string, options?: { readonly fault?: boolean }): Promise<ProcessResult>;
}

const DEFAULT_PROGRESS_SAVE_INTERVAL_MS = 5_000;
const INTEGER_TYPES = new Set(["int16", "uint16", "int32", "uint32"]);

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

  /**
   * @throws KilnValidationError (`KILN_VALIDATION`) when a safe-state write names an unknown or
   * read-only tag or a value that does not fit it (paths `safeState[1].tag`).
   * @throws RangeError when `progressSaveIntervalMs` is not a positive number.
   */
  constructor(options: RecipeExecutorOptions) {
    this.#options = options;
    this.#safeState = checkSafeState(options.catalog, options.safeState ?? []);
    this.#progressSaveIntervalMs = options.progressSaveIntervalMs ?? DEFAULT_PROGRESS_SAVE_INTERVAL_MS;
    if (!(this.#progressSaveIntervalMs > 0)) throw new RangeError("progressSaveIntervalMs must be a positive number");
    this.#logger = options.logger ?? silentLogger;
  }

  /** The machine's id. */
  get machineId(): string {
    return this.#options.machine.machineId;
  }

  /** The process running (or paused) on the machine, if any. */
  get active(): RecipeProcess | undefined {
    return this.#active;
  }

  /**
   * Validates `recipe` (see `validateRecipe`), saves a new process, starts the machine and
   * runs the recipe in the background. Resolves once the process is running.
   *
   * @throws KilnValidationError (`KILN_VALIDATION`) listing every problem of the recipe; nothing ran.
   * @throws KilnError `KILN_INVALID_TRANSITION` when a process is already active on the machine,
   * or the machine binding refuses to begin (the process is then saved `failed`).
   * @throws the store's error when the new process cannot be saved; nothing ran.
   */
  async start(recipe: RecipeInput, options: StartRecipeOptions = {}): Promise<RecipeProcess> {
    if (this.#active !== undefined || this.#starting) {
      throw new KilnError(
        "KILN_INVALID_TRANSITION",
        `Machine "${this.machineId}" is already running process ${this.#active?.id ?? "(starting)"}: abort it or wait for it to end.`,
        { details: { machineId: this.machineId, processId: this.#active?.id, command: "start" } },
      );
    }
    this.#starting = true;
    try {
      const plan = await validateRecipe(recipe, {
        catalog: this.#options.catalog,
        resolveRecipe: this.#options.resolveRecipe,
        parameters: options.parameters,
        limits: this.#options.limits,
      });
      const run = new ProcessRun({
        id: options.processId ?? (this.#options.createId ?? defaultId)(),
        plan,
        options: this.#options,
        safeState: this.#safeState,
        progressSaveIntervalMs: this.#progressSaveIntervalMs,
        logger: this.#logger,
        onEnd: (ended) => {
          if (this.#active === ended) this.#active = undefined;
        },
      });
      this.#active = run;
      try {
        await run.begin();
      } catch (error) {
        if (this.#active === run) this.#active = undefined;
        throw error;
      }
      return run;
    } finally {
      this.#starting = false;
    }
  }

  /**
   * Writes the safe state, in order, each write attempted even when an earlier one fails.
   * Resolves with the writes that failed.
   */
  async applySafeState(): Promise<ProcessProblem[]> {
    return writeSafeState(this.#options.io, this.#safeState, this.#logger);
  }

  /**
   * The interlock action: aborts the active process with the machine faulted (safe state
   * written first), or, with no process running, writes the safe state and faults the machine.
   */
  async trip(reason: string): Promise<TripResult> {
    const active = this.#active;
    if (active !== undefined) {
      const result = await active.abort(reason, { fault: true });
      return { process: result, problems: result.problems };
    }
    const problems = await this.applySafeState();
    try {
      await this.#options.machine.fault(reason);
    } catch (error) {
      problems.push({ stage: "machine", error });
    }
    return { problems };
  }
}

interface ProcessRunInit {
  readonly id: string;
  readonly plan: RecipePlan;
  readonly options: RecipeExecutorOptions;
  readonly safeState: readonly SafeStateWrite[];
  readonly progressSaveIntervalMs: number;
  readonly logger: Logger;
  readonly onEnd: (run: ProcessRun) => void;
}

interface Frame {
  readonly values: Readonly<Record<string, ParameterValue>>;
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

interface StepOutcome {
  readonly outcome?: "completed" | "timeout";
  readonly actualMs?: number;
  readonly plannedMs?: number;
}

type ProcessEventType =
  "process-start" | "process-pause" | "process-resume" | "process-end" | "step-start" | "step-end";
type ProcessEventFields<TType extends ProcessEventType> = Omit<KilnEvents[TType], "at" | "aggregateId">;

class ProcessRun implements RecipeProcess {
  readonly id: string;
  readonly finished: Promise<ProcessResult>;
  readonly #init: ProcessRunInit;
  readonly #options: RecipeExecutorOptions;
  readonly #clock: Clock;
  readonly #controller = new AbortController();
  readonly #pending: NewDomainEvent[] = [];
  readonly #problems: ProcessProblem[] = [];
  readonly #pulseErrors: number[] = [];
  readonly #waitErrors: number[] = [];
  #record: ProcessRecord;
  #version = 0;
  #lastSaveAt: number;
  #lastSaveFailed = false;
  #lastSaveError: unknown;
  #stepsCompleted = 0;
  #ended = false;
  #abortRequest: { reason: string; fault: boolean } | undefined;
  #pauseRequest: Deferred | undefined;
  #resumeRequest: Deferred | undefined;
  #resumeWaiter: (() => void) | undefined;
  #finish!: (result: ProcessResult) => void;

  constructor(init: ProcessRunInit) {
    this.#init = init;
    this.#options = init.options;
    this.#clock = init.options.clock;
    this.id = init.id;
    const now = this.#clock.now();
    this.#lastSaveAt = now;
    this.#record = {
      id: init.id,
      machineId: init.options.machine.machineId,
      recipe: { name: init.plan.recipe.name, version: init.plan.recipe.version },
      parameters: { ...init.plan.parameters },
      status: "created",
      createdAt: now,
      version: 0,
    };
    this.finished = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  get status(): ProcessStatus {
    return this.#record.status;
  }

  get record(): ProcessRecord {
    return this.#record;
  }

  pause(): Promise<void> {
    if (this.#ended) return Promise.reject(this.#endedError("pause"));
    if (this.#record.status === "paused") return Promise.resolve();
    this.#pauseRequest ??= deferred();
    return this.#pauseRequest.promise;
  }

  resume(): Promise<void> {
    if (this.#ended) return Promise.reject(this.#endedError("resume"));
    if (this.#record.status !== "paused") {
      const pending = this.#pauseRequest;
      this.#pauseRequest = undefined;
      pending?.reject(
        new KilnError("KILN_INVALID_TRANSITION", `The pause of process ${this.id} was cancelled by resume.`, {
          details: { processId: this.id, command: "pause" },
        }),
      );
      return Promise.resolve();
    }
    if (this.#resumeRequest === undefined) {
      this.#resumeRequest = deferred();
      const waiter = this.#resumeWaiter;
      this.#resumeWaiter = undefined;
      waiter?.();
    }
    return this.#resumeRequest.promise;
  }

  abort(reason = "aborted by command", options: { readonly fault?: boolean } = {}): Promise<ProcessResult> {
    this.#requestAbort(reason, options.fault ?? false);
    return this.finished;
  }

  /** Saves the new process, starts the machine and launches the run. */
  async begin(): Promise<void> {
    await this.#save({ rethrow: true });
    try {
      await this.#options.machine.begin();
    } catch (error) {
      await this.#end("failed", describeError(error), error);
      throw error;
    }
    const startedAt = this.#clock.now();
    this.#update({ status: "running", startedAt });
    this.#emit("process-start", {
      processId: this.id,
      machineId: this.#record.machineId,
      recipe: this.#record.recipe,
      parameters: this.#record.parameters,
    });
    await this.#save();
    void this.#run();
  }

  async #run(): Promise<void> {
    let status: ProcessResult["status"] = "completed";
    let reason: string | undefined;
    let failure: unknown;
    try {
      await this.#steps(this.#init.plan.recipe.steps, "steps", { values: this.#init.plan.parameters }, true);
    } catch (error) {
      if (this.#controller.signal.aborted) {
        status = "aborted";
        reason = this.#abortRequest?.reason;
      } else {
        status = "failed";
        reason = describeError(error);
        failure = error;
      }
    }
    await this.#end(status, reason, failure);
  }

  async #end(status: ProcessResult["status"], reason: string | undefined, failure: unknown): Promise<void> {
    const machine = this.#options.machine;
    const begun = this.#record.status !== "created";
    if (status !== "completed" && begun) {
      this.#problems.push(...(await writeSafeState(this.#options.io, this.#init.safeState, this.#init.logger)));
    }
    if (begun) {
      const fault = status === "failed" || this.#abortRequest?.fault === true || this.#problems.length > 0;
      try {
        if (status === "completed") await machine.end("completed");
        else if (fault) await machine.fault(reason ?? status);
        else await machine.end("aborted");
      } catch (error) {
        this.#problems.push({ stage: "machine", error });
        this.#init.logger.error({ processId: this.id, error }, "the machine could not follow the process end");
      }
    }
    const endedAt = this.#clock.now();
    this.#ended = true;
    this.#update({ status, endedAt, ...(reason === undefined ? {} : { reason }) });
    this.#emit("process-end", {
      processId: this.id,
      machineId: this.#record.machineId,
      reason: status,
      ...(reason === undefined ? {} : { message: reason }),
      ...(this.#record.lastCompletedStep === undefined ? {} : { lastCompletedStep: this.#record.lastCompletedStep }),
      durationMs: endedAt - (this.#record.startedAt ?? this.#record.createdAt),
    });
    await this.#save();
    if (this.#lastSaveFailed) this.#problems.push({ stage: "save", error: this.#lastSaveError });
    const ended = this.#endedError("pause");
    this.#pauseRequest?.reject(ended);
    this.#resumeRequest?.reject(ended);
    this.#pauseRequest = this.#resumeRequest = undefined;
    this.#init.onEnd(this);
    this.#finish({
      processId: this.id,
      status,
      ...(reason === undefined ? {} : { reason }),
      ...(failure === undefined ? {} : { error: failure }),
      ...(this.#record.lastCompletedStep === undefined ? {} : { lastCompletedStep: this.#record.lastCompletedStep }),
      stepsCompleted: this.#stepsCompleted,
      startedAt: this.#record.startedAt ?? this.#record.createdAt,
      endedAt,
      timing: { pulse: timingStats(this.#pulseErrors), wait: timingStats(this.#waitErrors) },
      problems: [...this.#problems],
      persisted: !this.#lastSaveFailed && this.#pending.length === 0,
    });
  }

  async #steps(steps: readonly RecipeStep[], path: string, frame: Frame, topLevel: boolean): Promise<void> {
    for (const [index, step] of steps.entries()) {
      await this.#step(step, `${path}[${index}]`, frame);
      if (topLevel) await this.#save();
    }
  }

  async #step(step: RecipeStep, path: string, frame: Frame): Promise<void> {
    await this.#boundary(path);
    const kind = stepKindOf(step);
    const plannedMs = this.#planned(step, frame);
    const startedAt = this.#clock.now();
    this.#emit("step-start", { processId: this.id, path, kind, ...(plannedMs === undefined ? {} : { plannedMs }) });
    let outcome: StepOutcome;
    try {
      outcome = await this.#execute(step, kind, path, frame);
    } catch (error) {
      this.#stepEnd(kind, path, startedAt, { plannedMs }, this.#controller.signal.aborted ? "aborted" : "failed");
      throw error;
    }
    this.#stepEnd(kind, path, startedAt, { ...outcome, plannedMs }, outcome.outcome ?? "completed");
    this.#update({ lastCompletedStep: path });
    if (kind !== "loop" && kind !== "call") this.#stepsCompleted++;
  }

  #stepEnd(
    kind: RecipeStepKind,
    path: string,
    startedAt: number,
    timing: StepOutcome,
    outcome: KilnEvents["step-end"]["outcome"],
  ): void {
    const actualMs = timing.actualMs ?? this.#clock.now() - startedAt;
    const measured = outcome === "completed" && (kind === "pulse" || kind === "wait") && timing.plannedMs !== undefined;
    this.#emit("step-end", {
      processId: this.id,
      path,
      kind,
      startedAt,
      ...(timing.plannedMs === undefined ? {} : { plannedMs: timing.plannedMs }),
      actualMs,
      ...(measured ? { errorMs: actualMs - timing.plannedMs! } : {}),
      outcome,
    });
  }

  #planned(step: RecipeStep, frame: Frame): number | undefined {
    if ("pulse" in step) return numberOf(step.pulse.durationMs, frame);
    if ("wait" in step) return numberOf(step.wait.durationMs, frame);
    if ("ramp" in step) return numberOf(step.ramp.durationMs, frame);
    return undefined;
  }

  async #execute(step: RecipeStep, kind: RecipeStepKind, path: string, frame: Frame): Promise<StepOutcome> {
    switch (kind) {
      case "set": {
        const body = (step as SetStep).set;
        await this.#options.io.write(body.tag, valueOf(body.value, frame), this.#controller.signal);
        return {};
      }
      case "pulse":
        return this.#pulse((step as PulseStep).pulse, frame);
      case "wait": {
        const planned = numberOf((step as WaitStep).wait.durationMs, frame);
        const start = this.#clock.now();
        await this.#clock.sleep(planned, this.#controller.signal);
        const actualMs = this.#clock.now() - start;
        this.#waitErrors.push(actualMs - planned);
        return { actualMs };
      }
      case "waitUntil":
        return this.#waitUntil((step as WaitUntilStep).waitUntil, path, frame);
      case "ramp":
        await this.#ramp((step as RampStep).ramp, frame);
        return {};
      case "loop": {
        const body = (step as LoopStep).loop;
        const count = numberOf(body.count, frame);
        for (let iteration = 0; iteration < count; iteration++) {
          await this.#steps(body.steps, `${path}.loop[${iteration}].steps`, frame, false);
        }
        return {};
      }
      case "call": {
        const body = (step as CallStep).call;
        const callee = this.#init.plan.calls.get(recipeKey(body.recipe, body.version))!;
        const values: Record<string, ParameterValue> = {};
        for (const [name, definition] of Object.entries(callee.parameters)) values[name] = definition.default;
        for (const [name, value] of Object.entries(body.parameters ?? {})) values[name] = valueOf(value, frame);
        await this.#steps(callee.steps, `${path}.call.steps`, { values }, false);
        return {};
      }
    }
  }

  async #pulse(body: PulseStep["pulse"], frame: Frame): Promise<StepOutcome> {
    const io = this.#options.io;
    const planned = numberOf(body.durationMs, frame);
    let failure: { error: unknown } | undefined;
    let onAt = this.#clock.now();
    try {
      await io.write(body.tag, valueOf(body.on, frame), this.#controller.signal);
      onAt = this.#clock.now();
      await this.#clock.sleep(planned, this.#controller.signal);
    } catch (error) {
      failure = { error };
    }
    try {
      // Without the signal: an aborted pulse must still close.
      await io.write(body.tag, valueOf(body.off, frame));
    } catch (error) {
      if (failure === undefined) throw error;
      this.#problems.push({ stage: "pulse-off", tag: body.tag, error });
      this.#init.logger.error({ processId: this.id, tag: body.tag, error }, "a pulse's off value could not be written");
    }
    if (failure !== undefined) throw failure.error;
    const actualMs = this.#clock.now() - onAt;
    this.#pulseErrors.push(actualMs - planned);
    return { actualMs };
  }

  async #waitUntil(body: WaitUntilStep["waitUntil"], path: string, frame: Frame): Promise<StepOutcome> {
    const { tag, op } = body.condition;
    const target = valueOf(body.condition.value, frame);
    const timeoutMs = numberOf(body.timeoutMs, frame);
    const holds = (sample: Sample | undefined): boolean =>
      sample !== undefined && sample.quality.severity === "good" && compare(sample.value, op, target);
    const met = await this.#until(tag, holds, timeoutMs);
    if (met) return {};
    const condition = `${tag} ${op} ${String(target)}`;
    if (body.onTimeout === "continue") return { outcome: "timeout" };
    if (body.onTimeout === "abort") {
      this.#requestAbort(`waitUntil ${condition} timed out after ${timeoutMs} ms at ${path}`, false);
      throw this.#controller.signal.reason;
    }
    throw new KilnError("KILN_TIMEOUT", `waitUntil ${condition} did not hold within ${timeoutMs} ms at ${path}.`, {
      details: { processId: this.id, path, tag, op, value: target, timeoutMs },
    });
  }

  /** Resolves true as soon as `holds` is true of the tag's current or a new sample, false after `timeoutMs`. */
  #until(tag: string, holds: (sample: Sample | undefined) => boolean, timeoutMs: number): Promise<boolean> {
    const io = this.#options.io;
    const signal = this.#controller.signal;
    if (holds(io.current(tag))) return Promise.resolve(true);
    return new Promise<boolean>((resolve, reject) => {
      let settled = false;
      // Filled once subscribed; a listener may fire synchronously while subscribing.
      const subscription: { dispose?: Disposer } = {};
      const settle = (finish: () => void): void => {
        if (settled) return;
        settled = true;
        subscription.dispose?.();
        this.#clock.clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        finish();
      };
      const onAbort = (): void => settle(() => reject(signal.reason));
      const timer = this.#clock.setTimeout(() => settle(() => resolve(false)), timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      subscription.dispose = io.onChange(tag, (sample) => {
        if (holds(sample)) settle(() => resolve(true));
      });
      if (settled) subscription.dispose();
      else if (signal.aborted) onAbort();
      else if (holds(io.current(tag))) settle(() => resolve(true));
    });
  }

  async #ramp(body: RampStep["ramp"], frame: Frame): Promise<void> {
    const from = numberOf(body.from, frame);
    const to = numberOf(body.to, frame);
    const durationMs = numberOf(body.durationMs, frame);
    const integer = INTEGER_TYPES.has(this.#options.catalog.get(body.tag).dataType);
    const start = this.#clock.now();
    for (let index = 0; index <= body.steps; index++) {
      if (index > 0) {
        // Each increment is due at a fixed offset from the start, so slow writes do not stretch the ramp.
        const due = start + (durationMs * index) / body.steps;
        await this.#clock.sleep(Math.max(0, due - this.#clock.now()), this.#controller.signal);
      }
      let value = index === body.steps ? to : from + ((to - from) * index) / body.steps;
      if (integer) value = Math.round(value);
      await this.#options.io.write(body.tag, value, this.#controller.signal);
    }
  }

  /** A step boundary: abort check, pause point, periodic progress save. */
  async #boundary(nextStep: string): Promise<void> {
    this.#throwIfAborted();
    if (this.#pauseRequest !== undefined) await this.#pauseAt(nextStep);
    if (this.#clock.now() - this.#lastSaveAt >= this.#init.progressSaveIntervalMs) await this.#save();
  }

  async #pauseAt(nextStep: string): Promise<void> {
    const request = this.#pauseRequest!;
    try {
      await this.#options.machine.pause();
    } catch (error) {
      if (this.#pauseRequest === request) this.#pauseRequest = undefined;
      request.reject(error);
      return;
    }
    if (this.#pauseRequest === request) this.#pauseRequest = undefined;
    const pausedAt = this.#clock.now();
    this.#update({ status: "paused" });
    this.#emit("process-pause", { processId: this.id, machineId: this.#record.machineId, nextStep });
    await this.#save();
    request.resolve();
    for (;;) {
      const resume = await this.#nextResume();
      try {
        await this.#options.machine.resume();
      } catch (error) {
        this.#resumeRequest = undefined;
        resume.reject(error);
        continue;
      }
      this.#resumeRequest = undefined;
      this.#update({ status: "running" });
      this.#emit("process-resume", {
        processId: this.id,
        machineId: this.#record.machineId,
        pausedMs: this.#clock.now() - pausedAt,
      });
      await this.#save();
      resume.resolve();
      return;
    }
  }

  /** Waits for a resume request; rejects with the abort reason if the process is aborted first. */
  #nextResume(): Promise<Deferred> {
    const signal = this.#controller.signal;
    return new Promise<Deferred>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#resumeWaiter = undefined;
        reject(signal.reason);
      };
      const take = (): void => {
        signal.removeEventListener("abort", onAbort);
        resolve(this.#resumeRequest!);
      };
      if (this.#resumeRequest !== undefined) {
        take();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.#resumeWaiter = take;
    });
  }

  #requestAbort(reason: string, fault: boolean): void {
    if (this.#ended || this.#controller.signal.aborted) return;
    this.#abortRequest = { reason, fault };
    this.#controller.abort(
      new KilnError("KILN_ABORTED", `Process ${this.id} was aborted: ${reason}`, {
        details: { processId: this.id, machineId: this.#record.machineId, reason },
      }),
    );
  }

  #throwIfAborted(): void {
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
  }

  #endedError(command: string): KilnError {
    return new KilnError(
      "KILN_INVALID_TRANSITION",
      `Process ${this.id} has ended (${this.#record.status}); it cannot ${command}.`,
      { details: { processId: this.id, status: this.#record.status, command } },
    );
  }

  #update(changes: Partial<ProcessRecord>): void {
    this.#record = { ...this.#record, ...changes };
  }

  #emit<TType extends ProcessEventType>(type: TType, fields: ProcessEventFields<TType>): void {
    const at = this.#clock.now();
    this.#pending.push({ type, payload: { ...fields }, at });
    void this.#options.bus?.publish(type, { at, aggregateId: this.id, ...fields } as KilnEvents[TType]);
  }

  /** Saves the record with the pending events. Failures are reported and the events kept, unless `rethrow`. */
  async #save(options: { rethrow?: boolean } = {}): Promise<void> {
    const count = this.#pending.length;
    const events = this.#pending.slice(0, count);
    const record: ProcessRecord = { ...this.#record, version: this.#version + count };
    try {
      this.#version = await this.#options.processes.save(record, events, this.#version);
      this.#pending.splice(0, count);
      this.#record = { ...this.#record, version: this.#version };
      this.#lastSaveFailed = false;
    } catch (error) {
      if (options.rethrow === true) throw error;
      this.#lastSaveFailed = true;
      this.#lastSaveError = error;
      this.#init.logger.warn(
        { processId: this.id, error },
        "the process could not be saved; retrying at the next save",
      );
      void this.#options.bus?.publish("process-save-fail", {
        at: this.#clock.now(),
        processId: this.id,
        pendingEvents: count,
        error,
      });
    } finally {
      this.#lastSaveAt = this.#clock.now();
    }
  }
}

async function writeSafeState(
  io: RecipeIo,
  writes: readonly SafeStateWrite[],
  logger: Logger,
): Promise<ProcessProblem[]> {
  const problems: ProcessProblem[] = [];
  for (const write of writes) {
    try {
      await io.write(write.tag, write.value);
    } catch (error) {
      problems.push({ stage: "safe-state", tag: write.tag, error });
      logger.error({ tag: write.tag, error }, "a safe-state write failed");
    }
  }
  return problems;
}

function checkSafeState(catalog: TagCatalog, writes: readonly SafeStateWrite[]): readonly SafeStateWrite[] {
  const issues: ValidationIssue[] = [];
  writes.forEach((write, index) => {
    const tag = catalog.find(write.tag);
    if (tag === undefined) issues.push({ path: `safeState[${index}].tag`, message: `unknown tag "${write.tag}"` });
    else if (tag.access !== "readwrite") {
      issues.push({ path: `safeState[${index}].tag`, message: `tag "${write.tag}" is read-only` });
    } else {
      const problem = checkTagValue(tag, write.value);
      if (problem !== undefined) issues.push({ path: `safeState[${index}].value`, message: problem });
    }
  });
  if (issues.length > 0) throw new KilnValidationError("recipe executor options", issues);
  return Object.freeze(writes.map((write) => Object.freeze({ ...write })));
}

function valueOf(value: RecipeValue, frame: Frame): ParameterValue {
  return isParameterRef(value) ? frame.values[value.param]! : value;
}

function numberOf(value: RecipeValue, frame: Frame): number {
  return valueOf(value, frame) as number;
}

function compare(actual: Sample["value"], op: ConditionOperator, target: ParameterValue): boolean {
  if (actual === null) return false;
  const left = typeof actual === "bigint" ? Number(actual) : actual;
  switch (op) {
    case "==":
      return left === target;
    case "!=":
      return left !== target;
    case "<":
      return typeof left === "number" && left < (target as number);
    case "<=":
      return typeof left === "number" && left <= (target as number);
    case ">":
      return typeof left === "number" && left > (target as number);
    case ">=":
      return typeof left === "number" && left >= (target as number);
  }
}

/** Nearest-rank percentiles of `errors`. */
function timingStats(errors: readonly number[]): TimingStats {
  if (errors.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const sorted = [...errors].sort((a, b) => a - b);
  const rank = (quantile: number): number => sorted[Math.max(0, Math.ceil(quantile * sorted.length) - 1)]!;
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted.at(-1)! };
}

function describeError(error: unknown): string {
  if (KilnError.is(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  return { promise, resolve, reject };
}

function defaultId(): string {
  return globalThis.crypto.randomUUID();
}
