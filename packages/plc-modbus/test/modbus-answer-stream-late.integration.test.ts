import { describe, expect, it } from "vitest";
import { driverFor, foreignWrites, gateway, scan } from "./answer-stream-harness";

// Answers later than the old ledger's late bound (timeout + guard = 400 ms) on a transparent gateway's serial line
// (adv12s F1): the ledger's time cannot prove that such an answer will not come; the fence's own answer does.
// See answer-stream-harness.ts and serial-line-gateway.ts.

describe("an answer later than the old late bound (adv12s F1, HIGH)", () => {
  it("an answer 420 ms late (bound 400) shifts nothing: no wrong good value, no foreign word written back", async () => {
    // Every 11th request is answered 420 ms late, just past the old ledger's bound (timeout + guard = 400 ms).
    const line = await gateway({ deviceMs: (request) => (request.index % 11 === 6 ? 420 : 2) });
    const { driver, changes } = await driverFor(line.port);
    const { wrong, good } = await scan(driver, 12, { flagWrites: true });
    expect(wrong).toEqual([]);
    expect(foreignWrites(line)).toEqual([]);
    // Found shifted, then proven aligned by a fence; most values still come.
    expect(changes.map((change) => change.aligned)).toContain(false);
    expect(changes.some((change) => change.aligned)).toBe(true);
    expect(good).toBeGreaterThan(20);
  }, 15_000);

  it("an answer 600 ms late (every 13th) never gets a foreign word written back by a bit write", async () => {
    // Before: the fence's own late answer was taken by a bit write's read (HR40 written with another register's word).
    const line = await gateway({ deviceMs: (request) => (request.index % 13 === 3 ? 600 : 2) });
    const { driver } = await driverFor(line.port);
    const { wrong } = await scan(driver, 12, { flagWrites: true });
    expect(foreignWrites(line)).toEqual([]);
    expect(wrong).toEqual([]);
  }, 15_000);

  it("sibling: an answer three bounds late, with fences timing out behind it, shifts nothing either", async () => {
    const line = await gateway({ deviceMs: (request) => (request.index % 23 === 6 ? 1300 : 2) });
    const { driver } = await driverFor(line.port);
    const { wrong, good } = await scan(driver, 12, { flagWrites: true });
    expect(wrong).toEqual([]);
    expect(foreignWrites(line)).toEqual([]);
    expect(good).toBeGreaterThan(0);
  }, 15_000);
});
