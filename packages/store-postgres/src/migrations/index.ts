import { initialSchema } from "./0001-initial-schema";
import { auditEventIds } from "./0002-audit-event-ids";
import type { Migration } from "./migration";

export type { Migration } from "./migration";

/** Every migration, in version order. Append new ones; never edit or reorder applied ones. */
export const MIGRATIONS: readonly Migration[] = [initialSchema, auditEventIds];
