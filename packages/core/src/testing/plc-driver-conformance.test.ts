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

const plcOptions = (subscribe: boolean) => ({
  tags,
  subscribe,
  sources: { "chamber.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 1_000 } } as const,
});

for (const subscribe of [true, false]) {
  plcDriverConformance({
    test,
    expect,
    describe,
    name: `SimulatedPlc (subscribe: ${subscribe})`,
    capabilities: { subscribe, browse: true },
    features: { missing: true, unreachable: true },
    factory: async () => {
      const driver = new SimulatedPlc(plcOptions(subscribe));
      return {
        driver,
        readable: [tags.get("chamber.pressure"), tags.get("heater.temperature"), tags.get("valve.ald1")],
        writable: [
          { tag: tags.get("valve.ald1"), value: true },
          { tag: tags.get("heater.setpoint"), value: 250.5 },
          { tag: tags.get("recipe.name"), value: "ALD-Al2O3" },
        ],
        readOnly: tags.get("chamber.pressure"),
        missing: { ...tags.get("heater.temperature"), name: "not.on.this.plc" },
        unreachable: () => {
          const unreachable = new SimulatedPlc(plcOptions(subscribe));
          unreachable.faults.unreachable = true;
          return unreachable;
        },
        rejectedWrite: { tag: { ...tags.get("heater.setpoint"), name: "not.on.this.plc" }, value: 1 },
        dropConnection: () => driver.dropConnection(),
        stall: () => {
          driver.faults.hang = true;
        },
      };
    },
  });
}

describe("the fault cases run for every driver unless the fixture says why it cannot stage them", () => {
  const register = (unsupported?: Parameters<typeof plcDriverConformance>[0]["unsupported"]) => {
    const names: string[] = [];
    plcDriverConformance({
      test: (name) => void names.push(name),
      expect,
      capabilities: { subscribe: false, browse: false },
      ...(unsupported ? { unsupported } : {}),
      factory: () => Promise.reject(new Error("not run")),
    });
    return names;
  };

  test("without a declaration, the stall, dropped-connection and refused-write cases are registered", () => {
    const names = register();
    expect(names.some((name) => name.includes("does not answer"))).toBe(true);
    expect(names.some((name) => name.includes("dropped by the device"))).toBe(true);
    expect(names.some((name) => name.includes("the device refuses"))).toBe(true);
  });

  test("unsupported.stall leaves the stall cases out and prints the reason; an empty reason is refused", () => {
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (message: unknown) => void warnings.push(message);
    try {
      const names = register({ stall: "the simulator cannot stop answering" });
      expect(names.some((name) => name.includes("does not answer"))).toBe(false);
      expect(names.some((name) => name.includes("dropped by the device"))).toBe(true);
      expect(warnings).toEqual([
        expect.stringContaining("stall cases are not run: the simulator cannot stop answering"),
      ]);
      expect(() => register({ stall: " " })).toThrow(TypeError);
    } finally {
      console.warn = warn;
    }
  });
});
