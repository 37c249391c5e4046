import type { Sample } from "../../src/domain/sample";
import { defineTags } from "../../src/domain/tags";
import type { RoleTable } from "../../src/security/authorization";
import { simulatedSystem } from "./simulated-system";

// Shared by the safe-state ordering tests (reviews 15u, 15t): a system with an interlocked HIHI
// on chamber.pressure, a safe state of heater.setpoint=0 and valve.h2o=false, and a driver that
// holds one chosen write until the test releases it.

/** The tags of {@link heldWriteSystem}: a pressure, two safe-state outputs and an unrelated stirrer. */
const heldWriteTags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "stirrer.speed": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 }, scanGroup: "fast" },
});

/**
 * A started system whose driver holds the write of `held` (tag and value) until `release()`, then
 * lands it, or fails it (`failHeld`) with a device error. Every write is logged in `events`, in
 * order: `sent`, `landed`, `wrote`, `refused`. `timeoutMs` sets `acquisition.timeoutMs` (the
 * driver write timeout) when given; `scanGroup` adds to the `fast` scan group's settings; `mapRead` changes what the device returns. `trip()` raises the pressure over the interlock and runs 6 scans.
 */
export async function heldWriteSystem(
  model: "kiln" | "packml",
  held: { tag: string; value: number | boolean },
  options: {
    failHeld?: boolean;
    timeoutMs?: number;
    scanGroup?: { maxSourceAgeMs?: number };
    /** A non-interlock HI alarm on chamber.pressure at this setpoint (besides the interlocked HIHI at 20). */
    hiAlarmAt?: number;
    /** The role table (`authorization.roles`); the default one when absent. */
    roles?: RoleTable;
    /** Changes each sample the device returns, from the first read on (a device's clock, a stuck source). */
    mapRead?: (sample: Sample) => Sample;
  } = {},
) {
  const pressure = { value: 1 };
  const parts = simulatedSystem({
    tags: heldWriteTags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50, ...options.scanGroup } },
    ...(options.timeoutMs === undefined ? {} : { acquisition: { timeoutMs: options.timeoutMs } }),
    ...(options.roles === undefined ? {} : { authorization: { roles: options.roles } }),
    machine: {
      model,
      safeState: [
        { tag: "heater.setpoint", value: 0 },
        { tag: "valve.h2o", value: false },
      ],
    },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
      ...(options.hiAlarmAt === undefined
        ? []
        : [
            {
              tag: "chamber.pressure",
              kind: "HI" as const,
              setpoint: options.hiAlarmAt,
              priority: 3 as const,
              message: "Pressure high",
            },
          ]),
    ],
  });
  const { plc, clock } = parts;
  const events: string[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const write = plc.write.bind(plc);
  plc.write = async (tag, value, signal) => {
    if (tag.name === held.tag && value === held.value) {
      events.push(`sent ${tag.name}=${String(value)}`);
      await released;
      if (options.failHeld === true) {
        events.push(`refused ${tag.name}=${String(value)}`);
        throw new Error("device refused the write");
      }
      await write(tag, value);
      events.push(`landed ${tag.name}=${String(value)}`);
      return;
    }
    await write(tag, value, signal);
    events.push(`wrote ${tag.name}=${String(value)}`);
  };
  const mapRead = options.mapRead;
  if (mapRead !== undefined) {
    const read = plc.read.bind(plc);
    plc.read = async (tags, signal) => (await read(tags, signal)).map(mapRead);
  }
  await parts.system.start();
  await clock.advance(100);
  const scans = async (count: number): Promise<void> => {
    for (let tick = 0; tick < count; tick++) await clock.advance(50);
  };
  const trip = async (): Promise<void> => {
    pressure.value = 25;
    await scans(6);
  };
  const values = (tag: string): unknown[] =>
    plc.writes.filter((entry) => entry.tag === tag).map((entry) => entry.value);
  return { ...parts, pressure, events, release, scans, trip, values };
}
