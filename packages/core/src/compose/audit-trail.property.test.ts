import { expect, test } from "vitest";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { auditTrailPropertySuite } from "../testing/audit-trail-property";

auditTrailPropertySuite({
  test,
  expect,
  name: "MemoryStore",
  createStore: () => new MemoryStore({ clock: new SimulatedClock({ start: 0 }) }),
  runs: 60,
  timeoutMs: 120_000,
});
