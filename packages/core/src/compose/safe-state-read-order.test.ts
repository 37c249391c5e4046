import { describe, expect, test } from "vitest";
import { createControlSystem } from "./create-control-system";
import { defineTags, type TagValue } from "../domain/tags";
import type { Sample } from "../domain/sample";
import { SimulatedPlc } from "../memory/simulated-plc";
import { MemoryStore } from "../memory/memory-store";
import type { Principal } from "../security/authorization";

// fix15z, adv15y H1: a poll read that sampled the device before an unsafe write landed, answered
// after the safe-state write failed, cleared "safe state not confirmed" while the device held the
// unsafe value: a read-back was judged by the sample's source timestamp against the last one
// delivered when the failure was noted, not by when the read was issued.

const admin: Principal = { id: "ada", roles: ["admin"] };
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const NOT_CONFIRMED = "safe state not confirmed on heater.setpoint";

/** A system on a simulated PLC whose next poll read (once armed) samples at once and answers `delayMs` later. */
async function delayedReadSystem(options: { timeoutMs: number; slowWrite?: (value: TagValue) => number }) {
  const tags = defineTags({
    "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  });
  const plc = new SimulatedPlc({ tags });
  const read = plc.read.bind(plc);
  let delayNext = 0;
  let delivered: Promise<void> | undefined;
  plc.read = async (list, signal) => {
    const samples: Sample[] = await read(list, signal);
    if (delayNext === 0) return samples;
    const delay = delayNext;
    delayNext = 0;
    await sleep(delay);
    return samples;
  };
  const write = plc.write.bind(plc);
  let refuseSafe = false;
  plc.write = async (tag, value, signal) => {
    if (refuseSafe && value === 0) throw new Error("device refused");
    const slow = options.slowWrite?.(value) ?? 0;
    if (slow === 0) return write(tag, value, signal);
    // A device that takes the write late, whatever the caller gave up on.
    await sleep(slow);
    await write(tag, value);
  };
  const system = createControlSystem({
    machineId: "r1",
    tags,
    driver: plc,
    store: new MemoryStore(),
    scanGroups: { fast: { periodMs: 50 } },
    acquisition: { timeoutMs: options.timeoutMs },
    machine: { model: "kiln", safeState: [{ tag: "heater.setpoint", value: 0 }] },
  });
  await system.start();
  await sleep(150);
  const unconfirmed = (): string[] => system.health().problems.filter((line) => line.includes(NOT_CONFIRMED));
  return {
    system,
    plc,
    unconfirmed,
    refuseSafe: () => void (refuseSafe = true),
    /** The next poll samples now and answers `ms` later; resolves once that answer is in the table. */
    delayNextRead(ms: number): Promise<void> {
      delayNext = ms;
      delivered = sleep(ms + 150);
      return delivered;
    },
  };
}

describe("a poll's read-back counts only when the read was issued after the failure (fix15z, adv15y H1)", () => {
  test("a read issued before an unsafe write landed, answered after the safe write failed, does not clear the line", async () => {
    const parts = await delayedReadSystem({ timeoutMs: 3000 });
    const { system, plc } = parts;
    // The next poll samples heater.setpoint = 0 now and answers 600 ms later.
    const answered = parts.delayNextRead(600);
    await sleep(60);
    await system.writeTag(admin, "heater.setpoint", 200);
    parts.refuseSafe();
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(parts.unconfirmed()).toHaveLength(1);
    await answered;
    // The device holds 200; the old sample of 0 is no evidence (before: problems were []).
    expect(plc.writes.at(-1)).toMatchObject({ tag: "heater.setpoint", value: 200 });
    expect(parts.unconfirmed()).toHaveLength(1);
    // A read issued after the failure that shows the safe value (set at the panel) clears it.
    plc.set("heater.setpoint", 0);
    await sleep(200);
    expect(parts.unconfirmed()).toHaveLength(0);
    await system.stop();
  });

  test("(sibling) a read issued after the failure, but before a given-up write landed late, does not clear the line", async () => {
    // The write of 200 is given up at its 400 ms timeout and lands 950 ms after it was sent.
    const parts = await delayedReadSystem({ timeoutMs: 400, slowWrite: (value) => (value === 200 ? 950 : 0) });
    const { system, plc } = parts;
    await expect(system.writeTag(admin, "heater.setpoint", 200)).rejects.toMatchObject({ code: "KILN_TIMEOUT" });
    parts.refuseSafe();
    // The safe write waits for the late one at most 400 ms (until ~800 ms), then is refused.
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(parts.unconfirmed()).toHaveLength(1);
    expect(plc.peek("heater.setpoint")).toBe(0);
    // This poll is issued after the failure (~800 ms) and samples 0; the late write lands (~950 ms)
    // while it is out; it answers ~350 ms after it was issued (within the 400 ms read timeout).
    const answered = parts.delayNextRead(350);
    await answered;
    expect(plc.peek("heater.setpoint")).toBe(200);
    expect(parts.unconfirmed()).toHaveLength(1);
    await system.stop();
  });
});
