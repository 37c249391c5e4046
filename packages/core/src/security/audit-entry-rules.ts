/**
 * What an audit entry says and how it is named: a command's outcome from its error, the entry's
 * `reason`, the ids of its follow-up entries (`:refusal`, `:cancel`, `:fail`), the writer's own
 * summary entries, and a follow-up recorded again without what the store kept refusing (ADR 0013).
 */
import type { AuditEntry } from "@kiln/core/driver-kit";
import { KilnError, type KilnErrorCode, type ValidationIssue } from "../domain/errors";
import {
  auditedText,
  boundedText,
  checkIdentifier,
  hasVisibleMessage,
  ROLE_MAX_LENGTH,
  ROLES_MAX_COUNT,
} from "./command-input";
import { COMMENT_MAX_LENGTH } from "./storable-value";

/**
 * The principal id of the entries of actions the system takes by itself
 * ({@link AuditedCommandRunner.runSystemAction}: the abort at `stop()`, an interlock trip), with
 * no roles. Parentheses, like the audit trail's own `(audit)` summaries: a host's principals are
 * named by the host, which should not name one so.
 */
export const SYSTEM_PRINCIPAL = "(system)";

/** Error codes that mean a command was refused by a check (recorded `denied`), not that it failed while running. */
export const DENIAL_CODES: readonly KilnErrorCode[] = [
  "KILN_FORBIDDEN",
  "KILN_VALIDATION",
  "KILN_TAG_UNKNOWN",
  "KILN_TAG_NOT_WRITABLE",
  "KILN_OUT_OF_RANGE",
  "KILN_INVALID_TRANSITION",
  // What the command names does not exist (an unknown alarm, no process to abort, no such saved
  // recipe): a check of its input before any effect, so a refusal like the ones above.
  "KILN_NOT_FOUND",
];

/**
 * The outcome of a command that did not run: `denied` when a check refused it ({@link DENIAL_CODES},
 * or a write refused by the per-tag bound: `KILN_BUFFER_FULL` with `details.rule:
 * "maxCallsOutPerTag"`, checked before anything is sent; review 15j, L1), else `failed`.
 * `KILN_BUFFER_FULL` is not a denial code as such: its other throwers (the audit and sample
 * journals, the alarm history, a host's driver) are not checks of a command, and a driver's may
 * come after its request was sent.
 */
export function outcomeOf(error: unknown): "denied" | "failed" {
  if (!KilnError.is(error)) return "failed";
  if (DENIAL_CODES.includes(error.code)) return "denied";
  const rule = (error.details as { rule?: unknown } | undefined)?.rule;
  return error.code === "KILN_BUFFER_FULL" && rule === "maxCallsOutPerTag" ? "denied" : "failed";
}

/**
 * What a follow-up entry (one with `refersTo`: a refusal, a `:fail`) that the store kept refusing
 * says in the trail when it is recorded again without its values and reason (adversarial review
 * adv15r, M3): the end of its `reason`, which also marks it as stripped.
 */
const STRIPPED_NOTE =
  "recorded without its values, reason and comment: the audit store kept refusing this entry with them " +
  "(the whole entry is in the error log and the audit-entry-skip event, and in <journal>.set-aside with a journal)";

/** Whether `entry` is a follow-up already recorded again without its values ({@link strippedFollowUp}). */
export function isStrippedFollowUp(entry: AuditEntry): boolean {
  return entry.reason?.endsWith(STRIPPED_NOTE) === true;
}

/**
 * A follow-up entry without what the store may have refused in it: its id, `refersTo`, who, what
 * and when and its outcome stay; `newValue`, `oldValue` and the reason (an error text, a comment)
 * go, the reason's code kept (`KILN_AUDIT_UNAVAILABLE` for a refusal: the command did not run).
 */
export function strippedFollowUp(entry: AuditEntry): AuditEntry {
  return withoutValues(entry, STRIPPED_NOTE);
}

/**
 * What a follow-up entry says in the trail when the audit reserve had no room for the whole of it
 * (the journal full, by disk or `maxBytes`) and a crash came before it was stored: the end of its
 * `reason` (adv15za HIGH-1 follow-up, fix15c).
 */
const RESERVE_STUB_NOTE =
  "recorded without its values, reason and comment: the audit journal was full and its reserve had no room " +
  "for the whole entry (the entry it refers to holds the values)";

/**
 * A follow-up entry (a refusal of an offered intent, a `:fail`) as the audit reserve keeps it when
 * it has no room for the whole entry: its id, `refersTo`, who, what, when and outcome stay, so a
 * crash never loses the fact that the command was refused; `newValue`, `oldValue` and the reason
 * go, the reason's code kept. The whole entry stays in memory and is stored as it is unless the
 * process dies first (one id: the store keeps whichever comes first).
 */
export function reserveStub(entry: AuditEntry): AuditEntry {
  return withoutValues(entry, RESERVE_STUB_NOTE);
}

function withoutValues(entry: AuditEntry, note: string): AuditEntry {
  const stripped: AuditEntry = { ...entry };
  delete (stripped as { newValue?: unknown }).newValue;
  delete (stripped as { oldValue?: unknown }).oldValue;
  const code = /^KILN_[A-Z_]+(?=:)/.exec(entry.reason ?? "")?.[0];
  const said = entry.id.endsWith(REFUSAL_ID_SUFFIX) ? "the command was not executed; " : "";
  return { ...stripped, reason: `${code ?? "(no code)"}: ${said}${note}` };
}

