import { sayingLess } from "../domain/refusal-disclosure";
import { KilnError } from "../domain/errors";
import { raceAbort } from "../driver-kit/abort";
import type { KilnEvents } from "../events/catalogue";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import type { ProcessRecord, ProcessStatus } from "@kiln/core/driver-kit";
import { PauseHandshake } from "./pause-handshake";
import type { RecipeIo, WriteOrigin } from "./recipe-io";
import { ProcessJournal } from "./process-journal";
import type { ProcessPrincipal, RecipeExecutorOptions } from "./recipe-executor";
import type { PlannedStep, RecipePlan } from "./recipe-plan";
import { timingStats, type ProcessProblem, type ProcessResult, type RecipeProcess } from "./recipe-process";
import type { ParameterValue, RecipeStepKind } from "./recipe-schema";
import { writeSafeState, type SafeStateWrite } from "./safe-state";
import {
  plannedMsOf,
  runPulse,
  runRamp,
  runSet,
  runWait,
  runWaitUntil,
  valueOf,
  type Frame,
  type StepOutcome,
  type StepRunContext,
} from "./step-runners";

/** What a {@link ProcessRun} needs from its executor. */
export interface ProcessRunInit {
  readonly id: string;
  readonly plan: RecipePlan;
  /** Every tag the run can write (steps and safe state). */
  readonly writeSet: readonly string[];
  /** Who started it. */
  readonly startedBy?: ProcessPrincipal;
  readonly options: RecipeExecutorOptions;
  readonly safeState: readonly SafeStateWrite[];
  /** Told the outcome of each writing of the safe state (its failures; empty when all were written). */
  readonly onSafeState?: (problems: readonly ProcessProblem[]) => void;
  /**
   * Told, before any await, that the run is about to bring the machine to its safe state: its
   * abort, stop or fault was asked for, or it failed on its own (review 15f, H1). A manual write
   * issued before this is not sent after it.
   */
  readonly onSafeStateBegin?: () => void;
  /** The executor's halt of safe-state writing (fix15z): see `writeSafeState`'s `halt`. */
  readonly safeStateHalt?: () => AbortSignal;
  /** Told of each step write to `tag` that succeeded. */
  readonly onStepWrite?: (tag: string) => void;
  /**
   * Told of a write the step no longer waited for that failed: a pulse's off write after the
   * pulse was aborted or failed (`pulse-off`), a step write sent before the process was aborted
   * (`step-write`).
   */
  readonly onLateWriteFailure?: (problem: ProcessProblem) => void;
  /**
   * Told once when the run, having begun, fails on its own (a step failed, not an abort, stop or
   * fault asked for), as soon as its effect is done (safe state written, machine faulted), before
   * its record's last save: the control system audits it (review 15j, M2).
   */
  readonly onFailed?: (failure: ProcessFailure) => void;
  readonly progressSaveIntervalMs: number;
  readonly logger: Logger;
  readonly onEnd: (run: ProcessRun) => void;
}

/** A run that failed on its own (see {@link ProcessRunInit.onFailed}). */
export interface ProcessFailure {
  readonly processId: string;
  readonly recipe: { readonly name: string; readonly version: number };
  /** Who started it, when known. */
  readonly startedBy?: ProcessPrincipal;
  /** Why it failed (the step's error, in words). */
  readonly reason: string;
  /** What its safe state and machine met (the same problems its result reports at that point). */
  readonly problems: readonly ProcessProblem[];
}

/**
 * One process: runs a plan's steps with the step runners, keeps its {@link ProcessJournal},
 * takes pauses through the {@link PauseHandshake}, and writes the safe state when it does not
 * complete. See `RecipeExecutor` for the life of a process.
 */
