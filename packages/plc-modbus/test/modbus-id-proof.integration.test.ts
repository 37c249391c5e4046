import { afterEach, describe, expect, it } from "vitest";
import type { Sample } from "@kiln/core";
import { ADDRESSES, all, extraFrameAt300, idProofPeer, wrongGood } from "./id-proof-peer";
import { rawRegister } from "./raw-tcp-device";

// Issue 12, ADR 0041 amendment fix12e. fix12d's `transport.separateShapes` (never two requests of one answer shape
// back to back) closed the gateway chain (one extra answer frame behind a transparent gateway stamping the newest
// request's id shifted every later same-size read, good and wrong) but was opt-in. It is now on by default and
// lifted per connection by an id proof: the first time two same-shape requests would follow each other, two reads
// of other sizes go on the wire together; a native device answers each with its own id (proven: nothing separated
// any more on that connection), a gateway stamping the newest id does not (separation stays on).

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Wrong good values other than the extra frame itself (which has HR300's size, the newest id and came in time). */
const shifted = (wrong: readonly string[]) => wrong.filter((value) => value !== `hr300=${rawRegister(1, 30)}`);

describe("default settings: requests of one answer shape kept apart until the peer proves its ids (fix12e)", () => {
  it("behind a gateway stamping the newest id, one extra frame shifts no later read (before: later reads shifted, good)", async () => {
    const armed = { extra: true };
    const { driver } = await idProofPeer(cleanups, { stampNewest: true }, extraFrameAt300(armed));
    const wrong: string[] = [];
    let good = 0;
    for (let scan = 0; scan < 4; scan++) {
      const samples = await driver.read(all);
      wrong.push(...wrongGood(samples));
      good += samples.filter((sample) => sample.quality.severity === "good").length;
    }
    expect(armed.extra).toBe(false);
    // Before (separation off by default): HR400..HR1900 read the register before's answer, good.
    expect(shifted(wrong), wrong.join(", ")).toEqual([]);
    expect(wrong.length).toBeLessThanOrEqual(1);
    expect(driver.answerStream.aligned).toBe(true);
    expect(good).toBeGreaterThanOrEqual(4 * 20 - 5);
  });

  it("a native device proves its ids once: same-size blocks cost two requests per connection, not one per block", async () => {
    const { driver, device } = await idProofPeer(cleanups, { stampNewest: false }, () => undefined);
    for (let scan = 0; scan < 5; scan++) {
      const samples = await driver.read(all);
      expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
      expect(wrongGood(samples)).toEqual([]);
    }
    // 5 scans of 20 blocks, plus the proof's two reads sent together (fix12d's rule on its own: 5 × 39 or more),
    // plus one separator per 8 one-register reads in a row, the check a proven connection keeps (fix12g).
    const blocks = device.requests.filter((request) => request.value === 1);
    expect(blocks.length).toBe(5 * 20);
    expect(device.requests.length).toBeLessThanOrEqual(5 * 20 + 2 + Math.ceil((5 * 20) / 8));
    expect(device.requests.length).toBeGreaterThanOrEqual(5 * 20 + 2 + Math.floor((5 * 20) / 8) - 1);
    // The plan's order stands (no reordering once proven).
    const lastScan = blocks.slice(-20).map((request) => request.address);
    expect(lastScan).toEqual(ADDRESSES);
  });

  it("proven on one connection, then a reconnect reaches a gateway: proven again per connection (sibling)", async () => {
    const mode = { stampNewest: false };
    const armed = { extra: false };
    let reset = false;
    const extra = extraFrameAt300(armed);
    const { driver, device } = await idProofPeer(cleanups, mode, (request, stamp) => {
      if (reset) {
        reset = false;
        return { kind: "reset" };
      }
      return extra(request, stamp);
    });
    for (let scan = 0; scan < 2; scan++) await driver.read(all);
    // Proven on the first connection: one request per block, the proof's two, one separator per 8 blocks (fix12g).
    expect(device.requests.filter((request) => request.value === 1).length).toBe(2 * 20);
    expect(device.requests.length).toBeLessThanOrEqual(2 * 20 + 2 + Math.ceil((2 * 20) / 8));
    // The peer becomes a gateway stamping the newest id; the connection drops and the driver reconnects.
    mode.stampNewest = true;
    reset = true;
    await driver.read(all).catch(() => undefined);
    await until(() => driver.status !== "connected");
    await until(() => driver.status === "connected");
    armed.extra = true;
    const wrong: string[] = [];
    for (let scan = 0; scan < 4; scan++) {
      const samples = await driver.read(all).catch(() => [] as Sample[]);
      wrong.push(...wrongGood(samples));
    }
    expect(armed.extra).toBe(false);
    // Had the first connection's proof been kept: HR400..HR1900 shifted, good.
    expect(shifted(wrong), wrong.join(", ")).toEqual([]);
    expect(wrong.length).toBeLessThanOrEqual(1);
  });
});
