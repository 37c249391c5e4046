import type { Disposer } from "../domain/disposer";
import type { BreakerState, KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Metrics } from "@kiln/core/driver-kit";

const BREAKER_STATE: Readonly<Record<BreakerState, number>> = { closed: 0, "half-open": 1, open: 2 };

/**
 * Turns the bus's state events into metrics, so a scrape shows what `health()` and the events
 * show: `kiln_breaker_state{breaker}` (0 closed, 1 half-open, 2 open), `kiln_device_connected{driver}`
 * (1 while the PLC link is up), `kiln_alarms_raised_total{priority}`, `kiln_interlock_trips_total`,
 * `kiln_commands_refused_total` (audit could not be made durable: fail closed),
 * `kiln_audit_entries_dropped_total` and `kiln_store_evicted_total{port}` (entries the embedded
 * `MemoryStore` evicted under its retention, by design: ADR 0045). One tap, set up once per system by composition.
 *
 * With `evictingStore` (the store is a `MemoryStore`), `kiln_store_evicted_total` is published at 0
 * for each port from the start, so a scrape (and an alert on its rate) sees the series before the
 * first eviction (#16 fix16b).
 *
 * @returns a function that sets the device gauge (composition calls it when a start brings the
 *   link up or leaves it down, which publishes no event), and the tap's disposer.
 */
export function recordEventMetrics(
  bus: EventBus<KilnEvents>,
  metrics: Metrics,
  options: { readonly evictingStore?: boolean } = {},
): { readonly deviceConnected: (driver: string, connected: boolean) => void; readonly dispose: Disposer } {
  const breaker = metrics.gauge("kiln_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open");
  const connected = metrics.gauge("kiln_device_connected", "1 while the link to the PLC is up, 0 while it is lost");
  const alarms = metrics.counter("kiln_alarms_raised_total", "Alarms raised (ISA-18.2), by priority");
  const trips = metrics.counter("kiln_interlock_trips_total", "Interlock trips");
  const refused = metrics.counter(
    "kiln_commands_refused_total",
    "Commands refused because their audit entry could not be made durable (IEC 62443-3-3 CR 2.10)",
  );
  const auditDropped = metrics.counter("kiln_audit_entries_dropped_total", "Audit entries dropped (backlog full)");
  const evicted = metrics.counter(
    "kiln_store_evicted_total",
    "Entries the in-memory store evicted under its retention (samples, alarms, audit), by port",
  );
  if (options.evictingStore) for (const port of ["samples", "alarms", "audit"]) evicted.inc(0, { port });
  const deviceConnected = (driver: string, up: boolean): void => connected.set(up ? 1 : 0, { driver });
  const dispose = bus.tap((type, event) => {
    switch (type) {
      case "breaker-state-change": {
        const change = event as KilnEvents["breaker-state-change"];
        breaker.set(BREAKER_STATE[change.to], { breaker: change.breaker });
        return;
      }
      case "plc-connection-lose":
      case "plc-connection-fail":
        deviceConnected((event as KilnEvents["plc-connection-lose"]).driver, false);
        return;
      case "plc-connection-restore":
        deviceConnected((event as KilnEvents["plc-connection-restore"]).driver, true);
        return;
      case "alarm-raise":
        alarms.inc(1, { priority: String((event as KilnEvents["alarm-raise"]).priority) });
        return;
      case "interlock-trip":
        trips.inc();
        return;
      case "command-refuse":
        refused.inc();
        return;
      case "audit-entry-drop":
        auditDropped.inc((event as KilnEvents["audit-entry-drop"]).count);
        return;
      case "audit-refusal-drop":
        // One entry dropped: counted with the others (health().audit.refusalsDropped tells them apart).
        auditDropped.inc();
        return;
      case "store-evict": {
        const eviction = event as KilnEvents["store-evict"];
        evicted.inc(eviction.count, { port: eviction.port });
        return;
      }
      default:
        return;
    }
  });
  return { deviceConnected, dispose };
}
