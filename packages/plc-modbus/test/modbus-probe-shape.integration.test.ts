import { afterEach, describe, expect, it } from "vitest";
import { SystemClock, defineTags, type TagDefinitionInput } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { startRawTcpDevice } from "./raw-tcp-device";

// adv12z F2: on TCP with the late-answer guard a shape leaves out the unit, so a dead unit's probe whose size
// was another than its own block's but the same as a live unit's block held that block back for the late
// bound (2 x requestTimeoutMs) after each probe, even on a device that answers in order. A probe's size now
// avoids every planned block's shape. Counted: probes sharing a live block's shape, and reads in which a live
// unit's tag (not named x*) was not good within a deadline that one request timeout fits and the late bound does not.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 300;
const clock = new SystemClock();

/**
 * A read's caller deadline, as the core's `acquisition.timeoutMs` gives it (`withTimeout` records it in the
 * process-wide registry `signalTimeLeft` reads, under its documented `Symbol.for` key): the read returns with
 * what it has shortly before `ms`, instead of being aborted.
 */
function deadline(ms: number): AbortSignal {
  const controller = new AbortController();
  const registry = (globalThis as Record<symbol, unknown>)[Symbol.for("@kiln/core/signal-deadlines@1")];
  if (!(registry instanceof WeakMap)) throw new Error("no signal deadline registry: @kiln/core not loaded");
  registry.set(controller.signal, { clock, at: clock.now() + ms });
  return controller.signal;
}
const WARMUP = 4;
const READS = 10;

/** `liveBlocks`: the live units' planned blocks as `function/quantity` (FC 3, registers). */
async function run(spec: Record<string, TagDefinitionInput>, live: readonly number[], liveBlocks: readonly string[]) {
  const device = await startRawTcpDevice((request) =>
    live.includes(request.unitId) ? { kind: "normal" } : { kind: "silent" },
  );
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    unitHealth: { probeInitialDelayMs: 1, probeMaxDelayMs: 1 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  const tags = defineTags(spec).list();
  // Startup: each dead unit's first request reads its own block (its tags' values, should it answer); a late
  // answer to that may hold a live block of that size once (README: a dead unit costs a read at most one
  // request timeout, once). Counted from the reads after.
  for (let read = 0; read < WARMUP; read++) await driver.read(tags, deadline(TIMEOUT_MS * 1.5));
  const from = device.requests.length;
  let notGood = 0;
  for (let read = 0; read < READS; read++) {
    // Back to back, like a scan that overran: the next read starts while a probe is on the wire. Its wait
    // (one request timeout) fits the deadline; a hold to the probe's late bound (two) does not.
    const samples = await driver.read(tags, deadline(TIMEOUT_MS * 1.5));
    for (const sample of samples) if (!sample.tag.startsWith("x") && sample.quality.severity !== "good") notGood++;
  }
  const probes = device.requests.slice(from).filter((r) => !live.includes(r.unitId));
  const colliding = probes.filter((r) => liveBlocks.includes(`${r.functionCode}/${r.value}`));
  return { notGood, probes: probes.length, colliding: colliding.length };
}

describe("a dead unit's probe behind a TCP gateway (in order, late-answer guard)", () => {
  it("never has the shape of a live unit's block: the live unit's reads are not held back (adv12z p7)", async () => {
    const result = await run(
      {
        a: { dataType: "uint16", address: "HR0@1" },
        b: { dataType: "uint32", address: "HR10@2" },
        x3: { dataType: "uint16", address: "HR0@3" },
        x4: { dataType: "uint16", address: "HR0@4" },
        x5: { dataType: "uint16", address: "HR0@5" },
      },
      [1, 2],
      ["3/1", "3/2"],
    );
    expect(result.probes).toBeGreaterThanOrEqual(READS / 3);
    expect(result).toMatchObject({ colliding: 0, notGood: 0 });
  });

  it("sibling: live blocks of the dead unit's own size and of the next size too: the probe takes a third", async () => {
    const result = await run(
      {
        a: { dataType: "uint16", address: "HR0@1" },
        b: { dataType: "uint32", address: "HR10@2" },
        c: { dataType: "uint16", address: "HR20@2" },
        x3: { dataType: "uint16", address: "HR0@3" },
      },
      [1, 2],
      ["3/1", "3/2"],
    );
    expect(result.probes).toBeGreaterThanOrEqual(READS / 3);
    expect(result).toMatchObject({ colliding: 0, notGood: 0 });
  });
});
