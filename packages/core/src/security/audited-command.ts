import { KilnError, type KilnErrorCode } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import { snapshotPrincipal, type Authorizer, type Permission, type Principal } from "./authorization";

/** What a command's `execute` gets from the runner. */
export interface CommandContext {
  /** The principal as read once at the command boundary (frozen): use it, never the caller's object. */
  readonly principal: Principal;
  /**
   * The targets of `targets` on which the principal may not use `permission` (in the command's
   * machine state, or in any state with `inAnyState`), in order. Empty when all are allowed.
   */
  refused(permission: Permission, targets: readonly string[], options?: { readonly inAnyState?: boolean }): string[];
  /** Replaces what the audit entry records as the requested value (e.g. a recipe's write set once known). */
  recordRequest(newValue: unknown): void;
}

/** One command to authorize, run and audit. */
export interface AuditedCommand<TResult> {
  /** Who issues it. */
  readonly principal: Principal;
  /** The permission it needs (also the audit `action` unless `action` is given). */
  readonly permission: Permission;
  /** The audit action name. @default permission */
  readonly action?: string;
  /** What it acts on: tag name, process id, alarm id, machine id. Recorded in the audit entry. */
  readonly target: string;
  /**
   * What a refusal's message may name: only what the caller named itself (a tag, an alarm id),
   * never state it could not see (the running process's id). @default target
   */
  readonly subject?: string;
  /**
   * The machine state the command is checked in: grants limited to states (see
   * `PermissionGrant.states`) match only in theirs. Omitted: state-limited grants do not match.
   */
  readonly machineState?: string;
  /** The value requested, where it applies (a tag write's value, a new mode). */
  readonly newValue?: unknown;
  /** Reads the value before the command, where it applies; called only once the command is authorized. */
  readonly readOldValue?: () => unknown | Promise<unknown>;
  /** The operator's stated reason, recorded with the entry. */
  readonly comment?: string;
  /** The action itself; runs only when authorized. */
  readonly execute: (context: CommandContext) => TResult | Promise<TResult>;
}

/** Options of {@link AuditedCommandRunner}. */
export interface AuditedCommandRunnerOptions {
  /** Decides who may do what. */
  readonly authorizer: Authorizer;
  /** Where entries are recorded. Wrap it in a retry/timeout policy as any store call. */
  readonly audit: AuditLog;
  /** Timestamps the entries. */
  readonly clock: Clock;
  /** Where `audit-record-fail` and `audit-entry-drop` are published. */
  readonly bus?: EventBus<KilnEvents>;
  /** Diagnostics. @default silentLogger */
  readonly logger?: Logger;
  /** Most entries kept while the audit log is failing; beyond it the oldest are dropped (and reported). @default 10000 */
  readonly backlogLimit?: number;
}

/** Error codes that mean a command was refused by a check (recorded `denied`), not that it failed while running. */
export const DENIAL_CODES: readonly KilnErrorCode[] = [
  "KILN_FORBIDDEN",
  "KILN_VALIDATION",
  "KILN_TAG_UNKNOWN",
  "KILN_TAG_NOT_WRITABLE",
  "KILN_OUT_OF_RANGE",
  "KILN_INVALID_TRANSITION",
];

/**
 * Runs commands as authorize → read old value → execute, and records one {@link AuditEntry}
 * for every outcome. The principal is read once, validated and frozen first ({@link snapshotPrincipal});
 * the entry, the check and `execute` (through its {@link CommandContext}) all use that snapshot.
 * A refusal's message names only `subject` and, to a principal who holds the permission in
 * another state, the machine state.
 *
 * - `denied`: the authorizer refused (`KILN_FORBIDDEN`, or `KILN_VALIDATION` for a malformed
 *   principal): `execute` never runs, so nothing reaches a PLC; or `execute` was refused by a
 *   check (its error code is one of {@link DENIAL_CODES}: bad value, read-only tag, FSM guard).
 * - `failed`: `execute` threw anything else (device error, timeout).
 * - `allowed`: `execute` succeeded.
 *
 * The entry's `at` is when the command was issued; `reason` is the error (`CODE: message`) for
 * denied and failed commands, and the operator's `comment` (appended to the error when both).
 * The command's own result or error is returned or rethrown unchanged.
 *
 * **When the audit log fails**, the command is not failed: it has already happened (or was
 * already refused), and an outage of the audit store must not block an abort or a safe-state
 * command. Instead the entry goes to a bounded in-memory backlog, `audit-record-fail` is
 * published and logged, and the backlog is written, oldest first, before the next entry (or on
 * {@link flush}). When the backlog is full the oldest entries are dropped and
 * `audit-entry-drop` reports how many: nothing is lost silently.
 *
 * @example
 * await runner.run({
 *   principal, permission: "tag.write", target: "heater.setpoint", newValue: 250,
 *   readOldValue: () => table.value("heater.setpoint"),
 *   execute: () => system.write("heater.setpoint", 250),
 * });
 */
export class AuditedCommandRunner {
  readonly #options: AuditedCommandRunnerOptions;
  readonly #logger: Logger;
  readonly #backlogLimit: number;
  readonly #backlog: AuditEntry[] = [];
  #dropped = 0;

