import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { Principal } from "../security/authorization";
import { simulatedSystem } from "../../test/support/simulated-system";

// A manual write is authorized against the machine state (ADR 0010). The check and the effect
// must see the same state: a write authorized in `idle` must not reach the driver after a
// process (or maintenance) began while its audit entry was being made durable.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
});
const operator: Principal = { id: "olga", roles: ["operator"] };
const admin: Principal = { id: "ada", roles: ["admin"] };

/** A MemoryStore whose audit log holds every record until `release()`: a slow audit database. */
class GatedStore extends MemoryStore {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  constructor(options: ConstructorParameters<typeof MemoryStore>[0]) {
    super(options);
    const inner = this.audit;
    (this as { audit: MemoryStore["audit"] }).audit = {
      record: async (entry) => {
        await this.#gate;
        return inner.record(entry);
      },
      query: (range) => inner.query(range),
    };
  }
}

async function build() {
  const parts = simulatedSystem({
    tags,
    machine: { safeState: [] },
    authorization: { operatorWritableTags: ["heater.*"] },
    store: (clock) => new GatedStore({ clock }),
  });
  const writes: unknown[] = [];
  const write = parts.plc.write.bind(parts.plc);
  parts.plc.write = (tag, value, signal) => {
    writes.push(value);
    return write(tag, value, signal);
  };
  await parts.system.start();
  return { ...parts, writes };
}

const run = { name: "run", version: 1, steps: [{ set: { tag: "heater.setpoint", value: 100 } }] };

test("an operator write called in idle while a recipe start is being audited is refused once the process runs", async () => {
  const { store, system, writes } = await build();
  store.hold();
  const started = system.startRecipe(admin, run);
  await Promise.resolve();
  expect(system.machineState).toBe("idle");
  const written = system.writeTag(operator, "heater.setpoint", 1).then(
    () => "written",
    (error: { code?: string }) => error.code,
  );
  store.release();
  const process = await started;
  expect(await written).toBe("KILN_FORBIDDEN");
  await process.finished;
  expect(writes).toEqual([100]);
  await system.stop();
});

test("a recipe start called while an operator write (authorized in idle) is being audited starts after the write", async () => {
  const { store, system, writes } = await build();
  store.hold();
  const written = system.writeTag(operator, "heater.setpoint", 1);
  await Promise.resolve();
  const started = system.startRecipe(admin, run);
  store.release();
  await written;
  await (
    await started
  ).finished;
  expect(writes).toEqual([1, 100]);
  await system.stop();
});

test("an operator write authorized in idle is refused when an admin puts the machine in maintenance meanwhile", async () => {
  const { store, system, writes } = await build();
  store.hold();
  // An earlier allowed command holds the audit writer (its own entry, being stored: no journal),
  // so the write's commit waits its turn. (A denied one no longer holds it: review 15j.)
  const earlier = system.writeTag(operator, "heater.setpoint", 0).then(
    () => "written",
    (error: { code?: string }) => error.code,
  );
  const written = system.writeTag(operator, "heater.setpoint", 1).then(
    () => "written",
    (error: { code?: string }) => error.code,
  );
  await Promise.resolve();
  // Not a state command: an unguarded state change (as an interlock or the process itself makes).
  await system.unchecked.machine.send("enterMaintenance");
  store.release();
  // Committed before the change (checked, then its entry offered), but its grant is judged again
  // right before the driver call, in maintenance: refused too (review 15f, H1); the later one is
  // re-checked at its commit. Nothing is written in maintenance.
  expect(await earlier).toBe("KILN_FORBIDDEN");
  expect(await written).toBe("KILN_FORBIDDEN");
  expect(writes).toEqual([]);
  await system.stop();
});
