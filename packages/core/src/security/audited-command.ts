import { randomUUID } from "node:crypto";
import { disclosedRefusal } from "../domain/refusal-disclosure";
import { disclosureFor } from "./refusal-disclosure-rule";
import { KilnError, KilnValidationError } from "../domain/errors";
import type { AuditEntry } from "@kiln/core/driver-kit";
import type { Logger } from "../ports/logger";
import { silentLogger } from "../runtime/silent-logger";
import { auditedTarget, auditedText, CATEGORY_MAX_LENGTH, NAME_MAX_LENGTH } from "./command-input";
import { COMMENT_MAX_LENGTH, storableAuditValue } from "./storable-value";
import {
  SYSTEM_PRINCIPAL,
  outcomeOf,
  isReservedAction,
  checkComment,
  REFUSAL_ID_SUFFIX,
  CANCEL_ID_SUFFIX,
  FAIL_ID_SUFFIX,
  LANDED_ID_SUFFIX,
  cancelledBeforeEffect,
  reasonOf,
  checkTarget,
  auditedRoles,
  withOld,
} from "./audit-entry-rules";
import {
  isReservedPrincipalId,
  snapshotPrincipal,
  type Permission,
  type Principal,
  type PrincipalSnapshot,
} from "./authorization";
import { AuditWriter } from "./audit-writer";
import type { AuditWriterStatus } from "./audit-writer-status";
import { DEFAULT_RUN_WITHOUT_DURABLE_AUDIT, type AuditedCommandRunnerOptions } from "./audited-command-options";

/** What a command's `execute` gets from the runner. */
export interface CommandContext {
  /** The principal as read once at the command boundary (frozen): use it, never the caller's object. */
  readonly principal: Principal;
  /**
   * The targets of `targets` on which the principal may not use `permission`, in order; empty
   * when all are allowed. Checked in the command's machine state; with `inStates`, in every one
   * of those states (a target is refused unless allowed in each); with `inAnyState`, in some state.
   */
  refused(
    permission: Permission,
    targets: readonly string[],
    options?: { readonly inAnyState?: boolean; readonly inStates?: readonly string[] },
  ): string[];
  /** Replaces what the audit entry records as the requested value (e.g. a recipe's write set once known). */
  recordRequest(newValue: unknown): void;
  /**
   * Makes the command's audit entry (outcome `allowed`) durable now: stored, or journaled when
   * the store does not take it; call it once the command's checks passed and before its first
   * effect (a driver write, a state change). Idempotent; a no-op for commands that commit
   * `before-execute`.
   * @throws KilnError `KILN_AUDIT_UNAVAILABLE` when the entry cannot be made durable: do nothing
   *   more and let it propagate (the refusal is already audited and reported).
   */
  commit(): Promise<void>;
  /**
   * Records what became of the command after it answered, as its own entry `<id>:<suffix>`
   * naming it (`refersTo`), timed now: e.g. `landed` for a write answered `KILN_TIMEOUT` whose
   * driver call reached the device later (review 15f, LOW). Never waits for the store. A `fail`
   * told while the command runs is held and joined with its own error, if any, into its one
   * `:fail`; every `:fail` entry is published as `command-fail` once (adversarial review adv15r, M2).
   * One entry per suffix: a second is logged, not recorded.
   */
  recordAfter(suffix: string, fields: Pick<AuditEntry, "outcome" | "reason">): void;
}

/** One command to authorize, run and audit. */
export interface AuditedCommand<TResult> {
  /**
   * Who issues it: a principal, read once here, or the {@link PrincipalSnapshot} the caller took
   * at its own boundary (used as it is, so a principal changed after the call changes nothing).
   */
  readonly principal: Principal | PrincipalSnapshot;
  /** The permission it needs (also the audit `action` unless `action` is given). */
  readonly permission: Permission;
  /** The audit action name. @default permission */
  readonly action?: string;
  /**
   * What it acts on: tag name, process id, alarm id, machine id. Recorded in the audit entry
   * (escaped and bounded: `auditedTarget`). The principal is authorized on it as given first
   * (ADR 0007): a principal without the permission on it is refused `KILN_FORBIDDEN` whatever its
   * form; only then is it checked (1 to 256 characters, no control or format characters;
   * `KILN_VALIDATION`, path `target`). A target that is not a non-empty string is authorized as
   * no target: a grant limited to targets does not match it.
   */
  readonly target: string;
  /**
   * What a refusal's message may name: only what the caller named itself (a tag, an alarm id),
   * never state it could not see (the running process's id). @default target
   */
  readonly subject?: string;
  /**
   * The machine state the command is checked in: grants limited to states (see
   * `PermissionGrant.states`) match only in theirs. Omitted: state-limited grants do not match.
   * A function is read at the check and again at the commit point (inside the audit writer's
   * turn, just before the entry is made durable): a command authorized in one state whose
   * machine has moved to a state its grant does not cover is refused there (`denied`), so the
   * check and the effect see the same state.
   */
  readonly machineState?: string | (() => string);
  /** The value requested, where it applies (a tag write's value, a new mode). */
  readonly newValue?: unknown;
  /** Reads the value before the command, where it applies; called only once the command is authorized. */
  readonly readOldValue?: () => unknown | Promise<unknown>;
  /**
   * A safety function (a machine stop, fault or abort): it acts at once, as the actions in
   * `runWithoutDurableAudit` do, without waiting for its entry to be durable; the entry follows
   * (stored, or kept, retried and reported). A stop button must stop the plant while the audit
   * store is down (ADR 0042). Like those actions, it answers once its effect is done and its
   * entries (a refusal's, a failure's too) are handed to the writer, journaled when there is a
   * journal: never after the audit store (review 15y, L6). @default false
   */
  readonly safetyFunction?: boolean;
  /**
   * The operator's stated reason, recorded with the entry: a string of at most
   * `COMMENT_MAX_LENGTH` (1000) characters. Anything else refuses the command with
   * `KILN_VALIDATION` (path `comment`), recorded `denied` without the comment.
   */
  readonly comment?: string;
  /**
   * When the audit entry is made durable. `before-execute`: before `execute` is called.
   * `in-execute`: `execute` runs its own checks first (a refusal there is recorded `denied`
   * after the fact; nothing happened) and calls {@link CommandContext.commit} before its first
   * effect. @default "before-execute"
   */
  readonly commit?: "before-execute" | "in-execute";
  /**
   * Called once the command is refused before it runs (not authorized, a malformed target, the
   * stop's gate), before its `denied` entry is handed to the audit writer: nothing of it acts
   * from then on, so a caller that serialized it (the control system's state-command turn) can let
   * the next command go without waiting for the entry to be recorded (adv15g MEDIUM-2, fix15j).
   */
  readonly onDecided?: () => void;
  /** The action itself; runs only when authorized. */
  readonly execute: (context: CommandContext) => TResult | Promise<TResult>;
}

