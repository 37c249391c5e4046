import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { SimulatedPlc } from "../memory/simulated-plc";
import { plcDriverConformance } from "./plc-driver-conformance";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar" },
  "heater.temperature": { dataType: "float32" },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 500 } },
  "recipe.name": { dataType: "string", access: "readwrite" },
});

for (const subscribe of [true, false]) {
  plcDriverConformance({
    test,
    expect,
    describe,
    name: `SimulatedPlc (subscribe: ${subscribe})`,
    factory: async () => ({
      driver: new SimulatedPlc({
        tags,
        subscribe,
        sources: { "chamber.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 1_000 } },
      }),
      readable: [tags.get("chamber.pressure"), tags.get("heater.temperature"), tags.get("valve.ald1")],
      writable: [
        { tag: tags.get("valve.ald1"), value: true },
        { tag: tags.get("heater.setpoint"), value: 250.5 },
        { tag: tags.get("recipe.name"), value: "ALD-Al2O3" },
      ],
      readOnly: tags.get("chamber.pressure"),
      missing: { ...tags.get("heater.temperature"), name: "not.on.this.plc" },
    }),
  });
}
