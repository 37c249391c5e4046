import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { AuditLog } from "@kiln/core/driver-kit";
import type { Clock } from "../ports/clock";
import type { ReconnectBackoff } from "../driver-kit/backoff";
import type { Logger } from "../ports/logger";
import type { Authorizer } from "./authorization";

/**
 * The audit backlog: where entries wait while the audit store cannot take them (IEC 62443-3-3
 * CR 2.9, audit storage capacity).
 */
export interface AuditBacklogOptions {
  /**
   * A journal file (the shared `RecordJournal`: checksummed records, fsync per append). Entries
   * the store does not take are appended here, survive a restart and are written to the store, in
   * order, once it is back. Omitted: the backlog is in memory only, so a command runs only while
   * the store takes entries (fail closed).
   */
  readonly path?: string;
  /** Most entries held (memory and journal together). @default 10000 */
  readonly maxEntries?: number;
  /** Size limit of the journal file in bytes. @default 64 MiB */
  readonly maxBytes?: number;
  /**
   * In either mode denied and failed entries (refusals included) hold at most half of
   * `maxEntries` and never evict anything: the rest is kept for entries of commands that run, so
   * a flood of refused attempts cannot lock authorized commands out. Attempts beyond their share
   * are counted per principal and recorded as `audit.overflow` entries (outcome `denied`; count,
   * first and last time, principal, actions), one per principal, once there is room. With a
   * journal the count is durable (`<path>.reserve`: room reserved when the journal opens and
   * overwritten in place, so it is written even on a full disk) before the attempt is rejected:
   * after a crash it is read back, reported by `health().audit.overflow` and summarized (at least
   * once: a crash between a summary and the count's removal summarizes it again). An entry the
   * journal cannot take (`ENOSPC`) is kept in the same reserve, fsynced before its command returns;
   * once that room is used, a denied or failed one is counted instead.
   * At the limit: `refuse-commands` refuses new commands with `KILN_AUDIT_UNAVAILABLE` until the
   * backlog drains and never evicts an entry; an action that runs without a durable entry
   * (`runWithoutDurableAudit`, safety functions, the system's own actions and their `:fail`
   * entries) still runs, and its entry is coalesced with the entries of its kind (principal,
   * action, target, outcome, follow-up or not; at most 16 kinds) into one `audit.coalesce`
   * summary entry (`newValue: { action, outcome, count, firstId, first, lastId, last,
   * firstValue, lastValue }`) recorded once the backlog has room, so the bound holds for every
   * source; with a journal the runs are kept in its reserve; an entry of a further kind is
   * counted into the `audit.drop` summary and reported (adversarial review adv15p, M3).
   * `drop-oldest` keeps commands running
   * and drops the oldest entries, reported by `audit-entry-drop` (and marked in the journal, so
   * they do not come back at the next start) and recorded in the trail as one `audit.drop`
   * summary entry (count, first and last entry id and time, reasons; outcome `failed`), durable
   * across a crash (ADR 0013). An entry is dropped only once its drop is counted durably: with a
   * journal whose reserve is missing or failing, `drop-oldest` evicts nothing and refuses new
   * commands as `refuse-commands` does (ADR 0034, amendment 15r). @default "refuse-commands"
   */
  readonly whenFull?: "refuse-commands" | "drop-oldest";
}

/** Options of {@link AuditedCommandRunner}. */
export interface AuditedCommandRunnerOptions {
  /** Decides who may do what. */
  readonly authorizer: Authorizer;
  /** Where entries are recorded. Wrap it in a retry/timeout policy as any store call. */
  readonly audit: AuditLog;
  /** Timestamps the entries. */
  readonly clock: Clock;
  /** Recorded as every entry's `machineId`. */
  readonly machineId?: string;
  /** The `source` recorded for commands that name none (e.g. the host process). */
  readonly source?: string;
  /** Where the backlog of unrecorded entries is kept, how large it may grow and what happens at the limit. */
  readonly backlog?: AuditBacklogOptions;
  /**
   * Actions that act at once, without waiting for their audit entry (IEC 62443-3-3 CR 2.10: keep
   * essential functions): the entry is recorded after them through the same writer (stored, or
   * kept in the backlog, journaled when possible, retried and reported by `audit-record-fail`);
   * neither earlier entries nor a hanging store delay them. Every other action fails closed
   * with `KILN_AUDIT_UNAVAILABLE`.
   * @default ["recipe.abort", "recipe.pause"] (an abort writes the safe state; a pause holds the process)
   */
  readonly runWithoutDurableAudit?: readonly string[];
  /**
   * How often a non-empty backlog is retried in the background (no command needed): attempt `n`
   * waits `reconnectDelay(n, retryBackoff)`, reset once the backlog is empty; stopped by
   * {@link AuditedCommandRunner.close}. The control system passes `storePolicies.audit.retry`.
   * @default `{ initialDelayMs: 1000, maxDelayMs: 30000 }`
   */
  readonly retryBackoff?: ReconnectBackoff;
  /** Source of randomness in `[0, 1)` for the backlog retry's jitter. @default Math.random */
  readonly random?: () => number;
  /** Where `audit-record-fail`, `audit-entry-skip`, `audit-entry-drop` and `command-refuse` are published. */
  readonly bus?: EventBus<KilnEvents>;
  /** Diagnostics. @default silentLogger */
  readonly logger?: Logger;
  /** Makes each entry's event id. @default crypto.randomUUID */
  readonly newId?: () => string;
}

/**
 * The actions that run without waiting for a durable audit entry unless the host says otherwise:
 * an abort writes the safe state and a pause holds the process, so neither may wait on the audit
 * trail (IEC 62443-3-3 CR 2.10).
 */
export const DEFAULT_RUN_WITHOUT_DURABLE_AUDIT: readonly string[] = ["recipe.abort", "recipe.pause"];
