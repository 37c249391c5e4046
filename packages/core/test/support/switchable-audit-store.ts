import { KilnError } from "../../src/domain/errors";
import type { MemoryStore } from "../../src/memory/memory-store";
import type { AuditEntry } from "../../src/ports/audit-log";

/**
 * Wraps `store.audit.record`: while the returned switch is `on`, every call fails retryably (`KILN_STORE_ERROR`,
 * "the audit store is down"); otherwise the entry is recorded and then pushed to `stored`.
 */
export function switchableAuditStore(store: MemoryStore, stored: AuditEntry[]): { on: boolean } {
  const record = store.audit.record.bind(store.audit);
  const down = { on: false };
  store.audit.record = async (entry: AuditEntry) => {
    if (down.on) throw new KilnError("KILN_STORE_ERROR", "the audit store is down", { retryable: true });
    await record(entry);
    stored.push(entry);
  };
  return down;
}
