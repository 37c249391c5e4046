import type { Migration } from "./migration";

/**
 * The audit entry's `refersTo`: the event id of an earlier entry it is about (a refusal names the
 * `allowed` entry, the intent, that it refuses; ADR 0013 addendum). Text, not a foreign key: the
 * intent may commit after its refusal, or never.
 */
export const auditRefersTo: Migration = {
  version: 4,
  name: "audit entries refer to an earlier entry",
  statements: (schema) => [`ALTER TABLE ${schema}.audit_log ADD COLUMN refers_to text`],
};
