import type { z } from "zod";
import { KilnValidationError, type ValidationIssue } from "./errors";

/** Formats a zod issue path as `steps[3].pulse.tag`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/**
 * Converts a zod error into Kiln validation issues, one per problem. Takes a zod 4 `ZodError`
 * (`zod` `^4.1.0` is a peer dependency of `@kiln/core`; zod 3 errors do not type-check).
 */
export function issuesFromZod(error: z.ZodError, prefix: readonly PropertyKey[] = []): ValidationIssue[] {
  return error.issues.map((issue) => ({
    path: formatPath([...prefix, ...issue.path]),
    message: issue.message,
  }));
}

/**
 * Parses `input` with `schema` and returns the typed result, or throws {@link KilnValidationError}
 * naming every bad field. `subject` says what was being validated ("tag definitions", "options").
 * `schema` is a zod 4 schema: `zod` `^4.1.0` is a peer dependency of `@kiln/core`, so the host's
 * zod is the one Kiln uses (a zod 3 schema does not type-check).
 */
export function parseOrThrow<TSchema extends z.ZodType>(
  schema: TSchema,
  input: unknown,
  subject: string,
): z.output<TSchema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new KilnValidationError(subject, issuesFromZod(result.error));
}
