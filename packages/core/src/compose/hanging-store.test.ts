import { expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { Principal } from "../security/authorization";
import { simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", scanGroup: "fast" },
  "seq.counter": { dataType: "uint32", scanGroup: "fast" },
  "valve.ald1": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});
const admin: Principal = { id: "root", roles: ["admin"] };
const operator: Principal = { id: "olga", roles: ["operator"] };
const TIMEOUT_MS = 500;
const hangingPortPolicy = { timeoutMs: TIMEOUT_MS, breaker: { failureThreshold: 2, recoveryTimeMs: 60_000 } };

/** Tracks when a command settles and how: `"ok"` or the error's code. */
function track(command: Promise<unknown>): { outcome: string | undefined } {
  const state: { outcome: string | undefined } = { outcome: undefined };
  command.then(
    () => (state.outcome = "ok"),
    (error: unknown) => (state.outcome = KilnError.is(error) ? error.code : String(error)),
  );
  return state;
}

test("a store whose audit, alarm-history and event writes hang: commands settle within the timeout, health() shows the timeouts and open breakers, nothing else blocks", async () => {
  const { clock, plc, store, system } = simulatedSystem({
    tags,
    sources: { "chamber.pressure": { kind: "constant", value: 5 }, "seq.counter": { kind: "counter" } },
    scanGroups: { fast: { periodMs: 100 } },
    logging: { maxBatchSize: 50, maxLatencyMs: 200 },
    alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 3, priority: 2, message: "Pressure high" }],
    storePolicies: { audit: hangingPortPolicy, alarms: hangingPortPolicy, events: hangingPortPolicy },
  });
  store.faults.hang("audit", "alarms", "events");
  await system.start();
  await clock.advance(300); // the HI alarm raises on the first scan; its history write hangs

  // Fail closed: a command's entry must be stored before it runs. The first command waits one
  // audit timeout for that, is refused, not executed, and its refusal waits one more (the second
  // timeout opens the audit breaker); from then on commands are refused at once.
  // (A manual `start` is refused before its entry: only a process enters a process state, ADR 0042.)
  const maintenance = track(system.sendMachineCommand(admin, "enterMaintenance"));
  await clock.advance(TIMEOUT_MS - 1);
  expect(maintenance.outcome).toBeUndefined();
  await clock.advance(TIMEOUT_MS + 1);
  expect(maintenance.outcome).toBe("KILN_AUDIT_UNAVAILABLE");
  expect(system.machineState).toBe("idle");
  const acknowledge = track(system.acknowledgeAlarm(operator, "chamber.pressure:HI"));
  await clock.advance(0);
  expect(acknowledge.outcome).toBe("KILN_AUDIT_UNAVAILABLE");
  const write = track(system.writeTag(admin, "valve.ald1", true));
  await clock.advance(0);
  expect(write.outcome).toBe("KILN_AUDIT_UNAVAILABLE");
  expect(plc.writes.filter((entry) => entry.tag === "valve.ald1")).toEqual([]);

  // A state change made through the raw state machine is appended to the (hung) event store.
  const raw = track(system.unchecked.machine.send("start"));
  await clock.advance(TIMEOUT_MS);
  expect(raw.outcome).toBeDefined();

  const scansBefore = system.health().acquisition.groups[0]!.cycles;
  const storedBefore = store.sampleCount;
  await clock.advance(2_000);
  const health = system.health();
  expect(health.ports.audit.state.state).toBe("open");
  expect(health.ports.audit.failures).toBeGreaterThanOrEqual(2);
  expect(health.ports.alarms.failures).toBeGreaterThanOrEqual(1);
  expect(health.ports.events.failures).toBeGreaterThanOrEqual(1);
  expect(health.alarms.historyFailures).toBeGreaterThanOrEqual(1);
  expect(health.problems).toContain("store:audit breaker open");
  expect(health.status).toBe("degraded");
  // Nothing else blocks: the device and the samples port are healthy, scans and sample writes go on.
  expect(health.ports.driver.state.state).toBe("closed");
  expect(health.ports.samples.state.state).toBe("closed");
  expect(health.acquisition.link).toBe("online");
  expect(health.acquisition.groups[0]!.cycles).toBeGreaterThanOrEqual(scansBefore + 20);
  expect(store.sampleCount).toBeGreaterThan(storedBefore);

  // stop() drains in bounded time: every hung write times out or is refused by its open breaker.
  let stopped = false;
  const stopping = system.stop().then(() => (stopped = true));
  for (let step = 0; step < 20 && !stopped; step++) await clock.advance(TIMEOUT_MS);
  await stopping;
  expect(stopped).toBe(true);
  expect(system.state).toBe("stopped");
});
