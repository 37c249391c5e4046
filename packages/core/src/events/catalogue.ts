import type { KilnErrorCode } from "../domain/errors";

/** Fields every Kiln event carries. */
export interface EventBase {
  /** When it happened, ms since the Unix epoch, from the system's clock. */
  readonly at: number;
  /**
   * The aggregate (machine, process, alarm) the event belongs to. Events with one are domain
   * events and are appended to the {@link EventStore} when the system has one.
   */
  readonly aggregateId?: string;
}

/** A circuit breaker's state. */
export type BreakerState = "closed" | "open" | "half-open";

/**
 * The catalogue of events Kiln publishes, by type name (kebab-case, noun-verb). The bus is
 * typed by this map, so `bus.on("process-end", (event) => event.reason)` is checked.
 */
export interface KilnEvents {
  /** A machine's state machine changed state. */
  "machine-state-change": EventBase & {
    readonly machineId: string;
    readonly model: string;
    readonly from: string;
    readonly to: string;
    readonly command: string;
  };
  /** A handler threw or rejected; the publisher and the other handlers were not affected. */
  "handler-error": EventBase & { readonly eventType: string; readonly error: unknown };
  /** A circuit breaker changed state. */
  "breaker-state-change": EventBase & {
    readonly breaker: string;
    readonly from: BreakerState;
    readonly to: BreakerState;
    readonly reason?: string;
  };
  /**
   * A lifecycle call to a port failed or ran over `lifecycleTimeoutMs` (`step`: `store.open`,
   * `store.close` or `driver.close`). A stop goes on past it and still ends `stopped`.
   */
  "lifecycle-step-fail": EventBase & {
    readonly step: "store.open" | "store.close" | "driver.close";
    /** The error, `CODE: message`. */
    readonly reason: string;
  };
  /**
   * A tag write given up at its timeout (answered `KILN_TIMEOUT`) settled at the device later
   * (review 15f, H2): `landed` true when the device took `value` after all. When it landed after
   * a later write to the tag (a safe state above all), that later value was written again
   * (`reasserted`; `reassertFailed`, `CODE: message`, when that failed: then health() names it
   * until a later write of the tag is confirmed; a reset does not clear it, review 15g H3). Also recorded as the system's `tag.reassert` audit entry.
   */
  "write-late-settle": EventBase & {
    readonly tag: string;
    readonly value: unknown;
    readonly landed: boolean;
    readonly reasserted?: unknown;
    readonly reassertFailed?: string;
  };
  /** Kiln lost communication with a PLC; its tags turned uncertain. */
  "plc-connection-lose": EventBase & { readonly driver: string; readonly reason: string };
  /**
   * Kiln stopped reconnecting to a PLC because it refused the identity (`code`
   * `KILN_AUTHENTICATION_FAILED`): retrying a refused log-in could lock the account. Its tags
   * stay uncertain until the configuration is fixed and the system restarted.
   */
  "plc-connection-fail": EventBase & { readonly driver: string; readonly code: KilnErrorCode; readonly reason: string };
  /** Communication with a PLC is back; fresh values follow. */
  "plc-connection-restore": EventBase & { readonly driver: string; readonly downtimeMs: number };
  /**
   * One endpoint behind a connected driver (a Modbus unit behind a gateway, an answer stream, ...; the driver's
   * optional `endpoints()`) went `offline` or came back `online`, while the connection itself stayed up. Seen after
   * each scan read, so at most one scan period late. `reason`: the endpoint's last error when it went offline;
   * `nextProbeAt`: when the driver probes it next (ms since the epoch). An endpoint that leaves the driver's list
   * while offline (a condition that ended) is reported `online`.
   */
  "plc-endpoint-change": EventBase & {
    readonly driver: string;
    readonly endpoint: string;
    readonly from: "online" | "offline";
    readonly to: "online" | "offline";
    readonly reason?: string;
    readonly nextProbeAt?: number;
  };
  /**
   * The host's wall clock stepped by `stepMs` (negative: back), an NTP correction or an operator
   * setting the time. Scans, staleness and timeouts run on monotonic time and go on unchanged;
   * samples stamped by the host (receive time) jump by the step. Reported once per step.
   */
  "clock-step": EventBase & { readonly stepMs: number };
  /** A scan took longer than its period; the missed cycles were skipped. */
  "scan-overrun": EventBase & { readonly group: string; readonly missedCycles: number; readonly durationMs: number };
  /** A batch reached the store. */
  "batch-flush-end": EventBase & { readonly size: number; readonly durationMs: number; readonly attempts: number };
  /** A batch could not be written; it will be retried or spooled, never dropped silently. */
  "batch-flush-fail": EventBase & { readonly size: number; readonly attempt: number; readonly error: unknown };
  /**
   * Samples were dropped: under the `drop-oldest` overflow policy, at shutdown, one sample the
   * store refused on its own (then `tag` names it and `reason` says why, e.g. `KILN_VALIDATION: ...`),
   * or samples of one tag the store refused as conflicts because a different sample holds their
   * timestamp (`tag` set, `reason` starting with `conflict:`; see `SampleWriteResult`).
   */
  "samples-drop": EventBase & { readonly count: number; readonly reason: string; readonly tag?: string };
  /**
   * At `stop()` without a spool, samples whose write was under way (or had timed out) at the
   * drain deadline were given up: the store may or may not have committed them. Not counted as
   * dropped; see `health().logging.samplesAbandoned`.
   */
  "samples-abandon": EventBase & { readonly count: number; readonly reason: string };
  /** Samples were written to the on-disk spool because the store was unavailable. */
  "samples-spool": EventBase & { readonly count: number };
  /** Spooled samples were replayed into the store. */
  "spool-replay": EventBase & { readonly count: number };
  /**
   * Spool records were skipped because they could not be read back: a corrupt stretch found
   * when the spool was opened (`bytes` of it), or a record that is not a batch of samples met
   * during replay. Their samples are lost and, since the record cannot be read, **how many is
   * unknown**; they are not in `samplesDropped`. Counted in `health().logging.spoolCorruptRecords`.
   */
  "spool-record-skip": EventBase & { readonly records: number; readonly bytes?: number; readonly reason: string };
  /** An alarm changed ISA-18.2 state (process value, operator command, shelf timer or suppression logic). */
  "alarm-state-change": EventBase & {
    readonly alarmId: string;
    readonly tag: string;
    readonly kind: "HI" | "LO" | "HIHI" | "LOLO" | "BOOL";
    readonly priority: number;
    readonly from:
      "normal" | "unacknowledged" | "acknowledged" | "rtn-unacknowledged" | "shelved" | "suppressed" | "out-of-service";
    readonly to:
      "normal" | "unacknowledged" | "acknowledged" | "rtn-unacknowledged" | "shelved" | "suppressed" | "out-of-service";
    readonly cause:
      | "process-activate"
      | "process-clear"
      | "acknowledge"
      | "shelve"
      | "unshelve"
      | "shelve-expire"
      | "suppress"
      | "unsuppress"
      | "suppress-condition"
      | "unsuppress-condition"
      | "remove-from-service"
      | "return-to-service";
    readonly value: number | boolean | null;
    readonly principal?: string;
  };
  /** An alarm's condition became active (after its on-delay); `state` says whether it is annunciated. */
  "alarm-raise": EventBase & {
    readonly alarmId: string;
    readonly tag: string;
    readonly kind: "HI" | "LO" | "HIHI" | "LOLO" | "BOOL";
    readonly priority: number;
    readonly message: string;
    readonly value: number | boolean | null;
    readonly state: string;
  };
  /** An alarm's condition returned to normal (past its deadband, after its off-delay). */
  "alarm-clear": EventBase & {
    readonly alarmId: string;
    readonly tag: string;
    readonly kind: "HI" | "LO" | "HIHI" | "LOLO" | "BOOL";
    readonly priority: number;
    readonly message: string;
    readonly value: number | boolean | null;
    readonly state: string;
  };
  /** An alarm declared `interlock: true` became active while in service and not suppressed: trip the machine. */
  "interlock-trip": EventBase & {
    readonly alarmId: string;
    readonly tag: string;
    readonly value: number | boolean | null;
  };
  /** The alarm history could not record a transition; the alarm engine carried on. */
  "alarm-history-fail": EventBase & { readonly alarmId: string; readonly error: unknown };
  /** An alarm's suppression condition threw; the alarm is treated as not suppressed (fail-safe). */
  "alarm-condition-fail": EventBase & { readonly alarmId: string; readonly error: unknown };
  /** A recipe process began running on a machine (its machine state machine has started). */
  "process-start": EventBase & {
    readonly processId: string;
    readonly machineId: string;
    readonly recipe: { readonly name: string; readonly version: number };
    readonly parameters: Readonly<Record<string, unknown>>;
    /** Every tag the process can write (its steps, called recipes and the machine's safe state). */
    readonly writeSet?: readonly string[];
    /** Who started it (id and roles at the start); every write of the process is made on its authority. */
    readonly startedBy?: { readonly id: string; readonly roles: readonly string[] };
  };
  /** A recipe process paused at a step boundary; `nextStep` is where it will resume. */
  "process-pause": EventBase & { readonly processId: string; readonly machineId: string; readonly nextStep?: string };
  /** A paused recipe process resumed. */
  "process-resume": EventBase & { readonly processId: string; readonly machineId: string; readonly pausedMs: number };
  /** A recipe process ended; `interrupted` is set at startup for a process the host left running. */
  "process-end": EventBase & {
    readonly processId: string;
    readonly machineId: string;
    readonly reason: "completed" | "aborted" | "failed" | "interrupted";
    readonly message?: string;
    readonly lastCompletedStep?: string;
    readonly durationMs: number;
  };
  /** A recipe step began; `path` is its run-time path (`steps[2].loop[17].steps[1]`). */
  "step-start": EventBase & {
    readonly processId: string;
    readonly path: string;
    readonly kind: "set" | "pulse" | "wait" | "waitUntil" | "ramp" | "loop" | "call";
    readonly plannedMs?: number;
  };
  /** A recipe step ended, with its planned and actual duration (`errorMs` = actual - planned, for pulse and wait). */
  "step-end": EventBase & {
    readonly processId: string;
    readonly path: string;
    readonly kind: "set" | "pulse" | "wait" | "waitUntil" | "ramp" | "loop" | "call";
    readonly startedAt: number;
    readonly plannedMs?: number;
    readonly actualMs: number;
    readonly errorMs?: number;
    readonly outcome: "completed" | "timeout" | "aborted" | "failed";
  };
  /** A process record and its events could not be saved; they are kept and saved with the next save. */
  "process-save-fail": EventBase & {
    readonly processId: string;
    readonly pendingEvents: number;
    readonly error: unknown;
  };
  /**
   * An audit entry could not be recorded in the store; it is kept in the audit backlog (the
   * journal when one is configured: `durable: true`) and written, in order, once the store is back.
   */
  "audit-record-fail": EventBase & {
    /** The entry's event id. */
    readonly id: string;
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    readonly outcome: "allowed" | "denied" | "failed";
    /** Entries now waiting in the backlog. */
    readonly backlog: number;
    /** True when the entry is on disk (journaled), false when only in memory. */
    readonly durable: boolean;
    readonly error: unknown;
  };
  /**
   * An audit entry the store refused for a reason repeating cannot fix (e.g. text the database
   * cannot hold), or set aside as a poison entry: it is skipped so it never holds up the entries
   * behind it, and reported here. It is kept (one JSON line) in `<audit.backlog.path>.set-aside`
   * when there is a journal, and counted in `health().audit.skipped` (a problem).
   */
  "audit-entry-skip": EventBase & {
    /** The entry's event id. */
    readonly id: string;
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    /**
     * The outcome of the entry kept and reported: `denied` for the intent of a command that did
     * not run because its entry was refused for good (never `allowed`).
     */
    readonly outcome: "allowed" | "denied" | "failed";
    /** The store's error, `CODE: message`, and where the entry was kept (or that it was not). */
    readonly reason: string;
  };
  /**
   * A correction of an `audit-entry-skip`: the entry's store call had timed out and was abandoned
   * by the port guard, the entry was then set aside (or refused), and the abandoned call landed
   * afterwards: the store has it, it is in the trail. Taken back out of `health().audit.skipped`
   * and `setAside`, counted in `storedLate`; a line `{"storedLate":"<id>","at":<ms>}` follows the
   * entry in `<audit.backlog.path>.set-aside` (fix15ak).
   */
  "audit-entry-stored-late": EventBase & {
    /** The entry's event id. */
    readonly id: string;
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    readonly outcome: "allowed" | "denied" | "failed";
    /** What happened, and where it was noted. */
    readonly reason: string;
  };
  /**
   * The default in-memory store evicted its oldest entries under its retention
   * (`MemoryStoreRetention`): stored, then aged out, as a database retention policy drops rows.
   * Not a loss of unstored data (that is `samplesDropped` and `audit-entry-drop`). One event per
   * write that evicted.
   */
  "store-evict": EventBase & { readonly port: "samples" | "alarms" | "audit"; readonly count: number };
  /**
   * The audit backlog's journal failed: it could not be opened (`operation: "open"`: a full disk,
   * a journal held by another process; retried on the audit store's backoff, and what it holds is
   * replayed once it opens), an append failed (`"append"`, e.g. `errno: "ENOSPC"`: entries go to
   * the journal's reserve, commands that need a durable entry are refused), or its reserve could
   * not be written (`"reserve"`: entries and counts only in memory). Published once per failure
   * (again when its cause, `errno` or else the words, changes); the failure stays in force, named
   * in `health().problems`, until the operation succeeds again (ADR 0013, amendment fix15aa).
   */
  "audit-journal-fail": EventBase & {
    /** The file that failed (the journal, or `<journal>.reserve`). */
    readonly path: string;
    readonly operation: "open" | "append" | "reserve";
    /** The system error code (`ENOSPC`, `EACCES`) or the Kiln code (`KILN_JOURNAL_LOCKED`), when known. */
    readonly errno?: string;
    /** In words, naming the path and the cause. */
    readonly reason: string;
  };
  /** Audit entries were dropped because the backlog of unrecorded entries was full (oldest first). */
  "audit-entry-drop": EventBase & { readonly count: number; readonly reason: string };
  /**
   * The refusal of a command whose `allowed` entry had already been offered to the store (id
   * `<intentId>:refusal`, ADR 0013 addendum) was dropped unstored, e.g. at `stop()` without an
   * audit journal while the store hung. The intent may still be committed by the store, so the
   * trail may show this command `allowed`; it did not run. Counted in
   * `health().audit.refusalsDropped` (and in `dropped`).
   */
  "audit-refusal-drop": EventBase & {
    /** The refusal's event id (`<intentId>:refusal`). */
    readonly id: string;
    /** The event id of the command's `allowed` entry (the intent) that the refusal names. */
    readonly intentId: string;
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    /** In words, naming both ids. */
    readonly reason: string;
  };
  /**
   * A command was refused, not executed, because its audit entry could not be made durable
   * (fail closed, IEC 62443-3-3 CR 2.10); the caller got `KILN_AUDIT_UNAVAILABLE`.
   */
  "command-refuse": EventBase & {
    /** The command's audit event id. */
    readonly id: string;
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    readonly reason: string;
  };
  /**
   * A command failed after its audit entry was made durable (outcome `allowed`: authorized,
   * checked and issued), e.g. the device refused the write or timed out. The audit entry stays
   * as recorded; the failure is its own entry `<id>:fail` (`refersTo` the command's), and this
   * event carries it: published exactly once for every `:fail` entry, whatever made it. That
   * includes a safety function's or a system action's safe state that the device refused (a
   * manual stop or fault, a re-drive, an interlock trip: principal `(system)`), whose command
   * answered its end state rather than an error, and a failure told after the command answered.
   * Otherwise the caller got the error.
   */
  "command-fail": EventBase & {
    /** The command's audit event id (the `allowed` entry the `:fail` entry refers to). */
    readonly id: string;
    /** Who issued it, as the entry records it; `(system)` for an action the system took by itself. */
    readonly principal: string;
    readonly action: string;
    readonly target: string;
    /** The `:fail` entry's reason: the error, `CODE: message`, or the safe state's problems in words. */
    readonly reason: string;
  };
}
