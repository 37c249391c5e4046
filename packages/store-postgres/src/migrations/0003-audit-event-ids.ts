import type { Migration } from "./migration";

/**
 * The audit trail's IEC 62443-3-3 CR 2.8 fields: the event id (unique, so an entry is recorded
 * once per id: `INSERT ... ON CONFLICT (event_id) DO NOTHING`), the machine, the source
 * (session or client) and the action category. Rows from before keep NULL here and are read
 * back with the id `legacy-<row id>`.
 */
export const auditEventIds: Migration = {
  version: 3,
  name: "audit event ids, machine, source and category",
  statements: (schema) => [
    `ALTER TABLE ${schema}.audit_log
       ADD COLUMN event_id text,
       ADD COLUMN machine_id text,
       ADD COLUMN source text,
       ADD COLUMN category text`,
    `CREATE UNIQUE INDEX audit_log_event_id ON ${schema}.audit_log (event_id)`,
  ],
};
