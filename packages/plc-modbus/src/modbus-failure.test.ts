import { describe, expect, test } from "vitest";
import { QualityCodes } from "@kiln/core";
import { qualityFromModbus } from "./modbus-failure";

describe("Modbus failure mapping", () => {
  test("an illegal data address is bad with a reason naming the exception", () => {
    const q = qualityFromModbus(2);
    expect(q.severity).toBe("bad");
    expect(q.reason).toBe("modbus exception 2 (illegal data address)");
  });

  test("timeouts and disconnects are bad with their own codes", () => {
    expect(qualityFromModbus("timeout")).toMatchObject({ severity: "bad", code: QualityCodes.BadTimeout });
    expect(qualityFromModbus("disconnected")).toMatchObject({ severity: "bad", code: QualityCodes.BadNotConnected });
  });

  test("an exception code Modbus does not define is bad, named as a gateway's giving up (adv12j LOW-2)", () => {
    expect(qualityFromModbus(99)).toMatchObject({
      severity: "bad",
      reason: "modbus exception 99 (a code Modbus does not define: a gateway's own, taken as its giving up)",
      code: QualityCodes.BadCommunicationError,
    });
  });
});
