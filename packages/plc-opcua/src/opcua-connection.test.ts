import { describe, expect, test } from "vitest";
import { sameServerRun } from "./opcua-connection";

// Adversarial review 13r, H1: after a restart a server numbers subscriptions again; taking over
// the old session's ids then took over (and deleted) another client's subscription.
describe("sameServerRun", () => {
  test("the same start time: the same run, old subscription ids may be taken over", () => {
    expect(sameServerRun({ serverStartTime: 1_700_000_000_000 }, { serverStartTime: 1_700_000_000_000 })).toBe(true);
  });

  test("a later start time (a restart) or an unknown one: never the same run", () => {
    expect(sameServerRun({ serverStartTime: 1_700_000_000_000 }, { serverStartTime: 1_700_000_050_000 })).toBe(false);
    expect(sameServerRun({ serverStartTime: undefined }, { serverStartTime: undefined })).toBe(false);
    expect(sameServerRun({ serverStartTime: 1_700_000_000_000 }, { serverStartTime: undefined })).toBe(false);
  });
});
