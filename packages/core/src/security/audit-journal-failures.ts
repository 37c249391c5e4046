import { KilnError } from "../domain/errors";
import { auditedText } from "./command-input";
import { REASON_MAX_LENGTH } from "./audit-entry-rules";
import type { AuditedCommandRunnerOptions } from "./audited-command-options";

/** A journal operation whose failure is reported: opening it, appending to it, writing its reserve. */
export type JournalOperation = "open" | "append" | "reserve";

/** A journal failure in force. */
export interface JournalFailure {
  readonly operation: JournalOperation;
  readonly path: string;
  /** `ENOSPC`, `EACCES`..., or the KilnError code (`KILN_JOURNAL_LOCKED`). */
  readonly errno?: string;
  /** In words, escaped and bounded. */
  readonly message: string;
}

/**
 * The audit journal's failures in force, by operation (`open`, `append`, `reserve`): each stays
 * named by health until the operation succeeds and is published once by `audit-journal-fail`
 * (again when its cause, the code or else the words, changes). What a failure leaves where (entries held only in memory, in the reserve) is the
 * writer's to say.
 */
export class AuditJournalFailures {
  /** Read when a failure is published (the bus, the clock). */
  readonly #options: Pick<AuditedCommandRunnerOptions, "bus" | "clock">;
  /** The journal failures now in force, by operation (`open`, `append`, `reserve`): health names each. */
  readonly #journalFailures = new Map<JournalOperation, JournalFailure>();

  constructor(options: Pick<AuditedCommandRunnerOptions, "bus" | "clock">) {
    this.#options = options;
  }

  /** The failure of `operation` in force, if any. */
  get(operation: JournalOperation): JournalFailure | undefined {
    return this.#journalFailures.get(operation);
  }

  /** Whether a failure of `operation` is in force. */
  has(operation: JournalOperation): boolean {
    return this.#journalFailures.has(operation);
  }

  /** How many failures are in force. */
  get size(): number {
    return this.#journalFailures.size;
  }

  /** The failures in force, in the order they were first noted. */
  values(): IterableIterator<JournalFailure> {
    return this.#journalFailures.values();
  }

  /**
   * Records a journal failure in force (health names it until it clears) and reports it once by
   * `audit-journal-fail` (again when its cause changes).
   */
  note(operation: JournalOperation, error: unknown, path: string): void {
    const errno = KilnError.is(error)
      ? typeof error.details["errno"] === "string"
        ? error.details["errno"]
        : error.code
      : typeof (error as { code?: unknown } | null)?.code === "string"
        ? ((error as { code: string }).code as string)
        : undefined;
    const message = auditedText(
      `audit journal ${path}: ${operation} failed: ${error instanceof Error ? error.message : String(error)}` +
        (errno === undefined ? "" : ` (${errno})`),
      REASON_MAX_LENGTH,
    );
    const earlier = this.#journalFailures.get(operation);
    this.#journalFailures.set(operation, { operation, path, message, ...(errno === undefined ? {} : { errno }) });
    // The same cause (its code, else its words) on the same file is the failure already reported:
    // it stays in force until the operation succeeds (adv15y L1).
    if (earlier !== undefined && earlier.path === path && (earlier.errno ?? earlier.message) === (errno ?? message))
      return;
    void this.#options.bus?.publish("audit-journal-fail", {
      at: this.#options.clock.now(),
      path,
      operation,
      ...(errno === undefined ? {} : { errno }),
      reason: message,
    });
  }

  /**
   * The failure of `operation` is over: call only once the operation succeeded (not when there was
   * nothing to do), as the failure is published again once it is cleared. Health no longer names it.
   */
  clear(operation: JournalOperation): void {
    this.#journalFailures.delete(operation);
  }

  /**
   * The failures in force, in words, each with what it leaves where: `held` counts the backlog's
   * entries outside the journal (in its reserve, only in memory), `reserveOpen` says whether the
   * reserve is made, `unopened` what a reserve that could not be opened holds.
   */
  problems(
    held: () => { reserved: number; memoryOnly: number },
    reserveOpen: boolean,
    unopened: () => string,
  ): string[] {
    if (this.#journalFailures.size === 0) return [];
    const { reserved, memoryOnly } = held();
    const inMemory =
      memoryOnly > 0
        ? `; ${memoryOnly} audit entr${memoryOnly === 1 ? "y" : "ies"} held only in memory (lost if the process dies)`
        : "";
    return [...this.#journalFailures.values()].map((failure) =>
      failure.operation === "open"
        ? `${failure.message}; what it holds is not replayed and it has no reserve until it opens (retried)${inMemory}`
        : failure.operation === "reserve" && !reserveOpen
          ? `${failure.message}; no room is reserved for a full disk until it is made (retried)${unopened()}${inMemory}`
          : `${failure.message}; ${reserved} entr${reserved === 1 ? "y" : "ies"} held in its reserve${inMemory}`,
    );
  }
}
