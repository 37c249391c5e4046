import { KilnValidationError, type ValidationIssue } from "@kiln/core";

/** Collects validation problems and throws them together. */
export class IssueCollector {
  readonly #issues: ValidationIssue[] = [];

  /** Records a problem at `path`. */
  add(path: string, message: string): void {
    this.#issues.push({ path, message });
  }

  /** Records a problem unless `value` is a non-empty string. */
  string(path: string, value: unknown): void {
    if (typeof value !== "string" || value === "") this.add(path, "must be a non-empty string");
  }

  /** Records a problem unless `value` is a string or undefined. */
  optionalString(path: string, value: unknown): void {
    if (value !== undefined && typeof value !== "string") this.add(path, "must be a string when present");
  }

  /** Records a problem unless `value` is a finite number. */
  finite(path: string, value: unknown): void {
    if (typeof value !== "number" || !Number.isFinite(value)) this.add(path, "must be a finite number");
  }

  /** Records a problem unless `value` is a finite number or undefined. */
  optionalFinite(path: string, value: unknown): void {
    if (value !== undefined) this.finite(path, value);
  }

  /** Records a problem unless `value` is an integer of at least `minimum` that fits int4. */
  integer(path: string, value: unknown, minimum: number): void {
    if (!Number.isInteger(value) || (value as number) < minimum || (value as number) > 2_147_483_647) {
      this.add(path, `must be an integer from ${minimum} to 2147483647`);
    }
  }

  /** Records a problem unless `value` is a plain object (not an array). */
  record(path: string, value: unknown): void {
    if (typeof value !== "object" || value === null || Array.isArray(value)) this.add(path, "must be an object");
  }

  /** Throws a {@link KilnValidationError} about `subject` when any problem was recorded. */
  throwIfAny(subject: string): void {
    if (this.#issues.length > 0) throw new KilnValidationError(subject, this.#issues);
  }
}

/** Checks a `[from, to)` range of ms since epoch. @throws KilnValidationError */
export function checkTimeRange(range: { readonly from: number; readonly to: number }, subject: string): void {
  const issues = new IssueCollector();
  if (typeof range !== "object" || range === null) issues.add("", "must be an object with from and to");
  else {
    issues.finite("from", range.from);
    issues.finite("to", range.to);
  }
  issues.throwIfAny(subject);
}

/** A validation error about one field. */
export function invalid(subject: string, path: string, message: string): KilnValidationError {
  return new KilnValidationError(subject, [{ path, message }]);
}
