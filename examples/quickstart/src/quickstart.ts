import { SimulatedPlc, createControlSystem, defineTags, type Clock, type ControlSystem } from "@kiln/core";

/** The quickstart's tags: a pressure following a sine wave, a heater, a valve. */
export const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 }, scanGroup: "fast" },
  "heater.temperature": { dataType: "float64", unit: "°C", scanGroup: "slow" },
  "valve.ald1": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

/** Builds the quickstart system: a simulated PLC, the in-memory store, one HI alarm. */
export function createQuickstart(options: { clock?: Clock } = {}): ControlSystem {
  const plc = new SimulatedPlc({
    tags,
    ...(options.clock ? { clock: options.clock } : {}),
    sources: {
      "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 2_000 },
      "heater.temperature": { kind: "constant", value: 250 },
    },
  });
  return createControlSystem({
    machineId: "quickstart",
    tags,
    driver: plc,
    ...(options.clock ? { clock: options.clock } : {}),
    scanGroups: { fast: { periodMs: 100 }, slow: { periodMs: 1_000 } },
    alarms: [
      {
        tag: "chamber.pressure",
        kind: "HI",
        setpoint: 2.8,
        deadband: 0.1,
        priority: 2,
        message: "Chamber pressure high",
      },
    ],
  });
}