export class ProcessRun implements RecipeProcess {
  readonly id: string;
  readonly finished: Promise<ProcessResult>;
  readonly #init: ProcessRunInit;
  readonly #options: RecipeExecutorOptions;
  readonly #clock: Clock;
  readonly #controller = new AbortController();
  readonly #journal: ProcessJournal;
  readonly #handshake: PauseHandshake;
  readonly #context: StepRunContext;
  readonly #origin: WriteOrigin;
  readonly #problems: ProcessProblem[] = [];
  readonly #pulseErrors: number[] = [];
  readonly #waitErrors: number[] = [];
  #stepsCompleted = 0;
  /** The steps began to run (begin() returned): a failure now is the run's own (see {@link ProcessRunInit.onFailed}). */
  #stepsBegun = false;
  /** `finished` is about to resolve (the record's last save is done). */
  #finished = false;
  #ended = false;
  #abortRequest: { reason: string; fault: boolean; faultReason?: string } | undefined;
  /** This run wrote the safe state (its abort or failure). */
  #safeStateWritten = false;
  /** This run failed on its own and is writing its safe state (review 15f, H1). */
  #failing = false;
  /** This run asked the machine to fault. */
  #faulted = false;
  /** The machine reached the process's end state (or could not follow): later requests act on their own. */
  #machineSettled = false;
  /** Resolves once the machine reached the process's end state, with the problems met so far. */
  readonly #effect: Promise<readonly ProcessProblem[]>;
  #settle!: (problems: readonly ProcessProblem[]) => void;
  /** Writes the steps no longer wait for (a pulse's off, a write in flight at the abort; reviews 15t M2, 15s M3). */
  readonly #closing = new Map<Promise<void>, string>();
  /** The effect is done (safe state written, machine at its end state): only late writes and the record's last save remain. */
  #effectDone = false;
  /** True while {@link begin} saves the new process, before the machine is asked to begin. */
  #savingFirst = false;
  /** The effect of a halt asked for while the first save was under way (review 15w, M3). */
  #earlyEffect: Promise<void> | undefined;
  /** A fault asked for after the machine reached its end state (a trip while the record saves). */
  #lateFault: Promise<readonly ProcessProblem[]> | undefined;
  #finish!: (result: ProcessResult) => void;

