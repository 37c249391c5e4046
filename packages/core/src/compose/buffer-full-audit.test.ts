import { describe, expect, test } from "vitest";
import { admin, hostile, sleep, TIMEOUT } from "../../test/support/late-landing-system";

// Adversarial review 15j (ADR 0042, amendment 15j), L1: a write refused KILN_BUFFER_FULL by the
// per-tag bound (maxCallsOutPerTag) was audited `failed`, though nothing was sent: a check refused
// it. It is now `denied`, like the other refusals by a check.

describe("a write refused by the per-tag bound is audited denied (review 15j, L1)", () => {
  test("L1: 32 writes of a tag hang at the device; the 33rd is refused KILN_BUFFER_FULL and recorded denied", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag) => tag === "stirrer.speed");
    const hanging = Array.from({ length: 32 }, (_, index) =>
      system.writeTag(admin, "stirrer.speed", index).catch((error: unknown) => error),
    );
    await sleep(20);
    const refused = await system.writeTag(admin, "stirrer.speed", 50).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: "KILN_BUFFER_FULL", details: { rule: "maxCallsOutPerTag" } });
    await sleep(TIMEOUT);
    const entries = parts.recorded.filter(
      (entry) => entry.action === "tag.write" && (entry.newValue === 50 || entry.reason?.includes("KILN_BUFFER_FULL")),
    );
    const last = entries.filter((entry) => entry.reason?.includes("KILN_BUFFER_FULL"));
    expect(last).toHaveLength(1);
    expect(last[0]?.outcome).toBe("denied");
    for (const call of parts.held.splice(0)) call.release(false);
    await Promise.all(hanging);
    await system.stop();
  });

  test("(sibling) a write the device refuses is still audited failed", async () => {
    const parts = await hostile();
    const { system } = parts;
    parts.setHold((tag) => (tag === "stirrer.speed" ? new Error("device refused") : false));
    await system.writeTag(admin, "stirrer.speed", 5).catch(() => undefined);
    await sleep(TIMEOUT);
    const fails = parts.recorded.filter((entry) => entry.action === "tag.write" && entry.id.endsWith(":fail"));
    expect(fails).toMatchObject([{ outcome: "failed" }]);
    await system.stop();
  });
});