/**
 * Runs commands as authorize → read old value → make the entry durable (commit) → execute, and
 * records one {@link AuditEntry}, under its own event id, for every command (two when a refusal
 * follows an `allowed` entry already offered to the store: see {@link AuditEntry.refersTo}).
 * The principal is read once, validated and frozen first ({@link snapshotPrincipal}); the entry,
 * the check and `execute` (through its {@link CommandContext}) all use that snapshot. A refusal's
 * message names only `subject` and, to a principal who holds the permission in another state,
 * the machine state. Every error `run` hands its caller is cut to what the caller may know
 * (`disclosureFor`: machine state, process id, tags of a process's writes; review 15e); the
 * entry's `reason` keeps it all.
 *
 * - `denied`: the authorizer refused (`KILN_FORBIDDEN`, or `KILN_VALIDATION` for a malformed
 *   principal): `execute` never runs, so nothing reaches a PLC; or `execute` was refused by a
 *   check (its error code is one of {@link DENIAL_CODES}: bad value, read-only tag, FSM guard);
 *   or the audit trail could not take the entry (`KILN_AUDIT_UNAVAILABLE`, below).
 * - `failed`: `execute` threw anything else before the commit (the system not running).
 * - `allowed`: authorized, checked and committed; recorded before `execute`'s first effect. A
 *   failure after that (the device refused the write, a timeout, a transition an abort raced)
 *   leaves the entry as it is and is recorded as an entry of its own, id `<id>:fail`, whose
 *   `refersTo` names it (outcome `denied` for a {@link DENIAL_CODES} error: nothing happened;
 *   else `failed`), and published as `command-fail`; the caller gets the error.
 *
 * The entry's `at` is when the command was issued; `reason` is the error (`CODE: message`) for
 * denied and failed commands, and the operator's `comment` (appended to the error when both).
 * The command's own result or error is returned or rethrown unchanged.
 *
 * **Fail closed (IEC 62443-3-3 CR 2.10, ADR 0013).** An authorized command runs only once its
 * `allowed` entry is durable: with a working backlog journal with room, appended to it (and
 * stored in the background); otherwise stored in the audit log, its own entry first (ADR 0034,
 * amendment 15j). While the store fails, only the background retry calls it. This holds
 * with or without a journal, so even the first command after the store fails is refused, not
 * run. A refusal is `KILN_AUDIT_UNAVAILABLE` (nothing executed); it is the command's audit entry
 * (`denied`) and is published as `command-refuse`. Once the `allowed` entry was offered to the
 * store its fate may be unknown (a timeout: it can still commit later), so the refusal is never
 * written under its id: it is an entry of its own, id `<id>:refusal`, whose `refersTo` names the
 * intent. The trail is append-only and keeps both; an entry referred to this way did not run. Actions listed in
 * `runWithoutDurableAudit` (default `recipe.abort`, `recipe.pause`) and safety functions act at
 * once, without waiting for the audit writer; their entry follows (stored, or kept and
 * reported), and they answer once it is journaled (at once without a journal), never after the store.
 * With `commit: "in-execute"` the command runs its own side-effect-free checks first and calls
 * {@link CommandContext.commit} before its first effect, so a check's refusal is still `denied`.
 *
 * **The backlog (CR 2.9).** An entry the store does not take (a retryable error) is journaled
 * (or kept in memory without a journal), reported by `audit-record-fail`, and written, oldest
 * first and one at a time, in the background, off the writer: a command's entry never waits for
 * the backlog (without a journal it may be stored before older ones; each keeps its `at`, so the
 * trail reads in time order). An entry the store refuses for good (a
 * non-retryable error: text the database cannot hold, a malformed field) is skipped and reported
 * by `audit-entry-skip`, so a caller-controlled field can never hold up the trail. An error the
 * store did not classify (not a `KilnError`) is not an answer about the entry: it is kept and
 * retried like a retryable one, until the poison rule (see `#drain`) finds it is about the entry:
 * then it is set aside, and a follow-up entry (a refusal, a `:fail`) is recorded again without
 * its values and reason, so it never holds the trail (adversarial review adv15r, M3). Stores record once per id, so a retry after an
 * unknown outcome never duplicates an entry.
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
  readonly #unguarded: ReadonlySet<string>;
  readonly #newId: () => string;
  /** Makes the entries durable: the backlog, its journal and reserve, the store calls, the command gate. */
  readonly #writer: AuditWriter;
  /**
   * Every command and system action not yet answered, whatever it waits on (its turn at the
   * writer, a store call, a device write, a store port, a process save): what
   * {@link releaseInFlight} settles at the end of a stop (fix15ab).
   */
  readonly #inFlight = new Set<CommandFlight>();

  /** @throws RangeError when `backlog.maxEntries` is not a positive integer. */
  constructor(options: AuditedCommandRunnerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#unguarded = new Set(options.runWithoutDurableAudit ?? DEFAULT_RUN_WITHOUT_DURABLE_AUDIT);
    this.#newId = options.newId ?? randomUUID;
    this.#writer = new AuditWriter(options);
  }

  /** {@inheritDoc AuditWriter.backlog} */
  get backlog(): number {
    return this.#writer.backlog;
  }

  /** {@inheritDoc AuditWriter.dropped} */
  get dropped(): number {
    return this.#writer.dropped;
  }

  /** {@inheritDoc AuditWriter.skipped} */
  get skipped(): number {
    return this.#writer.skipped;
  }

  /** {@inheritDoc AuditWriter.status} */
  status(): AuditWriterStatus {
    return this.#writer.status();
  }

  /** Commands and system actions run by this runner and not yet answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * The stop's one rule for what is still in flight before the audit writer closes (fix15ab): every
   * command and system action not yet answered, whatever it waits on, is answered now and hands
   * the entry it still owes to the writer, so the writer's close stores it, journals it or
   * counts it dropped at the stop: a command whose `allowed` entry was committed (or a system
   * action) gets its `<id>:fail` (`failed`, naming `error`: its outcome is unknown), one not
   * committed its refusal entry (`<id>:refusal` when its intent was offered). Its caller gets
   * `error` (`KILN_LIFECYCLE`), or the answer already decided when its last entry was handed to
   * the writer already (a denial waiting for its store call). What the command goes on doing in
   * the background records nothing more (logged): it never acts again through this runner (a
   * commit refuses), and a late entry never counts after the stop. Returns the count released.
   */
  releaseInFlight(error: KilnError): number {
    const flights = [...this.#inFlight];
    this.#inFlight.clear();
    for (const flight of flights) flight.release(error);
    return flights.length;
  }

  /**
   * Authorizes and runs `command`, auditing the outcome.
   * @returns what `execute` returned.
   * @throws KilnError `KILN_FORBIDDEN` (or `KILN_VALIDATION` for a malformed principal) when not
   *   authorized, decided before the target is validated (ADR 0007); `KILN_VALIDATION` (path
   *   `target`) for a malformed target of an authorized principal; `KILN_AUDIT_UNAVAILABLE` (retryable, nothing executed) when its audit entry
   *   cannot be made durable; otherwise whatever `execute` threw, cut to what the principal may
   *   know (`disclosedRefusal`: same code and `retryable`; the audit entry keeps the full reason).
   */
  async run<TResult>(command: AuditedCommand<TResult>): Promise<TResult> {
    // Read once: the audit and every check below see the same principal.
    const read = snapshotPrincipal(command.principal);
    const flight = new CommandFlight();
    this.#inFlight.add(flight);
    try {
      return (await flight.answer(this.#run(command, read, flight))) as TResult;
    } catch (error) {
      // The one place a refusal reaches its caller: cut to what the caller may know (review 15e).
      // The audit entry keeps the full reason.
      throw disclosedRefusal(
        error,
        disclosureFor(
          this.#options.authorizer,
          read.principal,
          this.#options.machineId,
          command.permission.startsWith("recipe.") ? authorizedTarget(command.target) : undefined,
        ),
      );
    } finally {
      this.#inFlight.delete(flight);
    }
  }

  async #run<TResult>(
    command: AuditedCommand<TResult>,
    read: PrincipalSnapshot,
    flight: CommandFlight,
  ): Promise<TResult> {
    const at = this.#options.clock.now();
    const action = command.action ?? command.permission;
    const source = typeof read.source === "string" ? read.source : this.#options.source;
    const targetProblem = checkTarget(command.target);
    // What authorization is decided on before anything is validated: authorizedTarget.
    const givenTarget = authorizedTarget(command.target);
    // Every caller-influenced text field is escaped and bounded here, by the one rule
    // (auditedText), valid or not: a refusal's record echoes at most a bounded, visible prefix and
    // the original length; `reason` goes through the same rule (reasonOf).
    const base: AuditEntry = {
      id: this.#newId(),
      ...(this.#options.machineId === undefined ? {} : { machineId: this.#options.machineId }),
      // A reserved id (the system's own, `(system)`) is refused, and never recorded as the caller's.
      principal:
        typeof read.id === "string" && read.id !== "" && !isReservedPrincipalId(read.id)
          ? auditedText(read.id, NAME_MAX_LENGTH)
          : "(invalid principal)",
      roles: auditedRoles(read.roles),
      ...(source === undefined ? {} : { source: auditedText(source, NAME_MAX_LENGTH) }),
      // The `audit` category is the writer's own (its summaries, whose counts eviction folds in):
      // a command named into it is refused below and recorded under another category.
      category: isReservedAction(action) ? "(reserved)" : auditedText(action.split(".")[0]!, CATEGORY_MAX_LENGTH),
      action: auditedText(action, NAME_MAX_LENGTH),
      target: auditedTarget(command.target),
      outcome: "denied",
      at,
    };
    // Caller-controlled values are made storable once, here: every store and the journal get the same snapshot.
    let newValue = storableAuditValue(command.newValue);
    const entry = (): AuditEntry => (newValue === undefined ? base : { ...base, newValue });
    const commentProblem = checkComment(command.comment);
    // An invalid comment is never stored or echoed; the command is refused below, once authorized.
    // Escaped once, here (auditedText): the entry's reason shows it written out, never raw.
    const comment =
      commentProblem === undefined && command.comment !== undefined
        ? auditedText(command.comment, COMMENT_MAX_LENGTH)
        : undefined;
    const authorizer = this.#options.authorizer;
    const stateOf = command.machineState;
    const contextNow = (): { machineState?: string } =>
      stateOf === undefined ? {} : { machineState: typeof stateOf === "function" ? stateOf() : stateOf };
    const principal = read.principal;
    let checkContext: { machineState?: string } = {};
    let refusedBeforeRun: unknown;
    try {
      checkContext = contextNow();
      if (isReservedAction(action)) {
        // The command's own name (set by the code issuing it, never by its caller).
        refusedBeforeRun = new KilnValidationError(`${base.action} command`, [
          { path: "action", message: "must not be in the audit. namespace (reserved for the audit trail's summaries)" },
        ]);
      } else if (principal === undefined) {
        refusedBeforeRun = read.error!;
      } else if (!authorizer.can(principal, command.permission, givenTarget, checkContext)) {
        // Authorized before the target is validated (ADR 0007, amendment fix20d): a principal
        // without the right gets KILN_FORBIDDEN for any target, well-formed or not, and learns
        // no validation rule; its entry records the refusal (the target escaped and bounded).
        refusedBeforeRun = authorizer.forbidden(
          principal,
          command.permission,
          "subject" in command
            ? command.subject
            : typeof command.target === "string" && command.target !== ""
              ? command.target
              : undefined,
          checkContext,
        );
      } else if (targetProblem !== undefined) {
        // Shape, checked once authorized: a name no command accepts is refused without a lookup.
        refusedBeforeRun = new KilnValidationError(`${base.action} command`, [targetProblem]);
      } else if (
        this.#writer.gate !== undefined &&
        (this.#writer.gateAll || (!this.#unguarded.has(action) && command.safetyFunction !== true))
      ) {
        // The system is stopping (or stopped): refused before its body runs, so it touches no
        // store, device or recipe (a breaker opened by the stop would otherwise answer first).
        refusedBeforeRun = this.#writer.gate;
      }
    } catch (error) {
      // The check itself broke (a machine state that could not be read, a throwing authorizer):
      // the command does not run, and its entry says so, like every other (issue 15).
      refusedBeforeRun = error;
    }
    // A safety action (abort, pause, a machine stop) never waits for the audit store, not even for
    // the entries of its refusal or failure: they are handed to the writer (journaled when there
    // is a journal) and stored in the background (adversarial review 15y, L6).
    const guarded = !this.#unguarded.has(action) && command.safetyFunction !== true;
    // Released by the stop (fix15ab): its entry was handed then; nothing later is recorded for it.
    const unreleased = (recorded: AuditEntry): boolean => {
      if (flight.released === undefined) return true;
      this.#logger.error(
        { id: recorded.id, action: recorded.action, outcome: recorded.outcome },
        "an entry of a command the stop released was not recorded (the stop recorded what it owed)",
      );
      return false;
    };
    const record = (recorded: AuditEntry): Promise<void> =>
      !unreleased(recorded)
        ? Promise.resolve()
        : guarded
          ? this.#writer.record(recorded)
          : this.#writer.recordFollowing(recorded);
    if (refusedBeforeRun !== undefined) {
      // Its last entry goes to the writer now: released meanwhile, its caller gets this refusal.
      flight.decided = { error: refusedBeforeRun };
      command.onDecided?.();
      await record({
        ...entry(),
        outcome: outcomeOf(refusedBeforeRun),
        reason: reasonOf(refusedBeforeRun, comment),
      });
      throw refusedBeforeRun;
    }
    if (principal === undefined) throw read.error!; // refused above (this narrows its type)
    // Once the `allowed` entry (the intent) has been offered to the store, its outcome may be
    // unknown (a timeout: the INSERT can still commit later). What happens to the command after
    // that is its own entry, never a second write under the intent's id, which every store would
    // ignore (ADR 0013 addendum): deterministic, so a retry of it stays idempotent.
    const refusalId = `${base.id}${REFUSAL_ID_SUFFIX}`;
    let oldValue: unknown;
    const state: { committed: "no" | "yes" | "refused"; offered: boolean } = { committed: "no", offered: false };
    // Its details name the entry that records it: `<id>:refusal` only once the intent was offered.
    const refusalError = (): KilnError => {
      // The journal's failure, when there is one, is the cause a caller (and an operator) needs:
      // a full disk (`errno: "ENOSPC"`) or a journal held by another process.
      const failure = this.#writer.journalFailure();
      return new KilnError(
        "KILN_AUDIT_UNAVAILABLE",
        `Refused ${base.action}: the audit trail cannot record it now` +
          `${failure === undefined ? "" : ` (${failure.message})`}, so it was not executed.`,
        {
          retryable: true,
          details: {
            ...(state.offered
              ? { action, auditEntryId: refusalId, intentEntryId: base.id }
              : { action, auditEntryId: base.id }),
            ...(failure === undefined
              ? {}
              : {
                  journalPath: failure.path,
                  journalOperation: failure.operation,
                  ...(failure.errno === undefined ? {} : { errno: failure.errno }),
                }),
          },
        },
      );
    };
    let refusal = refusalError();
    /** The entry of a command that did not run: its own, naming the intent when that was offered. */
    const outcomeEntry = (fields: Pick<AuditEntry, "outcome" | "reason">): AuditEntry => ({
      ...withOld(entry(), oldValue),
      ...fields,
      ...(state.offered ? { id: refusalId, refersTo: base.id } : {}),
    });
    /** Announces that this command was refused after its intent was offered (or could not be stored). */
    const publishRefusal = (reason: string): void =>
      this.#writer.publish("command-refuse", {
        id: base.id,
        principal: base.principal,
        action,
        target: base.target,
        reason,
      });
    /** A safety action's `allowed` entry on its way to the writer (see {@link AuditWriter.recordFollowing}). */
    let allowedRecorded: Promise<void> | undefined;
    const commit = async (): Promise<void> => {
      if (state.committed === "yes") return;
      if (state.committed === "refused") throw refusal;
      const allowed = {
        ...withOld(entry(), oldValue),
        outcome: "allowed" as const,
        ...(comment === undefined ? {} : { reason: comment }),
      };
      const stillAllowed = (): boolean =>
        typeof stateOf !== "function" || authorizer.can(principal, command.permission, command.target, contextNow());
      // An action in runWithoutDurableAudit (not a system safety function, and not while the
      // system stops) whose entry nothing durable could record or count now (the journal failing
      // and the reserve's writes failing too) waits for a durable entry like any other command:
      // fail closed, else a crash would lose its entry uncounted (fix15e, adv15d F1).
      let actsAtOnce = !guarded;
      if (actsAtOnce && command.safetyFunction !== true && this.#writer.gate === undefined) {
        const announced = this.#writer.announce(allowed);
        actsAtOnce = announced === true || (await announced);
        // Refused below after all: no longer counted.
        const refusedNow =
          !stillAllowed() || (this.#writer.gateAll && this.#writer.gate !== undefined) || flight.released !== undefined;
        if (actsAtOnce && refusedNow) this.#writer.withdraw(allowed);
      }
      if (actsAtOnce) {
        // A safety action (abort, pause) acts at once: it never waits behind other entries or a
        // hanging store. Its entry follows through the writer: stored, else kept in the backlog
        // (journaled when possible) and reported by audit-record-fail (ADR 0013).
        if (!stillAllowed()) {
          throw authorizer.forbidden(
            principal,
            command.permission,
            "subject" in command ? command.subject : command.target,
            contextNow(),
          );
        }
        // The gate may have closed for safety functions meanwhile (the stop is about to close the
        // writer): refused before it acts, so nothing acts whose entry the writer cannot take.
        if (this.#writer.gateAll && this.#writer.gate !== undefined) throw this.#writer.gate;
        if (flight.released !== undefined) throw flight.released;
        state.committed = "yes";
        // Handed to the writer now, before the effect; the command's answer waits for it to be
        // journaled (never for the store) once the effect is done.
        allowedRecorded = this.#writer.recordFollowing(allowed);
        return;
      }
      if (this.#writer.gate !== undefined) throw this.#writer.gate;
      if (flight.released !== undefined) throw flight.released;
      const outcome = await this.#writer.serial(async () => {
        // Re-checked at the commit point: the machine state (or the lifecycle) may have changed while waiting.
        if (this.#writer.gate !== undefined || flight.released !== undefined) return "closed" as const;
        if (!stillAllowed()) return "forbidden" as const;
        // `state.offered` is set by #commit only when the intent is handed to the store.
        const committed = await this.#writer.commit(allowed, state);
        if (committed === "refused") {
          // Recorded in the same turn, so no other command's intent is offered before this refusal
          // joins the backlog: refusals naming an intent stay bounded (ADR 0013 addendum).
          refusal = refusalError();
          const reason = reasonOf(refusal, comment);
          const refused = outcomeEntry({ outcome: "denied", reason });
          if (unreleased(refused)) {
            publishRefusal(reason);
            await this.#writer.recordNow(refused);
          }
        }
        return committed;
      });
      refusal = refusalError();
      // Released while its intent was offered (fix15ab): it never runs, whatever the store answered.
      if (flight.released !== undefined) throw flight.released;
      if (outcome === "closed") throw this.#writer.gate ?? refusal;
      if (outcome === "forbidden") {
        throw authorizer.forbidden(
          principal,
          command.permission,
          "subject" in command ? command.subject : command.target,
          contextNow(),
        );
      }
      if (outcome === "run") {
        state.committed = "yes";
        return;
      }
      state.committed = "refused";
      if (outcome === "unstorable") {
        // An unstorable entry was skipped and reported already; its refusal could not be stored either.
        publishRefusal(reasonOf(refusal, comment));
      }
      throw refusal;
    };
    // The follow-up entries recorded for this command, by suffix: one command has at most one of
    // each (adversarial review 15h, H3).
    const followed = new Set<string>();
    // A `:fail` told while the command still runs is held until it ends, so its one `:fail` tells
    // all that happened to this command, in order: its safe state's problems and then its own
    // refusal, never only the first (adversarial review 15j, M4).
    let executing = false;
    let heldFail: Pick<AuditEntry, "outcome" | "reason"> | undefined;
    /** Records the `<id>:<suffix>` entry telling what became of the command; `released`: the one a stop's release owes. */
    const followUp = (suffix: string, fields: Pick<AuditEntry, "outcome" | "reason">, released = false): void => {
      followed.add(suffix);
      const following: AuditEntry = {
        ...withOld(entry(), oldValue),
        id: `${base.id}:${suffix}`,
        refersTo: base.id,
        at: this.#options.clock.now(),
        ...fields,
      };
      // A command the stop released records only the entry the release owes (`owe` below).
      if (!released && !unreleased(following)) return;
      // A `:fail` is published as `command-fail` whatever path makes it (adversarial review adv15r, M2).
      void (`:${suffix}` === FAIL_ID_SUFFIX
        ? this.#writer.recordFail(following, (recorded) => this.#writer.recordFollowing(recorded))
        : this.#writer.recordFollowing(following));
    };
    // Released by the stop before it answered (fix15ab): the entry it owes goes to the writer now,
    // before the writer closes; its caller is answered with `error`.
    flight.owe = (error) => {
      const reason = reasonOf(error, comment);
      if (state.committed === "yes") {
        if (followed.has(FAIL_ID_SUFFIX.slice(1))) return;
        // What it met before (its safe state's problems), then the stop: one `:fail`.
        const before = heldFail;
        heldFail = undefined;
        followUp(
          FAIL_ID_SUFFIX.slice(1),
          { outcome: "failed", reason: before === undefined ? reason : `${before.reason ?? ""}; then ${reason}` },
          true,
        );
      } else if (state.committed === "no") {
        state.committed = "refused";
        const refused = outcomeEntry({ outcome: outcomeOf(error), reason });
        if (state.offered) publishRefusal(reason);
        void this.#writer.recordFollowing(refused);
      }
    };
    const context: CommandContext = {
      principal,
      refused: (permission, targets, options = {}) =>
        targets.filter((target) => {
          if (options.inAnyState) return !authorizer.can(principal, permission, target, { inAnyState: true });
          if (options.inStates !== undefined) {
            // Every state must allow it; no states allows nothing.
            return (
              options.inStates.length === 0 ||
              options.inStates.some((machineState) => !authorizer.can(principal, permission, target, { machineState }))
            );
          }
          return !authorizer.can(principal, permission, target, checkContext);
        }),
      recordRequest: (value) => {
        newValue = storableAuditValue(value);
      },
      commit,
      recordAfter: (suffix, fields) => {
        if (executing && suffix === FAIL_ID_SUFFIX.slice(1)) {
          heldFail =
            heldFail === undefined
              ? fields
              : {
                  outcome: heldFail.outcome === "failed" || fields.outcome === "failed" ? "failed" : fields.outcome,
                  reason: `${heldFail.reason ?? ""}; then ${fields.reason ?? ""}`,
                };
          return;
        }
        if (followed.has(suffix)) {
          this.#logger.error(
            { id: base.id, action, suffix, reason: fields.reason },
            "a second follow-up entry of a command was not recorded",
          );
          return;
        }
        followUp(suffix, fields);
      },
    };
    let result: TResult;
    try {
      if (commentProblem !== undefined) throw new KilnValidationError(`${action} command`, [commentProblem]);
      oldValue = storableAuditValue(await command.readOldValue?.());
      if (command.commit !== "in-execute") await commit();
      if (flight.released !== undefined) throw flight.released;
      executing = true;
      result = await command.execute(context);
      executing = false;
    } catch (error) {
      executing = false;
      if (state.committed === "refused") throw error;
      const reason = reasonOf(error, comment);
      // Its last entry goes to the writer now: released meanwhile, its caller gets this error.
      flight.decided = { error };
      if (state.committed === "yes") {
        // The `allowed` entry is durable and append-only: what happened after it is an entry of
        // its own naming it (deterministic id, as a refusal's: ADR 0013 addendum), so the trail
        // never reads `allowed` alone for a command that failed or did nothing. Cancelled before
        // its first effect (an abort during a start): `:cancel`, failed. Any other failure
        // after the commit (a device refusal, a transition an abort raced, a process id already
        // taken): `:fail`, `denied` when a check refused it (nothing happened), else `failed`.
        const cancelled = cancelledBeforeEffect(error);
        const suffix = cancelled ? CANCEL_ID_SUFFIX : FAIL_ID_SUFFIX;
        await allowedRecorded;
        // What the command met before it failed (its safe state's problems), then this failure:
        // one `:fail` saying both, `failed` when anything failed, `denied` only when a check alone
        // refused it (reviews 15h H3, 15j M4).
        const before = cancelled ? undefined : heldFail;
        if (cancelled && heldFail !== undefined) followUp(FAIL_ID_SUFFIX.slice(1), heldFail);
        heldFail = undefined;
        const outcome = cancelled ? "failed" : outcomeOf(error);
        if (!followed.has(suffix.slice(1))) {
          // One entry of each suffix: a `:fail` told after this one (a late settle) is not recorded twice.
          followed.add(suffix.slice(1));
          const following: AuditEntry = {
            ...withOld(entry(), oldValue),
            id: `${base.id}${suffix}`,
            refersTo: base.id,
            outcome: before?.outcome === "failed" ? "failed" : outcome,
            reason: before === undefined ? reason : `${before.reason ?? ""}; then ${reason}`,
          };
          if (unreleased(following)) await (cancelled ? record(following) : this.#writer.recordFail(following, record));
        }
        throw error;
      }
      await record(outcomeEntry({ outcome: outcomeOf(error), reason }));
      throw error;
    }
    // Released by the stop and completed after all: its `:fail` said the outcome is unknown. While
    // the writer still takes entries (the stop has not begun closing it) the trail says it ran;
    // after that nothing opens the journal of a stopped system (review 15s), and the `:fail` stands
    // (ADR 0013, amendment fix15ad).
    if (flight.released !== undefined && state.committed === "yes")
      this.#recordLanded({
        ...withOld(entry(), oldValue),
        id: `${base.id}${LANDED_ID_SUFFIX}`,
        refersTo: base.id,
        outcome: "allowed",
        at: this.#options.clock.now(),
        reason: `${base.action} completed after the control system's stop released it: the outcome its ${FAIL_ID_SUFFIX} entry called unknown is that it ran`,
      });
    // Its last entries go to the writer now: released meanwhile, its caller gets its result.
    flight.decided = { value: result };
    await allowedRecorded;
    if (heldFail !== undefined) {
      followUp(FAIL_ID_SUFFIX.slice(1), heldFail);
      heldFail = undefined;
    }
    if (state.committed === "no") {
      // An in-execute command that had no effect to commit before: record it now.
      await record({
        ...withOld(entry(), oldValue),
        outcome: "allowed",
        ...(comment === undefined ? {} : { reason: comment }),
      });
    }
    return result;
  }

  /**
   * Runs an action the system takes by itself, no principal having asked for it (the abort of a
   * running process at `stop()`, an interlock trip), and records it like a safety action: it is
   * never authorized nor refused and acts at once (a closed command gate, a hanging store or a
   * full backlog never hold it); its entry follows through the writer, outcome `allowed`,
   * principal `(system)` with no roles, `source` the runner's. When `effect`
   * throws, or `problemOf` finds a problem in its result (a safe-state write the device
   * refused), an entry of its own follows, id `<id>:fail`, `refersTo` the first, outcome
   * `failed`, published as `command-fail` (principal `(system)`; adv15r, M2). Resolves once `effect` has and its entries are journaled (with a journal; at once
   * without one), never waiting for the audit store; {@link AuditedCommandRunner.close} waits for them to be stored
   * or queued before it flushes (ADR 0042, amendment 15y).
   * @returns what `effect` returned. @throws what `effect` threw.
   */
  async runSystemAction<TResult>(
    action: { readonly action: string; readonly target: string; readonly reason: string; readonly newValue?: unknown },
    effect: () => Promise<TResult>,
    problemOf: (result: TResult) => string | undefined = () => undefined,
  ): Promise<TResult> {
    const entry: AuditEntry = {
      id: this.#newId(),
      ...(this.#options.machineId === undefined ? {} : { machineId: this.#options.machineId }),
      principal: SYSTEM_PRINCIPAL,
      roles: [],
      ...(this.#options.source === undefined ? {} : { source: auditedText(this.#options.source, NAME_MAX_LENGTH) }),
      category: auditedText(action.action.split(".")[0]!, CATEGORY_MAX_LENGTH),
      action: auditedText(action.action, NAME_MAX_LENGTH),
      target: auditedTarget(action.target),
      ...(action.newValue === undefined ? {} : { newValue: storableAuditValue(action.newValue) }),
      outcome: "allowed",
      reason: reasonOf(action.reason, undefined),
      at: this.#options.clock.now(),
    };
    // The action never waits for the store: its entries follow (journaled before it answers
    // when there is a journal), and close() waits for them.
    const recorded = this.#writer.recordFollowing(entry);
    const flight = new CommandFlight();
    let failRecorded = false;
    const failed = (cause: unknown): Promise<void> => {
      if (failRecorded) return recorded;
      failRecorded = true;
      return recorded.then(() =>
        this.#writer.recordFail(
          {
            ...entry,
            id: `${entry.id}${FAIL_ID_SUFFIX}`,
            refersTo: entry.id,
            outcome: "failed",
            reason: reasonOf(cause, undefined),
          },
          (recorded) => this.#writer.recordFollowing(recorded),
        ),
      );
    };
    // Released by the stop while its effect is still under way (a process save, a device write
    // within its timeout): its `:fail` (outcome unknown) goes to the writer now (fix15ab).
    flight.owe = (error) => void failed(error);
    const run = async (): Promise<TResult> => {
      let result: TResult;
      try {
        result = await effect();
      } catch (error) {
        if (flight.released !== undefined) throw error;
        flight.decided = { error };
        await failed(error);
        throw error;
      }
      if (flight.released !== undefined) return result;
      flight.decided = { value: result };
      const problem = problemOf(result);
      await (problem === undefined ? recorded : failed(problem));
      return result;
    };
    this.#inFlight.add(flight);
    try {
      return (await flight.answer(run())) as TResult;
    } finally {
      this.#inFlight.delete(flight);
    }
  }

  /**
   * A command the stop released completed after all (fix15ad): its `<id>:landed` entry is handed
   * to the writer while it still takes entries; once the writer is closing it is not recorded
   * (the trail keeps the `:fail` saying the outcome is unknown because the system stopped) and the
   * completion is logged as an error, never silent.
   */
  #recordLanded(landed: AuditEntry): void {
    if (this.#writer.accepting) {
      void this.#writer.recordFollowing(landed);
      return;
    }
    this.#logger.error(
      { id: landed.refersTo, action: landed.action, target: landed.target },
      "a command the stop released completed after the audit writer closed: not recorded; its :fail entry says its outcome is unknown",
    );
  }

  /** {@inheritDoc AuditWriter.flush} */
  flush(): Promise<boolean> {
    return this.#writer.flush();
  }

  /** {@inheritDoc AuditWriter.open} */
  open(): Promise<void> {
    return this.#writer.open();
  }

  /** {@inheritDoc AuditWriter.refuseCommits} */
  refuseCommits(
    error: KilnError,
    options: { readonly safetyFunctions?: boolean; readonly stopped?: boolean } = {},
  ): void {
    this.#writer.refuseCommits(error, options);
  }

  /** {@inheritDoc AuditWriter.close} */
  close(): Promise<void> {
    return this.#writer.close();
  }

  /** {@inheritDoc AuditWriter.giveUpClose} */
  giveUpClose(reason: string): number {
    return this.#writer.giveUpClose(reason);
  }
}