  constructor(init: ProcessRunInit) {
    this.#init = init;
    this.#options = init.options;
    this.#clock = init.options.clock;
    this.id = init.id;
    this.#journal = new ProcessJournal({
      record: {
        id: init.id,
        machineId: init.options.machine.machineId,
        recipe: { name: init.plan.recipe.name, version: init.plan.recipe.version },
        parameters: { ...init.plan.parameters },
        status: "created",
        createdAt: this.#clock.now(),
        version: 0,
      },
      processes: init.options.processes,
      clock: this.#clock,
      bus: init.options.bus,
      logger: init.logger,
    });
    this.#handshake = new PauseHandshake({
      processId: init.id,
      machine: init.options.machine,
      clock: this.#clock,
      signal: this.#controller.signal,
      onPaused: async (nextStep) => {
        this.#journal.update({ status: "paused" });
        this.#journal.emit("process-pause", { processId: this.id, machineId: this.record.machineId, nextStep });
        await this.#journal.save();
      },
      onResumed: async (pausedMs) => {
        this.#journal.update({ status: "running" });
        this.#journal.emit("process-resume", { processId: this.id, machineId: this.record.machineId, pausedMs });
        await this.#journal.save();
      },
    });
    const origin: WriteOrigin = {
      processId: init.id,
      ...(init.startedBy === undefined ? {} : { principal: init.startedBy.id }),
    };
    this.#origin = origin;
    this.#context = {
      processId: init.id,
      origin,
      io: this.#trackedIo(init.options.io),
      clock: this.#clock,
      catalog: init.options.catalog,
      logger: init.logger,
      signal: this.#controller.signal,
      pulseErrors: this.#pulseErrors,
      waitErrors: this.#waitErrors,
      problems: this.#problems,
      abort: (reason) => {
        this.#requestAbort(reason, false);
        return this.#controller.signal.reason;
      },
      closeLater: (tag, write) => this.#closeLater(tag, write, "pulse-off"),
    };
    this.finished = new Promise((resolve) => {
      this.#finish = resolve;
    });
    this.#effect = new Promise((resolve) => {
      this.#settle = resolve;
    });
  }

  /**
   * While the process is ending after its effect (safe state written, machine at its end state):
   * the tags of the writes it sent before its abort that have not settled yet (each bounded by the
   * driver's write timeout), and whether its record's last save is still to come. Undefined while
   * the process runs, and once it has finished.
   */
  get ending(): { readonly lateWrites: readonly string[] } | undefined {
    if (!this.#effectDone || this.#finished) return undefined;
    return { lateWrites: [...new Set(this.#closing.values())] };
  }

  /** True once it was asked to stop, abort or fault, or its machine reached its end state: it no longer runs. */
  get halting(): boolean {
    return this.#abortRequest !== undefined || this.#machineSettled;
  }

  /**
   * True from the moment its abort, stop or fault is asked for (or it fails on its own) until the
   * machine is at its end state with the safe state written: a manual write meanwhile is refused
   * (review 15f, H1).
   */
  get actingSafeState(): boolean {
    return (this.#abortRequest !== undefined || this.#failing) && !this.#machineSettled;
  }

  get pauseRequested(): boolean {
    return this.#handshake.pauseRequested;
  }

  get status(): ProcessStatus {
    return this.#journal.record.status;
  }

  get record(): ProcessRecord {
    return this.#journal.record;
  }

  pause(): Promise<void> {
    if (this.#ended) return Promise.reject(this.#endedError("pause"));
    if (this.status === "paused") return Promise.resolve();
    return this.#handshake.requestPause();
  }

  resume(): Promise<void> {
    if (this.#ended) return Promise.reject(this.#endedError("resume"));
    if (this.status !== "paused") {
      this.#handshake.cancelPause();
      return Promise.resolve();
    }
    return this.#handshake.requestResume();
  }

  abort(reason = "aborted by command", options: { readonly fault?: boolean } = {}): Promise<ProcessResult> {
    void this.halt(reason, options);
    return this.finished;
  }

  /**
   * Aborts the process (as {@link abort}) and resolves once its effect is done: the safe state
   * written and the machine at the process's end state (`idle`/`stopped`, or faulted to
   * `error`/`aborted`), without waiting for the process record's final save (that continues;
   * {@link finished} waits for it). A later, stronger request escalates: a fault asked for while
   * a stop is under way faults the machine once it has stopped. A fault asked for after the
   * machine reached its end state (the record still saving) writes the safe state again and
   * faults the machine itself: an interlock trip never does nothing (adversarial review 15z, H1/H2).
   * Never rejects: the problems met (a safe-state write refused, a machine that could not follow)
   * are in the answer.
   */
  halt(reason: string, options: { readonly fault?: boolean } = {}): Promise<readonly ProcessProblem[]> {
    const fault = options.fault ?? false;
    if (!this.#machineSettled) {
      this.#requestAbort(reason, fault);
      // The machine has not begun: the effect (the safe state and the fault, when asked for) is
      // done now, not after the first save, which a slow store can hold (review 15w, M3).
      if (this.#savingFirst) this.#earlyEffect ??= this.#actBeforeBegin();
      return this.#effect;
    }
    if (!fault) return Promise.resolve([]);
    this.#lateFault ??= this.#faultAfterEnd(reason);
    return this.#lateFault;
  }

  /** Saves the new process, starts the machine and launches the run. */
  async begin(): Promise<void> {
    this.#savingFirst = true;
    try {
      await this.#journal.save({ rethrow: true });
    } catch (error) {
      this.#savingFirst = false;
      // Nothing ran; a trip asked for meanwhile still writes the safe state and faults the machine.
      await this.#earlyEffect;
      await this.#faultIfRequested();
      this.#machineSettled = true;
      this.#settle([...this.#problems]);
      throw error;
    }
    this.#savingFirst = false;
    if (this.#controller.signal.aborted) {
      // Halted while it was saved: the machine never begins, no step runs. Its effect is done
      // (or under way); the record ends `aborted`, saved after it (review 15w, M3).
      await this.#earlyEffect;
      void this.#end("aborted", this.#abortRequest?.reason, undefined);
      return;
    }
    try {
      await this.#options.machine.begin();
    } catch (error) {
      await this.#end("failed", describeError(error), error);
      throw error;
    }
    const startedAt = this.#clock.now();
    this.#journal.update({ status: "running", startedAt });
    this.#journal.emit("process-start", {
      processId: this.id,
      machineId: this.record.machineId,
      recipe: this.record.recipe,
      parameters: this.record.parameters,
      writeSet: [...this.#init.writeSet],
      ...(this.#init.startedBy === undefined
        ? {}
        : { startedBy: { id: this.#init.startedBy.id, roles: [...this.#init.startedBy.roles] } }),
    });
    await this.#journal.save();
    this.#stepsBegun = true;
    void this.#run();
  }

  async #run(): Promise<void> {
    let status: ProcessResult["status"] = "completed";
    let reason: string | undefined;
    let failure: unknown;
    try {
      await this.#steps(this.#init.plan.steps, "steps", { values: this.#init.plan.parameters }, true);
      // Aborted after its last step, before its end (while it saved that step): it ends aborted,
      // with the safe state written, not completed (adversarial review 15z, H2).
      this.#throwIfAborted();
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
    const begun = this.record.status !== "created";
    if (status !== "completed" && begun && this.#abortRequest === undefined) {
      // Failed on its own: fenced as an abort is, before any await (review 15f, H1).
      this.#failing = true;
      this.#init.onSafeStateBegin?.();
    }
    if (status !== "completed" && begun) await this.#writeSafeState();
    if (begun) {
      const fault = status === "failed" || this.#abortRequest?.fault === true || this.#problems.length > 0;
      if (fault && status !== "completed") this.#faulted = true;
      try {
        if (status === "completed") await machine.end("completed");
        else if (fault) await machine.fault(this.#abortRequest?.faultReason ?? reason ?? status);
        else await machine.end("aborted");
      } catch (error) {
        this.#machineProblem(error);
      }
    }
    // A fault asked for while the machine moved (a trip during a stop) still faults it: the
    // stronger request made before the machine reached its end state wins (review 15z, H1).
    await this.#faultIfRequested();
    this.#machineSettled = true;
    // The effect is done: a safety function answers now, the record's save continues (review 15z, M4).
    this.#settle([...this.#problems]);
    this.#effectDone = true;
    // A run that failed on its own is audited like every other end (review 15j, M2): not a failure
    // of begin() (the start's own `:fail` tells it), nor an abort, stop or fault (their command's entry does).
    if (status === "failed" && this.#stepsBegun && this.#abortRequest === undefined) {
      try {
        this.#init.onFailed?.({
          processId: this.id,
          recipe: this.record.recipe,
          ...(this.#init.startedBy === undefined ? {} : { startedBy: this.#init.startedBy }),
          reason: reason ?? "failed",
          problems: [...this.#problems],
        });
      } catch (error) {
        this.#init.logger.error({ processId: this.id, error }, "the process failure listener threw");
      }
    }
    // A write the steps no longer waited for (a pulse's off, a step write in flight at the abort)
    // is not awaited by the effect (unless its tag is a safe-state tag: then the safe state waited
    // for it), but the result reports its failure (reviews 15t M2, 15s M3).
    while (this.#closing.size > 0) await Promise.all([...this.#closing.keys()]);
    const endedAt = this.#clock.now();
    this.#ended = true;
    this.#journal.update({ status, endedAt, ...(reason === undefined ? {} : { reason }) });
    const record = this.record;
    // A process the machine refused to begin never started: its record says failed, and no
    // `process-end` follows a `process-start` that never was (adversarial review 15y, L8).
    if (begun) {
      this.#journal.emit("process-end", {
        processId: this.id,
        machineId: record.machineId,
        reason: status,
        ...(reason === undefined ? {} : { message: reason }),
        ...(record.lastCompletedStep === undefined ? {} : { lastCompletedStep: record.lastCompletedStep }),
        durationMs: endedAt - (record.startedAt ?? record.createdAt),
      });
    }
    await this.#journal.save();
    const saveFailure = this.#journal.saveFailure;
    if (saveFailure !== undefined) this.#problems.push({ stage: "save", error: saveFailure.error });
    this.#handshake.end((command) => this.#endedError(command));
    this.#finished = true;
    this.#init.onEnd(this);
    this.#finish({
      processId: this.id,
      status,
      ...(reason === undefined ? {} : { reason }),
      ...(failure === undefined ? {} : { error: failure }),
      ...(record.lastCompletedStep === undefined ? {} : { lastCompletedStep: record.lastCompletedStep }),
      stepsCompleted: this.#stepsCompleted,
      startedAt: record.startedAt ?? record.createdAt,
      endedAt,
      timing: { pulse: timingStats(this.#pulseErrors), wait: timingStats(this.#waitErrors) },
      problems: [...this.#problems],
      persisted: this.#journal.persisted,
    });
  }

  async #steps(steps: readonly PlannedStep[], path: string, frame: Frame, topLevel: boolean): Promise<void> {
    for (const [index, step] of steps.entries()) {
      await this.#step(step, `${path}[${index}]`, frame);
      if (topLevel) await this.#unlessAborted(this.#journal.save());
    }
  }

  async #step(step: PlannedStep, path: string, frame: Frame): Promise<void> {
    await this.#boundary(path);
    const kind = step.kind;
    const plannedMs = plannedMsOf(step, frame);
    const startedAt = this.#clock.now();
    this.#journal.emit("step-start", {
      processId: this.id,
      path,
      kind,
      ...(plannedMs === undefined ? {} : { plannedMs }),
    });
    let outcome: StepOutcome;
    try {
      outcome = await this.#execute(step, path, frame);
    } catch (error) {
      this.#stepEnd(kind, path, startedAt, { plannedMs }, this.#controller.signal.aborted ? "aborted" : "failed");
      throw error;
    }
    this.#stepEnd(kind, path, startedAt, { ...outcome, plannedMs }, outcome.outcome ?? "completed");
    this.#journal.update({ lastCompletedStep: path });
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
    this.#journal.emit("step-end", {
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

  async #execute(step: PlannedStep, path: string, frame: Frame): Promise<StepOutcome> {
    const context = this.#context;
    switch (step.kind) {
      case "set":
        return runSet(step.body, frame, context);
      case "pulse":
        return runPulse(step.body, frame, context);
      case "wait":
        return runWait(step.body, frame, context);
      case "waitUntil":
        return runWaitUntil(step.body, path, frame, context);
      case "ramp":
        return runRamp(step.body, frame, context);
      case "loop": {
        const count = valueOf(step.body.count, frame) as number;
        for (let iteration = 0; iteration < count; iteration++) {
          await this.#steps(step.body.steps, `${path}.loop[${iteration}].steps`, frame, false);
        }
        return {};
      }
      case "call": {
        const values: Record<string, ParameterValue> = Object.create(null) as Record<string, ParameterValue>;
        for (const [name, definition] of Object.entries(step.callee.recipe.parameters))
          values[name] = definition.default;
        for (const [name, value] of Object.entries(step.body.parameters ?? {})) values[name] = valueOf(value, frame);
        await this.#steps(step.callee.steps, `${path}.call.steps`, { values }, false);
        return {};
      }
    }
  }

  /** A step boundary: abort check, pause point, periodic progress save. */
  async #boundary(nextStep: string): Promise<void> {
    this.#throwIfAborted();
    if (this.#handshake.pauseRequested) await this.#handshake.pauseAt(nextStep);
    if (this.#clock.now() - this.#journal.lastSaveAt >= this.#init.progressSaveIntervalMs) {
      await this.#unlessAborted(this.#journal.save());
      this.#throwIfAborted();
    }
  }

  /**
   * Waits for a progress save unless the process is aborted meanwhile: an abort writes the safe
   * state and moves the machine without waiting for a slow store (adversarial review 15z, M4).
   * The save goes on; the journal keeps the saves in order, so the final one follows it.
   */
  async #unlessAborted(save: Promise<void>): Promise<void> {
    const signal = this.#controller.signal;
    if (signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
      void save.then(done, done);
    });
  }

  /**
   * The steps' device access. Writes to one tag go out in order whoever makes them (the system's
   * write path chains them per tag: a pulse's off after its on, the next process's or an
   * operator's write after this one's; reviews 15t H1, 15s M3). A step write, once sent, is not
   * cut off by an abort: the request may be on the fieldbus, so it goes on (bounded by the
   * driver's write timeout) while the step answers the abort at once, and the run takes it over
   * ({@link #closeLater}: its failure is a `step-write` problem, never lost). A write still
   * waiting for its tag is not sent once the step's signal aborts.
   */
  #trackedIo(io: RecipeIo): RecipeIo {
    const stale = io.stale;
    return {
      current: (tag) => io.current(tag),
      ...(stale === undefined ? {} : { stale: (tag: string) => stale.call(io, tag) }),
      onChange: (tag, listener) => io.onChange(tag, listener),
      write: (tag, value, signal, origin) => {
        const sent = io.write(tag, value, signal, origin);
        void sent.then(
          () => this.#init.onStepWrite?.(tag),
          () => undefined,
        );
        if (signal === undefined) return sent;
        return raceAbort(sent, signal).catch((error: unknown) => {
          if (!signal.aborted) throw error;
          // Not sent (rejected with the signal's reason) or sent and still in flight: taken over.
          this.#closeLater(
            tag,
            sent.catch((failure: unknown) => {
              if (failure !== signal.reason) throw failure;
            }),
            "step-write",
          );
          throw signal.reason;
        });
      },
    };
  }

  /**
   * Takes over a write the step no longer waits for: a pulse's off write sent at an abort or
   * failure, a step write in flight at the abort. A stuck write to a tag the safe state does not
   * write delays nothing; a failure becomes a problem of the result (`pulse-off`, `step-write`)
   * and is reported to the executor (health), never lost.
   */
  #closeLater(tag: string, write: Promise<void>, stage: "pulse-off" | "step-write"): void {
    const closing = write.then(
      () => undefined,
      (error: unknown) => {
        const problem: ProcessProblem = { stage, tag, error };
        this.#problems.push(problem);
        this.#init.logger.error(
          { processId: this.id, tag, error },
          stage === "pulse-off"
            ? "a pulse's off value could not be written"
            : "a step write sent before the abort failed",
        );
        this.#init.onLateWriteFailure?.(problem);
      },
    );
    this.#closing.set(closing, tag);
    void closing.then(() => this.#closing.delete(closing));
  }

  /** Writes the safe state in order (every write attempted); its failures become problems. */
  async #writeSafeState(): Promise<readonly ProcessProblem[]> {
    this.#safeStateWritten = true;
    // A write already sent to a safe-state tag lands first: that tag's safe value is written
    // after it (review 15w, H4). Only that tag waits: the others are written at once, whatever is
    // in flight elsewhere (review 15u, M1).
    const problems = await writeSafeState(
      this.#options.io,
      this.#init.safeState,
      this.#init.logger,
      this.#origin,
      undefined,
      this.#init.safeStateHalt?.(),
    );
    this.#problems.push(...problems);
    this.#init.onSafeState?.(problems);
    return problems;
  }

  #machineProblem(error: unknown): ProcessProblem {
    const problem: ProcessProblem = { stage: "machine", error };
    this.#problems.push(problem);
    this.#init.logger.error({ processId: this.id, error }, "the machine could not follow the process end");
    return problem;
  }

  /** Faults the machine when a fault was asked for and not acted on yet (safe state first, if this run did not write it). */
  async #faultIfRequested(): Promise<void> {
    while (this.#abortRequest?.fault === true && !this.#faulted) {
      this.#faulted = true;
      if (!this.#safeStateWritten) await this.#writeSafeState();
      try {
        await this.#options.machine.fault(this.#abortRequest.faultReason ?? this.#abortRequest.reason);
      } catch (error) {
        this.#machineProblem(error);
      }
    }
  }

  /**
   * A halt while the first save is under way: the machine has not begun, so nothing is stopped;
   * a fault asked for (now or meanwhile) writes the safe state and faults the machine at once.
   */
  async #actBeforeBegin(): Promise<void> {
    do await this.#faultIfRequested();
    while (this.#abortRequest?.fault === true && !this.#faulted);
    this.#machineSettled = true;
    this.#settle([...this.#problems]);
  }

  /** A fault asked for once the machine reached its end state: the safe state again, then the fault. */
  async #faultAfterEnd(reason: string): Promise<readonly ProcessProblem[]> {
    this.#faulted = true;
    const problems = [...(await this.#writeSafeState())];
    try {
      await this.#options.machine.fault(reason);
    } catch (error) {
      problems.push(this.#machineProblem(error));
    }
    return problems;
  }

  #requestAbort(reason: string, fault: boolean): void {
    if (this.#machineSettled) return;
    const current = this.#abortRequest;
    if (current !== undefined) {
      // A later, stronger request escalates: a fault wins over a stop (adversarial review 15z, H1).
      if (fault && !current.fault) this.#abortRequest = { reason: current.reason, fault: true, faultReason: reason };
      return;
    }
    this.#abortRequest = { reason, fault };
    this.#init.onSafeStateBegin?.();
    if (this.#controller.signal.aborted) return;
    this.#controller.abort(
      new KilnError("KILN_ABORTED", `Process ${this.id} was aborted: ${reason}`, {
        details: { processId: this.id, machineId: this.record.machineId, reason },
      }),
    );
  }

  #throwIfAborted(): void {
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
  }

  #endedError(command: string): KilnError {
    return sayingLess(
      new KilnError(
        "KILN_INVALID_TRANSITION",
        `Process ${this.id} has ended (${this.record.status}); it cannot ${command}.`,
        { details: { processId: this.id, status: this.record.status, command } },
      ),
      // The process is named only to a caller who may know it (review 15e).
      (disclosure) =>
        disclosure.process
          ? undefined
          : { message: `The process has ended; it cannot ${command}.`, details: { command } },
    );
  }
}

function describeError(error: unknown): string {
  if (KilnError.is(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}
