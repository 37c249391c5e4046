import { KilnError } from "../../src/domain/errors";
import type { TagCatalog, TagValue } from "../../src/domain/tags";
import type { KilnEvents } from "../../src/events/catalogue";
import { EventBus } from "../../src/events/event-bus";
import { MemoryStore } from "../../src/memory/memory-store";
import { SimulatedClock } from "../../src/memory/simulated-clock";
import { SimulatedPlc } from "../../src/memory/simulated-plc";
import type { AuditEntry } from "../../src/ports/audit-log";
import { silentLogger } from "../../src/runtime/silent-logger";
import { AuditedCommandRunner } from "../../src/security/audited-command";
import type { AuditBacklogOptions } from "../../src/security/audited-command-options";
import { Authorizer, defaultRoleTable, type Principal } from "../../src/security/authorization";

/** What {@link refusingAudit} builds the runners from. */
export interface RefusingAuditOptions {
  readonly tags: TagCatalog;
  /** The runners' backlog (journal path, limits, `whenFull`). */
  readonly backlog: AuditBacklogOptions;
  /** The default role table's operator-writable tags. */
  readonly operatorWritableTags?: readonly string[];
}

/**
 * Audited command runners over one journal and one {@link MemoryStore} whose audit inserts are
 * refused with a retryable error while `link.up` is false (the store outage case), on a simulated
 * clock. `make()` builds a runner (one run of the system); `drain()` brings the store back and
 * returns the whole trail once a last run has flushed the journal and the reserve.
 */
export async function refusingAudit(options: RefusingAuditOptions) {
  const { tags } = options;
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const drops: KilnEvents["audit-entry-drop"][] = [];
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  const link = { up: false };
  let ids = 0;
  const roles = defaultRoleTable(
    options.operatorWritableTags ? { operatorWritableTags: [...options.operatorWritableTags] } : {},
  );
  const make = () =>
    new AuditedCommandRunner({
      authorizer: new Authorizer({ roles }),
      audit: {
        query: store.audit.query,
        record: (entry: AuditEntry) =>
          link.up
            ? store.audit.record(entry)
            : Promise.reject(new KilnError("KILN_STORE_ERROR", "refused", { retryable: true })),
      },
      clock,
      bus,
      logger: silentLogger,
      machineId: "ald-1",
      newId: () => `entry-${++ids}`,
      retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
      backlog: options.backlog,
    });
  /** A tag write by `principal` through `runner`: its result, or the code it was refused with. */
  const writeTag = (runner: AuditedCommandRunner, principal: Principal, tag: string, value: TagValue) =>
    runner
      .run({
        principal,
        permission: "tag.write",
        target: tag,
        machineState: "idle",
        newValue: value,
        execute: () => plc.write(tags.get(tag), value),
      })
      .then(
        () => "resolved",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
  const drain = async (): Promise<readonly AuditEntry[]> => {
    link.up = true;
    const runner = make();
    await runner.open();
    for (let step = 0; step < 30 && (runner.status().backlog > 0 || runner.status().overflow > 0); step++) {
      await runner.flush();
      await clock.advance(1_000);
    }
    await runner.close();
    return store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  };
  return { clock, plc, store, bus, drops, link, make, writeTag, drain };
}
