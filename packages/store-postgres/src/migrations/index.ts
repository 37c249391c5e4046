import { initialSchema } from "./0001-initial-schema";
import { unsigned64BitValues } from "./0002-unsigned-64-bit-values";
import { auditEventIds } from "./0003-audit-event-ids";
import { auditRefersTo } from "./0004-audit-refers-to";
import { arrayValues } from "./0005-array-values";
import type { Migration } from "./migration";

export type { Migration } from "./migration";

/** Every migration, in version order. Append new ones; never edit or reorder applied ones. */
export const MIGRATIONS: readonly Migration[] = [
  initialSchema,
  unsigned64BitValues,
  auditEventIds,
  auditRefersTo,
  arrayValues,
];