/** True for the refusal of a command whose `allowed` entry was offered to the store (it names the intent). */
export function isIntentRefusal(entry: AuditEntry): boolean {
  return entry.refersTo !== undefined;
}

/** Whether `action` is in the `audit.` namespace, which only the writer's own summary entries use. */
export function isReservedAction(action: string): boolean {
  return action.split(".")[0] === "audit";
}

/**
 * Whether `entry` is one of the writer's summaries (`audit.drop`, `audit.overflow`): an entry
 * that stands for a count of commands, not for one. No command can be recorded under the `audit`
 * category ({@link isReservedAction}), so the category identifies them, also read back from a journal.
 */
export function isSummary(entry: AuditEntry): boolean {
  return (
    entry.category === "audit" &&
    (entry.action === "audit.drop" || entry.action === "audit.overflow" || entry.action === "audit.coalesce")
  );
}

/** The rule a command's comment breaks, or undefined when it is absent or a string of at most {@link COMMENT_MAX_LENGTH}. */
export function checkComment(comment: unknown): ValidationIssue | undefined {
  if (comment === undefined) return undefined;
  if (typeof comment !== "string") return { path: "comment", message: "must be a string" };
  if (comment.length > COMMENT_MAX_LENGTH) {
    return { path: "comment", message: `must be at most ${COMMENT_MAX_LENGTH} characters` };
  }
  return undefined;
}

/**
 * Appended to a command's event id to make the id of its refusal entry, recorded when the
 * command was refused after its `allowed` entry was offered to the store (see
 * {@link AuditEntry.refersTo}).
 */
export const REFUSAL_ID_SUFFIX = ":refusal";

/**
 * Appended to a command's event id to make the id of the entry recording that it was cancelled
 * after its `allowed` entry was made durable, before its first effect (an abort during a start).
 */
export const CANCEL_ID_SUFFIX = ":cancel";

/**
 * Appended to a command's event id to make the id of the entry recording that it failed (or was
 * refused by a check only its execution could make) after its `allowed` entry was made durable.
 */
export const FAIL_ID_SUFFIX = ":fail";

/**
 * Appended to a command's event id to make the id of the entry recording that a command the stop
 * released (its `:fail` saying its outcome is unknown) completed after all, while the audit
 * writer was still open (ADR 0013, amendment fix15ad).
 */
export const LANDED_ID_SUFFIX = ":landed";

/** A command's own word that it was cancelled before its first effect: `KILN_ABORTED` with `details.cancelled`. */
export function cancelledBeforeEffect(error: unknown): boolean {
  return KilnError.is(error, "KILN_ABORTED") && error.details["cancelled"] === true;
}

/**
 * The store's definite answer that this entry can never be stored (a malformed field, text the
 * database cannot hold). Timeouts, an open breaker, a closed store and unknown errors are retried.
 */
export function refusedForGood(error: unknown): boolean {
  return (
    KilnError.is(error) && !error.retryable && (error.code === "KILN_VALIDATION" || error.code === "KILN_STORE_ERROR")
  );
}

export function withOld<TEntry extends object>(entry: TEntry, oldValue: unknown): TEntry & { oldValue?: unknown } {
  return oldValue === undefined ? entry : { ...entry, oldValue };
}

/** Longest error text kept in an entry's `reason` (the comment, at most 1000 more, comes after it). */
export const REASON_MAX_LENGTH = 2000;

/**
 * An entry's `reason`: the error (`CODE: message`) through {@link auditedText}, so a validation
 * message echoing a hostile key (a newline, U+202E) shows it written out, never raw; a message
 * already written out where it was built ({@link hasVisibleMessage}: `forbidden()`'s, naming the
 * caller's target) is only cut to the bound, never escaped twice (ADR 0007, amendment fix20e);
 * then the operator's comment, escaped by the same rule where it was read.
 */
export function reasonOf(error: unknown, comment: string | undefined): string {
  const message = KilnError.is(error)
    ? `${error.code}: ${error.message}`
    : error instanceof Error
      ? error.message
      : String(error);
  const text = hasVisibleMessage(error)
    ? boundedText(message, REASON_MAX_LENGTH)
    : auditedText(message, REASON_MAX_LENGTH);
  return comment === undefined ? text : `${text} (comment: ${comment})`;
}

/**
 * The rule a command's target breaks, or undefined when it is an identifier: 1 to
 * {@link NAME_MAX_LENGTH} characters without control, format, invisible or line-separator characters, spaces but U+0020,
 * or lone surrogates (the one rule,
 * {@link checkIdentifier}).
 */
export function checkTarget(target: unknown): ValidationIssue | undefined {
  return checkIdentifier(target, "target");
}

/**
 * A principal's roles as recorded: at most {@link ROLES_MAX_COUNT}, each a string cut to
 * {@link ROLE_MAX_LENGTH}; an element that is not a string is recorded as `"(invalid role)"`
 * and a longer list ends with `"…(N roles)"`, so every store takes the entry (ADR 0013).
 */
export function auditedRoles(roles: unknown): string[] {
  if (!Array.isArray(roles)) return [];
  const kept = (roles as unknown[])
    .slice(0, ROLES_MAX_COUNT)
    .map((role) => (typeof role === "string" ? auditedText(role, ROLE_MAX_LENGTH) : "(invalid role)"));
  if (roles.length > ROLES_MAX_COUNT) kept.push(`…(${roles.length} roles)`);
  return kept;
}
