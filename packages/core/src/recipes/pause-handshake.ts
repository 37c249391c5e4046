import { KilnError } from "../domain/errors";
import { sayingLess } from "../domain/refusal-disclosure";
import type { Clock } from "../ports/clock";
import type { MachineBinding } from "./machine-binding";

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/** What a {@link PauseHandshake} drives and reports to. */
export interface PauseHandshakeOptions {
  readonly processId: string;
  readonly machine: Pick<MachineBinding, "pause" | "resume">;
  readonly clock: Clock;
  /** The process's abort signal: a paused process waits for a resume or this. */
  readonly signal: AbortSignal;
  /** Called once the machine has paused (record, event, save). */
  onPaused(nextStep: string): Promise<void>;
  /** Called once the machine has resumed, with how long it was paused (ms). */
  onResumed(pausedMs: number): Promise<void>;
}

/**
 * The pause/resume handshake between commands and a running process. `pause()` is a request
 * taken at the next step boundary ({@link pauseAt}); it resolves once the machine paused and
 * rejects if the machine refuses (the process keeps running). `resume()` resolves once running
 * again, or cancels a pause not yet taken. At the end of the process every pending request is
 * rejected ({@link end}).
 */
export class PauseHandshake {
  readonly #options: PauseHandshakeOptions;
  #pauseRequest: Deferred | undefined;
  #resumeRequest: Deferred | undefined;
  #resumeWaiter: (() => void) | undefined;

  constructor(options: PauseHandshakeOptions) {
    this.#options = options;
  }

  /** True when a pause has been requested and not yet taken. */
  get pauseRequested(): boolean {
    return this.#pauseRequest !== undefined;
  }

  /** Requests a pause at the next step boundary (one request shared by concurrent callers). */
  requestPause(): Promise<void> {
    this.#pauseRequest ??= deferred();
    return this.#pauseRequest.promise;
  }

  /** Cancels a pause not yet taken (its caller gets `KILN_INVALID_TRANSITION`). */
  cancelPause(): void {
    const pending = this.#pauseRequest;
    this.#pauseRequest = undefined;
    pending?.reject(
      sayingLess(
        new KilnError(
          "KILN_INVALID_TRANSITION",
          `The pause of process ${this.#options.processId} was cancelled by resume.`,
          { details: { processId: this.#options.processId, command: "pause" } },
        ),
        // The process is named only to a caller who may know it (review 15e).
        (disclosure) =>
          disclosure.process
            ? undefined
            : { message: "The pause of the process was cancelled by resume.", details: { command: "pause" } },
      ),
    );
  }

  /** Requests a paused process to resume (one request shared by concurrent callers). */
  requestResume(): Promise<void> {
    if (this.#resumeRequest === undefined) {
      this.#resumeRequest = deferred();
      const waiter = this.#resumeWaiter;
      this.#resumeWaiter = undefined;
      waiter?.();
    }
    return this.#resumeRequest.promise;
  }

  /**
   * Takes the requested pause at a step boundary: pauses the machine, then waits for a resume
   * the machine accepts. Rejects with the abort reason if the process is aborted while paused.
   */
  async pauseAt(nextStep: string): Promise<void> {
    const { machine, clock } = this.#options;
    const request = this.#pauseRequest!;
    try {
      await machine.pause();
    } catch (error) {
      if (this.#pauseRequest === request) this.#pauseRequest = undefined;
      request.reject(error);
      return;
    }
    if (this.#pauseRequest === request) this.#pauseRequest = undefined;
    const pausedAt = clock.now();
    await this.#options.onPaused(nextStep);
    request.resolve();
    for (;;) {
      const resume = await this.#nextResume();
      try {
        await machine.resume();
      } catch (error) {
        this.#resumeRequest = undefined;
        resume.reject(error);
        continue;
      }
      this.#resumeRequest = undefined;
      await this.#options.onResumed(clock.now() - pausedAt);
      resume.resolve();
      return;
    }
  }

  /** Rejects every pending request with the error `errorFor` gives for its command (the process has ended). */
  end(errorFor: (command: "pause" | "resume") => unknown): void {
    this.#pauseRequest?.reject(errorFor("pause"));
    this.#resumeRequest?.reject(errorFor("resume"));
    this.#pauseRequest = this.#resumeRequest = undefined;
  }

  /** Waits for a resume request; rejects with the abort reason if the process is aborted first. */
  #nextResume(): Promise<Deferred> {
    const signal = this.#options.signal;
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
