import type { AuditEntry } from "@kiln/core/driver-kit";
import type { Logger } from "../ports/logger";
import { isIntentRefusal, REFUSAL_ID_SUFFIX } from "./audit-entry-rules";
import type { AuditedCommandRunnerOptions } from "./audited-command-options";

/**
 * The audit writer's drops: every entry it could not record is counted once and reported
 * (`audit-entry-drop`, or `audit-refusal-drop` for the refusal of an offered intent, with an error
 * log), and health reads the counts: dropped since construction, refusals dropped, dropped while
 * stopped and at the last stop (ADR 0013; adversarial reviews 15s, adv15w). Nothing is dropped
 * silently.
 */
export class AuditDropReports {
  /** Read when a drop is published (the bus, the clock). */
  readonly #options: Pick<AuditedCommandRunnerOptions, "bus" | "clock">;
  readonly #logger: Logger;
  /** Whether the stop is over (then an entry dropped while closed is one of a command issued while stopped). */
  readonly #isStopped: () => boolean;

  #dropped = 0;

  /** Refusals of offered intents (`<id>:refusal`) dropped unstored: each may leave an `allowed` entry of a command that did not run. */
  #refusalsDropped = 0;

  /** Entries of commands issued while the runner was closed (the system stopped), dropped and reported; reset by {@link reopen} (a start). */
  #droppedWhileStopped = 0;

  /** Entries dropped at a stop (fix15x): held only in memory when stop() gave up on close(), or acted during it and came after the close. */
  #droppedAtStop = 0;

  constructor(options: Pick<AuditedCommandRunnerOptions, "bus" | "clock">, logger: Logger, isStopped: () => boolean) {
    this.#options = options;
    this.#logger = logger;
    this.#isStopped = isStopped;
  }

  /** Entries dropped unstored since construction. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Refusals of offered intents (`<id>:refusal`) dropped unstored. */
  get refusalsDropped(): number {
    return this.#refusalsDropped;
  }

  /** Entries of commands issued while stopped, dropped since the last stop. */
  get droppedWhileStopped(): number {
    return this.#droppedWhileStopped;
  }

  /** Entries dropped at the last stop. */
  get droppedAtStop(): number {
    return this.#droppedAtStop;
  }

  /** Counts `count` entries as dropped at the stop (reported by the caller). */
  countAtStop(count: number): void {
    this.#droppedAtStop += count;
  }

  /**
   * `count` entries counted dropped at the stop were stored after all (a store call that answered
   * late): taken back out of `dropped` and `droppedAtStop` (and `refusalsDropped` for the refusal
   * of an offered intent), so each count equals what is missing from the store (fix15ad).
   */
  uncount(count: number, refusal: boolean): void {
    this.#dropped = Math.max(0, this.#dropped - count);
    this.#droppedAtStop = Math.max(0, this.#droppedAtStop - count);
    if (refusal) this.#refusalsDropped = Math.max(0, this.#refusalsDropped - 1);
  }

  /** A start: the counts of the last stop begin again (`dropped` and `refusalsDropped` do not). */
  reopen(): void {
    this.#droppedAtStop = 0;
    this.#droppedWhileStopped = 0;
  }

  /**
   * A refusal of an offered intent was dropped unstored. Its intent may still be committed by the
   * store (a timed-out INSERT), so the trail may show the command `allowed` although it did not
   * run: reported apart from other drops, by `audit-refusal-drop` and an error log naming both ids.
   */
  reportRefusalDrop(entry: AuditEntry, why: string, countDropped = true): void {
    if (!entry.id.endsWith(REFUSAL_ID_SUFFIX)) {
      // Any other follow-up (`:fail`, `:cancel`, `:landed`, `:lost`) tells what became of a command
      // that ran (it may have reached the device); "did not run" would be false (adversarial
      // reviews 15t F1, 15g H4). A plain drop, saying what the entry said.
      const said =
        entry.outcome === "failed"
          ? `failed after it was allowed (it may have reached the device)`
          : `${entry.outcome} after the fact (${entry.reason ?? entry.id.slice(entry.id.lastIndexOf(":") + 1)})`;
      const reason =
        `${why}: entry ${entry.id}, saying command ${entry.refersTo} (${entry.action} on ${entry.target}) ${said}, ` +
        "was not recorded; the trail shows that command allowed only";
      this.#logger.error({ id: entry.id, intentId: entry.refersTo, action: entry.action }, reason);
      // An entry set aside is counted in `skipped` already: reported, not counted twice.
      if (countDropped) this.reportDrop(1, reason);
      else void this.#options.bus?.publish("audit-entry-drop", { at: this.#options.clock.now(), count: 1, reason });
      return;
    }
    this.#refusalsDropped++;
    if (countDropped) this.#dropped++;
    const reason =
      `${why}: entry ${entry.id}, saying command ${entry.refersTo} (${entry.action} on ${entry.target}) did not run, ` +
      "was not recorded; the trail may show this command allowed; it did not run";
    this.#logger.error({ id: entry.id, intentId: entry.refersTo, action: entry.action }, reason);
    void this.#options.bus?.publish("audit-refusal-drop", {
      at: this.#options.clock.now(),
      id: entry.id,
      intentId: entry.refersTo!,
      principal: entry.principal,
      action: entry.action,
      target: entry.target,
      reason,
    });
  }

  /**
   * An entry recorded while the runner is closed (a command refused because the control system
   * is stopped): not held in memory, where no stop would flush it and an exit would lose it
   * unreported, but reported dropped at once (`audit-entry-drop`, `status().droppedWhileStopped`,
   * a health problem). Adversarial review 15s, F2; ADR 0013 addendum.
   */
  dropWhileClosed(entry: AuditEntry): void {
    const what = `${entry.action} on ${entry.target} by ${entry.principal} (${entry.outcome}, entry ${entry.id})`;
    if (!this.#isStopped()) {
      // Still stopping: an action that acted during stop() (a trip, a safety function) whose entry
      // came after the writer closed. Not "issued while stopped" (fix15x, adv15w M1).
      this.#droppedAtStop++;
      this.#logger.error(
        { id: entry.id, action: entry.action, outcome: entry.outcome },
        "audit entry dropped: it reached the audit writer after the stop closed it",
      );
      if (isIntentRefusal(entry)) {
        this.reportRefusalDrop(entry, "the audit writer was closed by the stop before the entry reached it");
        return;
      }
      // A denied command did not act (adv15g LOW-3: 22,386 denials were each said to have acted).
      const did = entry.outcome === "denied" ? "was refused during stop()" : "acted during stop()";
      this.reportDrop(
        1,
        `the control system was stopping: the entry of ${what}, which ${did}, reached the audit writer after the stop closed it, so it could not be recorded`,
      );
      return;
    }
    this.#droppedWhileStopped++;
    this.#logger.error(
      { id: entry.id, action: entry.action, outcome: entry.outcome },
      "audit entry dropped: the control system is stopped",
    );
    if (isIntentRefusal(entry)) {
      this.reportRefusalDrop(entry, "the control system is stopped (the audit store and journal are closed)");
      return;
    }
    this.reportDrop(
      1,
      `the control system is stopped: the audit store and its journal are closed, so the entry of ${what} could not be recorded`,
    );
  }

  reportDrop(count: number, reason: string): void {
    this.#dropped += count;
    void this.#options.bus?.publish("audit-entry-drop", { at: this.#options.clock.now(), count, reason });
  }
}
