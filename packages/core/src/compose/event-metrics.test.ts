import { describe, expect, test } from "vitest";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryMetrics } from "../memory/memory-metrics";
import { recordEventMetrics } from "./event-metrics";

describe("recordEventMetrics", () => {
  test("breaker states, the PLC link, alarms, trips, audit refusals and store evictions become metrics", async () => {
    const bus = new EventBus<KilnEvents>({ now: () => 0 });
    const metrics = new MemoryMetrics();
    const { deviceConnected, dispose } = recordEventMetrics(bus, metrics);
    deviceConnected("plc-1", true);
    expect(metrics.value("kiln_device_connected", { driver: "plc-1" })).toBe(1);
    await bus.publish("breaker-state-change", { at: 1, breaker: "driver", from: "closed", to: "open" });
    await bus.publish("breaker-state-change", { at: 2, breaker: "store:audit", from: "open", to: "half-open" });
    await bus.publish("plc-connection-lose", { at: 3, driver: "plc-1", reason: "timeout" });
    await bus.publish("alarm-raise", {
      at: 4,
      alarmId: "p:HI",
      tag: "p",
      kind: "HI",
      priority: 2,
      message: "high",
      value: 3,
      state: "unacknowledged",
    });
    await bus.publish("interlock-trip", { at: 5, alarmId: "p:HIHI", tag: "p", value: 4 });
    await bus.publish("audit-entry-drop", { at: 6, count: 3, reason: "backlog full" });
    await bus.publish("store-evict", { at: 6, port: "samples", count: 1_000 });
    await bus.publish("store-evict", { at: 6, port: "samples", count: 24 });
    await bus.publish("store-evict", { at: 6, port: "audit", count: 2 });
    expect(metrics.value("kiln_breaker_state", { breaker: "driver" })).toBe(2);
    expect(metrics.value("kiln_breaker_state", { breaker: "store:audit" })).toBe(1);
    expect(metrics.value("kiln_device_connected", { driver: "plc-1" })).toBe(0);
    expect(metrics.value("kiln_alarms_raised_total", { priority: "2" })).toBe(1);
    expect(metrics.value("kiln_interlock_trips_total")).toBe(1);
    expect(metrics.value("kiln_audit_entries_dropped_total")).toBe(3);
    expect(metrics.value("kiln_store_evicted_total", { port: "samples" })).toBe(1_024);
    expect(metrics.value("kiln_store_evicted_total", { port: "audit" })).toBe(2);
    await bus.publish("plc-connection-restore", { at: 7, driver: "plc-1", downtimeMs: 4 });
    expect(metrics.value("kiln_device_connected", { driver: "plc-1" })).toBe(1);
    dispose();
    await bus.publish("plc-connection-lose", { at: 8, driver: "plc-1", reason: "timeout" });
    expect(metrics.value("kiln_device_connected", { driver: "plc-1" })).toBe(1);
  });
});
