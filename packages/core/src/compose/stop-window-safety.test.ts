import { describe, expect, test } from "vitest";
import { admin, hostile, sleep } from "../../test/support/late-landing-system";

// fix15v, adv15u M1/L3. While `stop()` ran, safety functions (stop, fault, abort) skipped the
// command gate: one pressed after the stop had closed the audit writer, or while it was about to,
// acted on the device and its entries never reached the trail (dropped, journal or not). After
// the stop, a fault press answered "error" rather than KILN_LIFECYCLE.

describe("nothing acts on the device once stop() is closing the audit (fix15v, adv15u M1)", () => {
  test("a fault press while stop() waits for device calls still out is refused KILN_LIFECYCLE before it acts, and its entry is stored", async () => {
    const parts = await hostile();
    const { system } = parts;
    const drops: unknown[] = [];
    system.bus.on("audit-entry-drop", (event) => void drops.push(event));
    // A write the device holds: given up by the caller, still out, so the stop waits for it.
    parts.setHold((tag, value) => tag === "heater.setpoint" && value === 200);
    await expect(system.writeTag(admin, "heater.setpoint", 200)).rejects.toMatchObject({ code: "KILN_TIMEOUT" });
    const stopping = system.stop();
    await sleep(30);
    expect(system.state).toBe("stopping");
    const before = parts.values("heater.setpoint").length;
    // Before: allowed (a safety function skips the gate), it wrote the safe state; its entries
    // reached the writer only if it settled before the writer closed.
    await expect(system.sendMachineCommand(admin, "fault")).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
    expect(parts.values("heater.setpoint").length).toBe(before);
    parts.heldValue(200).release(true);
    await stopping;
    const fault = parts.recorded.filter((entry) => entry.action === "machine.fault");
    expect(fault).toMatchObject([{ outcome: "failed", reason: expect.stringContaining("KILN_LIFECYCLE") }]);
    expect(drops).toEqual([]);
  });

  test("(sibling, L3) after stop() a fault press is refused KILN_LIFECYCLE, not answered error; nothing is written", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.stop();
    const writes = parts.values("heater.setpoint").length;
    await expect(system.sendMachineCommand(admin, "fault")).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
    await expect(system.sendMachineCommand(admin, "stop")).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
    expect(parts.values("heater.setpoint").length).toBe(writes);
  });
});
