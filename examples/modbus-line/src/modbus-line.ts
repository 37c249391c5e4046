import {
  createControlSystem,
  defineTags,
  type AlarmDefinitionInput,
  type Clock,
  type ControlSystem,
  type SignalSpec,
  type TagValue,
} from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "@kiln/plc-modbus";

/**
 * The line's tags: a conveyor, a filler and an oven on one Modbus TCP PLC. The float registers use all
 * four byte orders on purpose, as PLCs from different vendors (or different blocks of one PLC) do.
 */
export const lineTags = defineTags({
  "conveyor.run": { dataType: "bool", access: "readwrite", address: "C0", scanGroup: "fast" },
  "filler.valve": { dataType: "bool", access: "readwrite", address: "C1", scanGroup: "fast" },
  "door.closed": { dataType: "bool", address: "DI0", scanGroup: "slow" },
  "oven.temperature": { dataType: "float32", unit: "°C", address: "HR0:float32:ABCD", scanGroup: "fast" },
  "oven.setpoint": {
    dataType: "float32",
    unit: "°C",
    access: "readwrite",
    range: { min: 0, max: 300 },
    address: "HR2:float32:CDAB",
    scanGroup: "slow",
  },
  "filler.weight": { dataType: "float32", unit: "g", address: "IR10:float32:BADC", scanGroup: "fast" },
  "line.speed": {
    dataType: "float32",
    unit: "m/s",
    access: "readwrite",
    range: { min: 0, max: 3 },
    address: "HR20:float32:DCBA",
    scanGroup: "fast",
  },
  "pieces.count": { dataType: "uint32", address: "IR12:uint32:CDAB", scanGroup: "fast" },
  "oven.exhaust.temperature": {
    dataType: "float32",
    unit: "°C",
    address: { area: "input-register", address: 0, type: "int16", scale: 0.1 },
    scanGroup: "slow",
  },
});

/** How the simulated PLC moves its inputs (the core's signal generators). */
export const lineSignals: Readonly<Record<string, SignalSpec>> = {
  // Crosses the 220 °C HI limit once every 2 s period.
  "oven.temperature": { kind: "sine", offset: 210, amplitude: 15, periodMs: 2_000 },
  "filler.weight": { kind: "random-walk", start: 500, step: 1.5, min: 480, max: 520, seed: 7 },
  // Advances by one on every read: one piece per fast scan.
  "pieces.count": { kind: "counter", start: 70_000, step: 1 },
  "oven.exhaust.temperature": { kind: "ramp", from: 60, to: 90, periodMs: 10_000 },
};

/** What the simulated PLC holds at power-up for the tags without a signal. */
export const lineInitialValues: Readonly<Record<string, TagValue>> = {
  "conveyor.run": false,
  "filler.valve": false,
  "door.closed": true,
  "oven.setpoint": 180,
  "line.speed": 1.25,
};

/** The line's alarms: an ISA-18.2 HI alarm on the oven temperature. */
export const lineAlarms: readonly AlarmDefinitionInput[] = [
  {
    tag: "oven.temperature",
    kind: "HI",
    setpoint: 220,
    deadband: 2,
    priority: 2,
    message: "Oven temperature high",
  },
];

/** A running line: the simulated PLC and the control system reading it. */
export interface ModbusLine {
  /** The control system (not started: attach listeners, then call `system.start()`). */
  readonly system: ControlSystem;
  /** The Modbus TCP simulator serving the line's tags, already listening. */
  readonly simulator: ModbusSimulator;
  /** Where the simulator listens. */
  readonly endpoint: { readonly host: string; readonly port: number };
  /** Stops the control system (draining the logging pipeline, closing the driver), then the simulator. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a `ModbusSimulator` serving {@link lineTags} on 127.0.0.1 and a free port, and composes a control
 * system on it: a `ModbusDriver`, the in-memory store, two scan groups (fast 100 ms, slow 1 s) and the HI alarm
 * of {@link lineAlarms}. The system is returned stopped, so the caller can subscribe to its events first.
 *
 * @example
 * const line = await startModbusLine();
 * await line.system.start();
 * await line.system.writeTag({ id: "erin", roles: ["engineer"] }, "conveyor.run", true);
 * line.system.read("line.speed"); // { value: 1.25, quality: { severity: "good", ... }, ... }
 * await line.stop();
 *
 * @throws KilnError `KILN_CONNECTION_FAILED` when the simulator cannot listen.
 */
export async function startModbusLine(options: { clock?: Clock } = {}): Promise<ModbusLine> {
  const clock = options.clock ? { clock: options.clock } : {};
  const simulator = new ModbusSimulator({
    tags: lineTags,
    signals: lineSignals,
    initialValues: lineInitialValues,
    ...clock,
  });
  const endpoint = await simulator.start();
  try {
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: endpoint.host, port: endpoint.port },
      name: "line-plc",
      unitId: 1,
      ...clock,
    });
    const system = createControlSystem({
      machineId: "modbus-line",
      tags: lineTags,
      driver,
      ...clock,
      scanGroups: { fast: { periodMs: 100 }, slow: { periodMs: 1_000 } },
      alarms: lineAlarms,
    });
    return {
      system,
      simulator,
      endpoint,
      async stop() {
        try {
          await system.stop();
        } finally {
          await simulator.stop();
        }
      },
    };
  } catch (error) {
    await simulator.stop();
    throw error;
  }
}