/**
 * One command or system action in flight (fix15ab): how the stop answers it and hands the entry
 * it owes to the writer ({@link AuditedCommandRunner.releaseInFlight}).
 */
class CommandFlight {
  /** The stop's error once released: nothing more is recorded for it, and it does not act. */
  released: KilnError | undefined;
  /** Its answer, once its last entry is on its way to the writer: released then, its caller gets this. */
  decided: { readonly value: unknown } | { readonly error: unknown } | undefined;
  /** Hands the entry it owes when released now (set by the command as it goes; nothing before). */
  owe: (error: KilnError) => void = () => undefined;
  #answer!: (outcome: { readonly value: unknown } | { readonly error: unknown }) => void;
  readonly #released = new Promise<{ readonly value: unknown } | { readonly error: unknown }>(
    (resolve) => (this.#answer = resolve),
  );

  /** `work`'s outcome, or the stop's answer when released first. */
  async answer(work: Promise<unknown>): Promise<unknown> {
    const outcome = await Promise.race([
      work.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      this.#released,
    ]);
    if ("error" in outcome) throw outcome.error;
    return outcome.value;
  }

  release(error: KilnError): void {
    if (this.released !== undefined) return;
    this.released = error;
    if (this.decided === undefined) this.owe(error);
    this.#answer(this.decided ?? { error });
  }
}

/**
 * The target a command's principal is authorized on, before the target is validated (ADR 0007, amendment fix20d):
 * the target as given when it is a string of 1 to {@link NAME_MAX_LENGTH} code units, else no target, which a
 * grant limited to targets never matches (so a principal without an unrestricted grant is refused `KILN_FORBIDDEN`,
 * one with it gets the target's `KILN_VALIDATION`). Bounded: a grant's pattern costs time in proportion to the
 * target's length, once per pattern and check, and a 5 MB target against 20 patterns blocked the event loop for
 * 1.6 s (adv20d F1; before fix20d the length rule ran first).
 */
function authorizedTarget(target: unknown): string | undefined {
  return typeof target === "string" && target !== "" && target.length <= NAME_MAX_LENGTH ? target : undefined;
}
