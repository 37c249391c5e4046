import type { ControlSystem } from "../../src/compose/control-system";
import type { ControlSystemOptions } from "../../src/compose/control-system-options";
import { createControlSystem } from "../../src/compose/create-control-system";
import type { AuditEntry } from "../../src/ports/audit-log";
import { MemoryStore } from "../../src/memory/memory-store";
import { SimulatedClock } from "../../src/memory/simulated-clock";
import { SimulatedPlc, type SimulatedPlcOptions } from "../../src/memory/simulated-plc";

/** When the simulated clock of every test system starts. */
export const SIMULATED_START = Date.UTC(2026, 10, 22);

/** Options of {@link simulatedSystem}: the control system's options without driver, store and clock. */
export interface SimulatedSystemOptions extends Omit<ControlSystemOptions, "machineId" | "driver" | "store" | "clock"> {
  /** @default "ald-1" */
  readonly machineId?: string;
  /** Signal sources of the simulated PLC, by tag. */
  readonly sources?: SimulatedPlcOptions["sources"];
  /** The store, made on the system's clock. @default a `MemoryStore` */
  readonly store?: (clock: SimulatedClock) => MemoryStore;
}

/** A control system under test and the simulated parts it runs on. */
export interface SimulatedSystem<TStore extends MemoryStore = MemoryStore> {
  readonly clock: SimulatedClock;
  readonly plc: SimulatedPlc;
  readonly store: TStore;
  readonly system: ControlSystem;
}

/**
 * Test support, not exported by any entry: a control system on a `SimulatedPlc`, a
 * `MemoryStore` and a `SimulatedClock` (starting at {@link SIMULATED_START}), not started.
 */
export function simulatedSystem<TStore extends MemoryStore = MemoryStore>(
  options: SimulatedSystemOptions & { readonly store?: (clock: SimulatedClock) => TStore },
): SimulatedSystem<TStore> {
  const { sources, store: makeStore, machineId = "ald-1", ...rest } = options;
  const clock = new SimulatedClock({ start: SIMULATED_START });
  const plc = new SimulatedPlc({ tags: rest.tags, clock, ...(sources ? { sources } : {}) });
  const store = (makeStore ? makeStore(clock) : new MemoryStore({ clock })) as TStore;
  const system = createControlSystem({ ...rest, machineId, driver: plc, store, clock });
  return { clock, plc, store, system };
}

/** Stops the system, reopens its store (stop closed it) and reads back the audit trail so far. */
export async function auditTrailAfterStop({ system, store, clock }: SimulatedSystem): Promise<AuditEntry[]> {
  await system.stop();
  await store.open(system.tags.list());
  return store.audit.query({ from: 0, to: clock.now() + 1 });
}
