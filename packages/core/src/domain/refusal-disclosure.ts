import { KilnError } from "./errors";

/**
 * What a refusal may tell its caller (issue 15, adversarial review 15e). Three kinds of fact are
 * withheld from a caller without the right to act on them:
 *
 * - `machine`: the machine's state and the commands it accepts there;
 * - `process`: the id (and status) of the process on the machine;
 * - `tag(name)`: the name of a tag the refusal is about but the caller did not name (a running
 *   process's writes).
 *
 * Who holds which is decided once, by `disclosureFor` (`security/refusal-disclosure-rule.ts`);
 * a refusal is cut to it once, where the audited command runner hands it to its caller
 * ({@link disclosedRefusal}). The audit entry keeps the full reason.
 */
export interface Disclosure {
  readonly machine: boolean;
  readonly process: boolean;
  tag(name: string): boolean;
}

/**
 * The words and details of a refusal as a caller with `disclosure` may see them; undefined when
 * it may see the refusal as it is.
 */
type LessSaid = (
  disclosure: Disclosure,
) => { readonly message: string; readonly details: Record<string, unknown> } | undefined;

const lessSaidOf = new WeakMap<KilnError, LessSaid>();

/**
 * Marks `error` as a refusal that names what some callers may not know, with how to say it to
 * them (`lessSaid`, given what the caller may know). Returns `error`.
 */
export function sayingLess(error: KilnError, lessSaid: LessSaid): KilnError {
  lessSaidOf.set(error, lessSaid);
  return error;
}

/** Marks `error` as saying nothing any caller of its command may not know (the caller's own start's id). Returns `error`. */
export function withholdingNothing(error: KilnError): KilnError {
  return sayingLess(error, () => undefined);
}

/** Detail keys that hold machine or process facts, checked on refusals not marked by {@link sayingLess}. */
const MACHINE_KEYS = ["machineState", "allowed"] as const;
const PROCESS_KEYS = ["processId", "aborts"] as const;

/**
 * `error` as its caller may see it (see {@link Disclosure}). A refusal marked by
 * {@link sayingLess} is rebuilt with its own shorter words; any other `KilnError` whose details
 * hold machine or process facts the caller may not know (`machineState`, `allowed`; `processId`,
 * `aborts`: keys with one meaning everywhere) is rebuilt without them, its message then only its
 * code and command (the facts may be in its words). Same code and `retryable`; no `cause` (it may
 * name them too). `KILN_FORBIDDEN` is left as it is: `Authorizer.forbidden` names a machine state
 * only to a principal granted the refused permission in another state (the state is its reason).
 * Anything else is returned as it is.
 */
export function disclosedRefusal(error: unknown, disclosure: Disclosure): unknown {
  if (!KilnError.is(error) || error.code === "KILN_FORBIDDEN") return error;
  const lessSaid = lessSaidOf.get(error);
  if (lessSaid !== undefined) {
    const shown = lessSaid(disclosure);
    return shown === undefined ? error : rebuilt(error, shown.message, shown.details);
  }
  const withheld = [...(disclosure.machine ? [] : MACHINE_KEYS), ...(disclosure.process ? [] : PROCESS_KEYS)].filter(
    (key) => Object.hasOwn(error.details, key),
  );
  if (withheld.length === 0) return error;
  const details = withoutKeys(error.details, withheld);
  const command = typeof error.details.command === "string" ? ` "${error.details.command}"` : "";
  return rebuilt(
    error,
    `Command${command} refused (${error.code}); its details are not shown to this caller.`,
    details,
  );
}

/** A copy of `details` without `keys`. */
export function withoutKeys(
  details: Readonly<Record<string, unknown>>,
  keys: readonly string[],
): Record<string, unknown> {
  return Object.fromEntries(Object.entries(details).filter(([key]) => !keys.includes(key)));
}

function rebuilt(error: KilnError, message: string, details: Record<string, unknown>): KilnError {
  return new KilnError(error.code, message, { retryable: error.retryable, details });
}
