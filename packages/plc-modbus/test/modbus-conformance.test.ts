import { describe, expect, test } from "vitest";
import { defineTags } from "@kiln/core";
import { plcDriverConformance } from "@kiln/core/testing";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// The PlcDriver contract every driver meets, against the simulator on loopback.
const tags = defineTags({
  "chamber.pressure": { dataType: "float32", address: "HR100:float32:CDAB" },
  "door.closed": { dataType: "bool", address: "DI4" },
  "batch.counter": { dataType: "uint32", address: "IR20:uint32" },
  "heater.setpoint": { dataType: "float32", access: "readwrite", address: "HR104:float32" },
  "pump.running": { dataType: "bool", access: "readwrite", address: "C0" },
  "mode.auto": { dataType: "bool", access: "readwrite", address: "HR110.3" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "HR200:string:8" },
  // Not served by the simulator: a strict device answers "illegal data address".
  "not.there": { dataType: "uint16", address: "HR5000" },
  "not.there.either": { dataType: "uint16", access: "readwrite", address: "HR5001" },
});

plcDriverConformance({
  test,
  expect,
  describe,
  name: "ModbusDriver on ModbusSimulator",
  capabilities: { subscribe: false, browse: false },
  features: { missing: true, unreachable: true },
  factory: async () => {
    const simulator = new ModbusSimulator({
      tags: tags.list().filter((tag) => !tag.name.startsWith("not.there")),
      strict: true,
      initialValues: { "chamber.pressure": 2.5, "batch.counter": 7 },
    });
    const { host, port } = await simulator.start();
    return {
      // `separateShapes: false`: the case "a write sent to a device that does not answer says it may have landed"
      // needs its second, identical write on the wire within 100 ms; by default a read of another size (the id
      // proof, fix12e) goes first, which the stalled device does not answer either, so the write is, truthfully,
      // reported unsent. The default's rules are tested in modbus-id-proof and modbus-shape-separation.
      driver: new ModbusDriver({ transport: { kind: "tcp", host, port, separateShapes: false } }),
      readable: [tags.get("chamber.pressure"), tags.get("door.closed"), tags.get("batch.counter")],
      writable: [
        { tag: tags.get("heater.setpoint"), value: 180.5 },
        { tag: tags.get("pump.running"), value: true },
        { tag: tags.get("mode.auto"), value: true },
        { tag: tags.get("recipe.name"), value: "ALD-7" },
      ],
      readOnly: tags.get("door.closed"),
      missing: tags.get("not.there"),
      // Nothing listens on port 1: the connection is refused.
      unreachable: () => new ModbusDriver({ transport: { kind: "tcp", host, port: 1 }, connectTimeoutMs: 1_000 }),
      // A strict device answers exception 2 (illegal data address).
      rejectedWrite: { tag: tags.get("not.there.either"), value: 1 },
      dropConnection: () => simulator.dropConnections(),
      stall: () => void simulator.injectTimeout(),
      cleanup: () => simulator.stop(),
    };
  },
});
