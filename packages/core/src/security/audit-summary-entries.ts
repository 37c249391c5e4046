import type { AuditEntry } from "@kiln/core/driver-kit";
import type { CoalescedRun, DenialOverflow, DropTally } from "./audit-reserve-record";
import type { AuditedCommandRunnerOptions } from "./audited-command-options";

/**
 * The audit writer's own summary entries, each standing for a count of commands it could not
 * record one by one: `audit.drop` (entries dropped), `audit.overflow` (denied or failed attempts
 * beyond their share of the backlog) and `audit.coalesce` (a run of entries of one kind while the
 * backlog was full). Principal `(audit)` or the run's own, category `audit` (ADR 0013).
 */
export class AuditSummaryEntries {
  readonly #options: Pick<AuditedCommandRunnerOptions, "machineId" | "source" | "clock">;
  readonly #newId: () => string;
  readonly #maxEntries: number;

  /**
   * `options` is read when an entry is made (machine id, source, clock); `maxEntries` is the
   * backlog's bound the coalesce reasons name (an overflow summary names its own causes).
   */
  constructor(
    options: Pick<AuditedCommandRunnerOptions, "machineId" | "source" | "clock">,
    newId: () => string,
    bounds: { readonly maxEntries: number },
  ) {
    this.#options = options;
    this.#newId = newId;
    this.#maxEntries = bounds.maxEntries;
  }

  /**
   * The `audit.drop` summary entry: outcome `failed` (those entries could not be kept), with the
   * count, the first and last dropped entry (id and time, when known) and the reasons.
   */
  dropEntry(drops: DropTally): AuditEntry {
    const span =
      drops.first === undefined || drops.last === undefined
        ? ""
        : `, from ${drops.first.id} at ${new Date(drops.first.at).toISOString()} to ${drops.last.id} at ${new Date(drops.last.at).toISOString()}`;
    return {
      // The tally's own id when it has one: the reserve's record keeps it (fix15p).
      id: drops.id ?? this.#newId(),
      ...(this.#options.machineId === undefined ? {} : { machineId: this.#options.machineId }),
      principal: "(audit)",
      roles: [],
      ...(this.#options.source === undefined ? {} : { source: this.#options.source }),
      category: "audit",
      action: "audit.drop",
      target: this.#options.machineId ?? "(audit)",
      newValue: {
        count: drops.count,
        ...(drops.first === undefined ? {} : { firstId: drops.first.id, first: drops.first.at }),
        ...(drops.last === undefined ? {} : { lastId: drops.last.id, last: drops.last.at }),
        reasons: [...drops.reasons],
      },
      outcome: "failed",
      reason: `${drops.count} audit entr${drops.count === 1 ? "y was" : "ies were"} dropped, not recorded${span}: ${[...drops.reasons].join("; ")}`,
      at: this.#options.clock.now(),
    };
  }

  overflowEntry(overflow: DenialOverflow): AuditEntry {
    const principals = [...overflow.principals].join(", ") + (overflow.morePrincipals ? ", ..." : "");
    return {
      id: overflow.id ?? this.#newId(),
      ...(this.#options.machineId === undefined ? {} : { machineId: this.#options.machineId }),
      principal:
        overflow.principals.size === 1 && !overflow.morePrincipals ? [...overflow.principals][0]! : "(several)",
      roles: [],
      ...(this.#options.source === undefined ? {} : { source: this.#options.source }),
      category: "audit",
      action: "audit.overflow",
      target: this.#options.machineId ?? "(audit)",
      newValue: {
        count: overflow.count,
        first: overflow.first,
        last: overflow.last,
        principals: [...overflow.principals],
        actions: [...overflow.actions],
        causes: [...overflow.causes],
      },
      outcome: "denied",
      reason:
        `${overflow.count} denied or failed attempt(s) by ${principals} counted, not recorded one by one, ` +
        `from ${new Date(overflow.first).toISOString()} to ${new Date(overflow.last).toISOString()}: ` +
        (overflow.causes.size === 0
          ? "the cause was not recorded (counted by an earlier version)"
          : [...overflow.causes].join("; ")),
      at: overflow.last,
    };
  }

  /**
   * A run's entry: the entry itself for a run of one; else an `audit.coalesce` summary under the
   * run's principal, roles, source and target, outcome the run's, `at` its last entry's time, and
   * `newValue: { action, outcome, count, firstId, first, lastId, last, firstValue, lastValue }`
   * (`firstRefersTo`, `lastRefersTo` for follow-ups such as `:fail`).
   */
  coalescedEntry(run: CoalescedRun): AuditEntry {
    const { first, last, count } = run;
    if (count === 1) return first;
    return {
      id: run.id ?? this.#newId(),
      ...(first.machineId === undefined ? {} : { machineId: first.machineId }),
      principal: first.principal,
      roles: [...first.roles],
      ...(first.source === undefined ? {} : { source: first.source }),
      category: "audit",
      action: "audit.coalesce",
      target: first.target,
      newValue: {
        action: first.action,
        outcome: first.outcome,
        count,
        firstId: first.id,
        first: first.at,
        lastId: last.id,
        last: last.at,
        ...(first.newValue === undefined ? {} : { firstValue: first.newValue }),
        ...(last.newValue === undefined ? {} : { lastValue: last.newValue }),
        ...(first.refersTo === undefined ? {} : { firstRefersTo: first.refersTo, lastRefersTo: last.refersTo }),
      },
      outcome: first.outcome,
      reason:
        `${count} ${first.action} entries (${first.outcome}) by ${first.principal} on ${first.target} coalesced while ` +
        `the audit backlog was full (${this.#maxEntries} entries), from ${first.id} at ${new Date(first.at).toISOString()} ` +
        `to ${last.id} at ${new Date(last.at).toISOString()}` +
        (last.reason === undefined ? "" : `; last reason: ${last.reason}`),
      at: last.at,
    };
  }
}