  /** @throws RangeError when `backlogLimit` is not a positive integer. */
  constructor(options: AuditedCommandRunnerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#backlogLimit = options.backlogLimit ?? 10_000;
    if (!Number.isInteger(this.#backlogLimit) || this.#backlogLimit < 1) {
      throw new RangeError("backlogLimit must be a positive integer");
    }
  }

  /** Entries waiting to be recorded because the audit log failed. */
  get backlog(): number {
    return this.#backlog.length;
  }

  /** Entries dropped because the backlog was full, since construction. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Authorizes and runs `command`, auditing the outcome.
   * @returns what `execute` returned.
   * @throws KilnError `KILN_FORBIDDEN` (or `KILN_VALIDATION` for a malformed principal) when not
   * authorized; otherwise whatever `execute` threw.
   */
  async run<TResult>(command: AuditedCommand<TResult>): Promise<TResult> {
    const at = this.#options.clock.now();
    // Read once: the audit and every check below see the same principal.
    const read = snapshotPrincipal(command.principal);
    const base = {
      principal: typeof read.id === "string" ? read.id : "(invalid principal)",
      roles: Array.isArray(read.roles) ? [...(read.roles as string[])] : [],
      action: command.action ?? command.permission,
      target: command.target,
      at,
    };
    let newValue = command.newValue;
    const entry = (): typeof base & { newValue?: unknown } => (newValue === undefined ? base : { ...base, newValue });
    const authorizer = this.#options.authorizer;
    const checkContext = command.machineState === undefined ? {} : { machineState: command.machineState };
    const principal = read.principal;
    if (principal === undefined || !authorizer.can(principal, command.permission, command.target, checkContext)) {
      const error =
        principal === undefined
          ? read.error!
          : authorizer.forbidden(
              principal,
              command.permission,
              "subject" in command ? command.subject : command.target,
              checkContext,
            );
      await this.#record({ ...entry(), outcome: "denied", reason: reasonOf(error, command.comment) });
      throw error;
    }
    const context: CommandContext = {
      principal,
      refused: (permission, targets, options = {}) =>
        targets.filter(
          (target) =>
            !authorizer.can(principal, permission, target, options.inAnyState ? { inAnyState: true } : checkContext),
        ),
      recordRequest: (value) => {
        newValue = value;
      },
    };
    let oldValue: unknown;
    let result: TResult;
    try {
      oldValue = await command.readOldValue?.();
      result = await command.execute(context);
    } catch (error) {
      const outcome = KilnError.is(error) && DENIAL_CODES.includes(error.code) ? "denied" : "failed";
      await this.#record({ ...withOld(entry(), oldValue), outcome, reason: reasonOf(error, command.comment) });
      throw error;
    }
    await this.#record({
      ...withOld(entry(), oldValue),
      outcome: "allowed",
      ...(command.comment === undefined ? {} : { reason: command.comment }),
    });
    return result;
  }

  /** Writes the backlog, oldest first; resolves true when it is empty. Never rejects. */
  async flush(): Promise<boolean> {
    while (this.#backlog.length > 0) {
      try {
        await this.#options.audit.record(this.#backlog[0]!);
      } catch {
        return false;
      }
      this.#backlog.shift();
    }
    return true;
  }

  async #record(entry: AuditEntry): Promise<void> {
    if ((await this.flush()) === false) {
      this.#enqueue(entry, undefined);
      return;
    }
    try {
      await this.#options.audit.record(entry);
    } catch (error) {
      this.#enqueue(entry, error);
    }
  }

  #enqueue(entry: AuditEntry, error: unknown): void {
    this.#backlog.push(entry);
    let dropped = 0;
    while (this.#backlog.length > this.#backlogLimit) {
      this.#backlog.shift();
      dropped++;
    }
    const now = this.#options.clock.now();
    this.#logger.error(
      { principal: entry.principal, action: entry.action, target: entry.target, backlog: this.#backlog.length, error },
      "an audit entry could not be recorded; it is kept for retry",
    );
    void this.#options.bus?.publish("audit-record-fail", {
      at: now,
      principal: entry.principal,
      action: entry.action,
      target: entry.target,
      outcome: entry.outcome,
      backlog: this.#backlog.length,
      error: error ?? new KilnError("KILN_STORE_ERROR", "The audit log is still failing (backlog not yet written)."),
    });
    if (dropped > 0) {
      this.#dropped += dropped;
      void this.#options.bus?.publish("audit-entry-drop", {
        at: now,
        count: dropped,
        reason: `the audit backlog is full (${this.#backlogLimit} entries)`,
      });
    }
  }
}

function withOld<TEntry extends object>(entry: TEntry, oldValue: unknown): TEntry & { oldValue?: unknown } {
  return oldValue === undefined ? entry : { ...entry, oldValue };
}

function reasonOf(error: unknown, comment: string | undefined): string {
  const text = KilnError.is(error)
    ? `${error.code}: ${error.message}`
    : error instanceof Error
      ? error.message
      : String(error);
  return comment === undefined ? text : `${text} (comment: ${comment})`;
}
